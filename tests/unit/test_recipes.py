"""Recipes: session co-occurrence similarity, time-decayed popularity, fit and artifacts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clickrec.models.base import Artifact, Interactions, RecipeParams
from clickrec.models.recipes import (
    decay_weights,
    fit,
    fit_cached,
    item_similarity,
    popularity,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0


def sessions_data(
    sessions: list[list[str]], start: float = T0, ages_hours: list[float] | None = None
) -> Interactions:
    """One reader per session, all within minutes (decay is negligible) unless dated by age."""
    item_ids = sorted({i for s in sessions for i in s})
    index = {item: k for k, item in enumerate(item_ids)}
    reader, item, session, ts = [], [], [], []
    for k, reads in enumerate(sessions):
        base = start + float(k)
        if ages_hours is not None:
            base = start - ages_hours[k] * HOUR
        for pos, it in enumerate(reads):
            reader.append(k)
            item.append(index[it])
            session.append(k)
            ts.append(base + 0.001 * pos)
    order = np.argsort(ts, kind="stable")
    return Interactions(
        reader=np.asarray(reader, dtype=np.int32)[order],
        item=np.asarray(item, dtype=np.int32)[order],
        session=np.asarray(session, dtype=np.int32)[order],
        timestamp=np.asarray(ts, dtype=np.float64)[order],
        item_ids=np.asarray(item_ids, dtype=str),
        reader_ids=np.asarray([f"s:{k}" for k in range(len(sessions))], dtype=str),
    )


def neighbours_of(sim, data: Interactions, item: str) -> dict[str, float]:
    """The similarity row of one item as {neighbour id: score}."""
    row = sim[int(np.flatnonzero(data.item_ids == item)[0])]
    return {str(data.item_ids[j]): float(v) for j, v in zip(row.indices, row.data, strict=True)}


def top_neighbour(sim, data: Interactions, item: str) -> str:
    row = neighbours_of(sim, data, item)
    return max(row, key=row.__getitem__)


# -- similarity ---------------------------------------------------------------------------


def test_items_read_in_the_same_sessions_are_neighbours() -> None:
    data = sessions_data([["a", "b"]] * 10 + [["c", "d"]] * 10 + [["a", "c"]])
    sim = item_similarity(data, float(data.timestamp.max()), RecipeParams())

    assert top_neighbour(sim, data, "a") == "b"
    assert top_neighbour(sim, data, "b") == "a"
    assert top_neighbour(sim, data, "d") == "c"
    a_row = neighbours_of(sim, data, "a")
    assert "d" not in a_row  # never read together with a
    assert a_row["b"] > a_row["c"]  # ten shared sessions beat one


def test_shrinkage_prefers_pairs_seen_often_over_a_single_coincidence() -> None:
    # z was read with c three times (c is read a lot elsewhere too) and once with r, a post
    # read only that one time. Plain cosine favours the coincidence; shrinkage does not.
    sessions = [["z", "c"]] * 3 + [["z", "r"]] + [["c", f"o{k}"] for k in range(30)]
    data = sessions_data(sessions)
    until = float(data.timestamp.max())

    plain = item_similarity(data, until, RecipeParams(shrinkage=0.0))
    damped = item_similarity(data, until, RecipeParams(shrinkage=5.0))

    assert top_neighbour(plain, data, "z") == "r"
    assert top_neighbour(damped, data, "z") == "c"


def test_old_co_reads_count_less_than_recent_ones() -> None:
    # a was read with b ten half-lives ago, and with c just now, equally often.
    data = sessions_data(
        [["a", "b"]] * 5 + [["a", "c"]] * 5,
        ages_hours=[240.0] * 5 + [0.1 * k for k in range(5)],
    )
    sim = item_similarity(data, float(data.timestamp.max()), RecipeParams(half_life_hours=24.0))

    row = neighbours_of(sim, data, "a")
    assert top_neighbour(sim, data, "a") == "c"
    assert row["b"] < 0.01


def test_neighbours_are_capped_and_keep_the_strongest() -> None:
    # The hub h is read with p1 most often, then p2, ... p5 least.
    sessions = [["h", f"p{k}"] for k in range(1, 6) for _ in range(12 - 2 * k)]
    data = sessions_data(sessions)
    sim = item_similarity(data, float(data.timestamp.max()), RecipeParams(neighbours=2))

    nnz_per_row = np.diff(sim.indptr)
    assert nnz_per_row.max() == 2
    assert set(neighbours_of(sim, data, "h")) == {"p1", "p2"}


def test_rows_are_scaled_to_max_one_and_the_diagonal_is_zero() -> None:
    rng = np.random.default_rng(0)
    items = [f"i{k}" for k in range(30)]
    # Random sessions, some re-reading an item twice in the same session.
    sessions = [list(rng.choice(items, size=rng.integers(2, 6))) for _ in range(200)]
    data = sessions_data(sessions)
    sim = item_similarity(data, float(data.timestamp.max()), RecipeParams(neighbours=10))

    assert sim.shape == (data.n_items, data.n_items)
    assert np.all(sim.diagonal() == 0)
    dense = sim.toarray()
    nonempty = dense.max(axis=1) > 0
    assert nonempty.sum() == data.n_items  # every item was read with another
    np.testing.assert_allclose(dense[nonempty].max(axis=1), 1.0, rtol=1e-6)
    assert dense.min() >= 0


def test_only_the_newest_reads_of_a_long_session_count() -> None:
    # x is the oldest of 51 reads in one session; the window keeps the newest 50.
    data = sessions_data([["x"] + [f"y{k}" for k in range(50)]])
    sim = item_similarity(data, float(data.timestamp.max()), RecipeParams(session_window=50))

    assert neighbours_of(sim, data, "x") == {}
    assert len(neighbours_of(sim, data, "y0")) > 0


def test_similarity_of_no_interactions_is_empty() -> None:
    empty = sessions_data([])
    sim = item_similarity(empty, 0.0, RecipeParams())
    assert sim.shape == (0, 0)
    assert sim.nnz == 0


# -- popularity ---------------------------------------------------------------------------


def test_decay_halves_per_half_life_and_does_not_grow_for_future_events() -> None:
    until = T0
    ts = np.array([until, until - 6 * HOUR, until - 12 * HOUR, until + 5 * HOUR])
    w = decay_weights(ts, until, half_life_hours=6.0)
    np.testing.assert_allclose(w, [1.0, 0.5, 0.25, 1.0], rtol=1e-6)


def test_popularity_decays_with_age() -> None:
    # new: one read now; old: one read one half-life ago; older: three reads 4 half-lives ago.
    data = sessions_data(
        [["new"], ["old"], ["older"], ["older"], ["older"]],
        ages_hours=[0.0, 24.0, 96.0, 96.0, 96.0],
    )
    pop = popularity(data, float(data.timestamp.max()), half_life_hours=24.0)
    by_id = dict(zip(data.item_ids.tolist(), pop.tolist(), strict=True))

    assert by_id["new"] == pytest.approx(1.0)
    assert by_id["old"] == pytest.approx(0.5)  # one half-life halves it
    assert by_id["older"] == pytest.approx(3 / 16)  # more reads, but long ago
    assert by_id["new"] > by_id["old"] > by_id["older"]


# -- fit and the artifact ---------------------------------------------------------------------


@pytest.fixture
def co_read() -> Interactions:
    return sessions_data([["a", "b"]] * 10 + [["c", "d"]] * 10 + [["a", "c"]])


@pytest.mark.parametrize("recipe", ["trending-now", "popularity-count"])
def test_popularity_recipes_have_an_empty_similarity(co_read: Interactions, recipe: str) -> None:
    art = fit(recipe, co_read, RecipeParams())

    assert art.recipe == recipe
    assert art.similarity.shape == (co_read.n_items, co_read.n_items)
    assert art.similarity.nnz == 0
    assert art.popularity.shape == (co_read.n_items,)
    assert art.trained_until == float(co_read.timestamp.max())


@pytest.mark.parametrize("recipe", ["similar-items", "user-personalization"])
def test_similarity_recipes_learn_neighbours(co_read: Interactions, recipe: str) -> None:
    art = fit(recipe, co_read, RecipeParams())

    assert art.similarity.nnz > 0
    assert top_neighbour(art.similarity, co_read, "a") == "b"
    assert list(art.item_ids) == list(co_read.item_ids)


def test_fit_on_no_data_gives_an_empty_artifact() -> None:
    art = fit("user-personalization", sessions_data([]), RecipeParams())
    assert art.trained_until == 0.0
    assert len(art.popularity) == 0
    assert art.similarity.nnz == 0


def test_artifact_save_and_load_round_trip(co_read: Interactions, tmp_path: Path) -> None:
    params = RecipeParams(half_life_hours=12.0, neighbours=7, trending_weight=0.5)
    art = fit("user-personalization", co_read, params)
    art.metrics = {"ndcg@10": 0.25, "chosen": "user-personalization"}

    art.save(tmp_path / "v1")
    back = Artifact.load(tmp_path / "v1")

    assert back.recipe == art.recipe
    assert back.params == params
    assert back.trained_until == art.trained_until
    assert back.metrics == art.metrics
    assert back.item_ids.tolist() == art.item_ids.tolist()
    np.testing.assert_array_equal(back.popularity, art.popularity)
    assert back.popularity.dtype == art.popularity.dtype
    assert (back.similarity != art.similarity).nnz == 0
    assert back.similarity.format == "csr"
    assert top_neighbour(back.similarity, co_read, "a") == top_neighbour(
        art.similarity, co_read, "a"
    )


def test_candidates_that_differ_only_in_scoring_share_one_fit(co_read: Interactions) -> None:
    cache: dict = {}
    base = RecipeParams()
    product = replace(base, blend="product", trending_half_life_hours=1.0)
    one = fit_cached("user-personalization", co_read, base, cache)
    two = fit_cached("user-personalization", co_read, product, cache)
    assert two.similarity is one.similarity and two.params == product and one.params == base
    assert (two.similarity != fit("user-personalization", co_read, product).similarity).nnz == 0
    longer = fit_cached("user-personalization", co_read, replace(base, half_life_hours=99), cache)
    assert longer.similarity is not one.similarity  # a knob of the fit: fitted again
    trending = fit_cached("trending-now", co_read, base, cache)
    assert trending.recipe == "trending-now" and trending.similarity.nnz == 0


def test_read_next_links_an_item_to_what_sessions_read_after_it() -> None:
    # Every session reads a, then b, then c: co-reads alone cannot tell the order.
    data = sessions_data([["a", "b", "c"]] * 30 + [["x", "y"]] * 5)
    together = item_similarity(data, T0 + 60, RecipeParams())
    assert neighbours_of(together, data, "b")["a"] == pytest.approx(
        neighbours_of(together, data, "b")["c"]
    )
    ordered = item_similarity(data, T0 + 60, RecipeParams(sequence_weight=1.0))
    after_a, after_b = neighbours_of(ordered, data, "a"), neighbours_of(ordered, data, "b")
    assert after_a["b"] > after_a["c"]  # the next read weighs more than the one after
    assert after_b["c"] > after_b["a"]  # and what came before weighs less than what follows
    assert "x" not in after_a  # nothing links items never read in one session


def test_reader_cooccurrence_links_reads_of_one_reader_across_sessions() -> None:
    # Reader 0 read "film-a" one day and "film-b" another: two sessions, one reader.
    data = sessions_data([["film-a"], ["film-b"], ["film-c", "film-d"]])
    data = Interactions(
        np.asarray([0, 0, 1, 1], dtype=np.int32),
        data.item,
        data.session,
        data.timestamp,
        data.item_ids,
        np.asarray(["u:0", "u:1"], dtype=str),
    )
    by_session = item_similarity(data, T0 + 60, RecipeParams())
    assert neighbours_of(by_session, data, "film-a") == {}
    by_reader = item_similarity(data, T0 + 60, RecipeParams(cooccurrence="reader"))
    assert set(neighbours_of(by_reader, data, "film-a")) == {"film-b"}
    assert set(neighbours_of(by_reader, data, "film-c")) == {"film-d"}
    with pytest.raises(ValueError, match="cooccurrence"):
        item_similarity(data, T0 + 60, RecipeParams(cooccurrence="household"))


def test_new_knobs_survive_save_and_load_and_old_artifacts_still_load(tmp_path: Path) -> None:
    data = sessions_data([["a", "b", "c"]] * 5)
    params = RecipeParams(sequence_weight=1.0, cooccurrence="reader", category_weight=1.0)
    art = fit("user-personalization", data, params)
    art.save(tmp_path / "new")
    assert Artifact.load(tmp_path / "new").params == params
    # An artifact saved before these knobs existed has none of them in its meta.json.
    meta = tmp_path / "new" / "meta.json"
    text = meta.read_text()
    for knob in ('"cooccurrence"', '"sequence_weight"', '"category_weight"'):
        assert knob in text
    old = json.loads(text)
    for knob in ("cooccurrence", "sequence_weight", "category_weight"):
        del old["params"][knob]
    meta.write_text(json.dumps(old))
    loaded = Artifact.load(tmp_path / "new")
    assert loaded.params.sequence_weight == 0.0 and loaded.params.cooccurrence == "session"


def test_an_artifact_from_a_newer_version_loads_without_its_unknown_knobs(tmp_path: Path) -> None:
    data = sessions_data([["a", "b", "c"]] * 5)
    fit("user-personalization", data, RecipeParams(sequence_weight=1.0)).save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["params"]["knob_of_the_future"] = 3
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    loaded = Artifact.load(tmp_path)
    assert loaded.params == RecipeParams(sequence_weight=1.0)


def test_heavy_readers_form_no_more_pairs_than_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from clickrec.models import recipes

    sizes = np.full(100, 1000)  # 100 readers with 1,000 reads each: 10^8 pairs in full
    monkeypatch.setattr(recipes, "PAIR_BUDGET", 1_000_000)
    window = recipes._window_within_budget(sizes, 500)
    assert 50 <= window <= 100  # 100 x window² within a million, and not much below
    assert recipes._window_within_budget(np.full(10, 5), 50) == 50  # light: unchanged
