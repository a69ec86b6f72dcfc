"""Scoring: a trained artifact combined with the live online state, without retraining."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import scipy.sparse as sp

from clickrec.models.base import Artifact, Interactions, RecipeParams
from clickrec.models.online import OnlineState, state_from
from clickrec.models.recipes import fit
from clickrec.models.scoring import Exploration, Scorer, top_n
from clickrec.testing.synthetic import BlogSpec, generate_blog
from tests.blogdata import facts_of, interactions_of

DAY = 86400.0
NO_EXPLORATION = Exploration(weight=0.0)


def _injected(table: pa.Table) -> pa.Table:
    """40 extra sessions on the blog's last day: 20 read post-a then post-b, 20 post-c, post-d."""
    end = float(pc.max(table["timestamp"]).as_py())
    rows = []
    for k in range(40):
        first, second = ("post-a", "post-b") if k < 20 else ("post-c", "post-d")
        t = end - DAY + k * 1800.0
        for pos, item in enumerate((first, second)):
            rows.append(
                {
                    "timestamp": t + 60.0 * pos,
                    "user_id": f"inj{k}",
                    "session_id": f"inj-s{k}",
                    "item_id": item,
                    "event_type": "read",
                }
            )
    extra = pa.Table.from_pylist(rows, schema=table.schema)
    return pa.concat_tables([table, extra])


@pytest.fixture(scope="module")
def blog_data() -> tuple[Interactions, dict[str, tuple[float | None, list[str]]]]:
    blog = generate_blog(BlogSpec(users=300, days=5, seed=3))
    base = blog.interactions.select(["timestamp", "user_id", "session_id", "item_id", "event_type"])
    table = _injected(base)
    data, facts = interactions_of(table), facts_of(blog)
    start = float(data.timestamp.max()) - 2 * DAY
    for item in ("post-a", "post-b", "post-c", "post-d"):
        facts[item] = (start, ["tech"])
    return data, facts


@pytest.fixture(scope="module")
def artifact(blog_data) -> Artifact:
    data, _ = blog_data
    return fit("user-personalization", data, RecipeParams())


@pytest.fixture
def state(blog_data) -> OnlineState:
    """A fresh online state per test, fed with the training events (as after a restart)."""
    data, facts = blog_data
    return state_from(data, facts, trending_half_life_hours=6.0, history_length=50)


def idx(state: OnlineState, item: str) -> int:
    return state.item_index[item]


def ids(state: OnlineState, indices: np.ndarray) -> list[str]:
    return [state.item_ids[i] for i in indices]


def read(state: OnlineState, reader: str, item: str, dt: float = 0.0) -> None:
    state.observe([reader], [item], [state.newest_event_time + dt])


# -- the reader's live history ---------------------------------------------------------------


def test_a_reader_who_just_read_a_gets_b_and_never_a(artifact, state) -> None:
    scorer = Scorer(artifact, state, Exploration())
    read(state, "u:visitor", "post-a")

    values = scorer.for_reader("u:visitor").values

    assert values[idx(state, "post-a")] == -np.inf
    top = ids(state, top_n(values, 5))
    assert "post-b" in top
    assert "post-a" not in top
    # b's lead comes from a, not from trending: d was read just as often, but never with a.
    assert values[idx(state, "post-b")] > values[idx(state, "post-d")]


def test_the_next_read_changes_the_next_answer_without_retraining(artifact, state) -> None:
    scorer = Scorer(artifact, state, Exploration())
    similarity_before = artifact.similarity.copy()
    read(state, "u:visitor", "post-a")
    before = scorer.for_reader("u:visitor").values
    assert "post-d" not in ids(state, top_n(before, 5))

    read(state, "u:visitor", "post-c", dt=30.0)
    after = scorer.for_reader("u:visitor").values  # same scorer, same artifact

    assert after[idx(state, "post-c")] == -np.inf
    assert after[idx(state, "post-a")] == -np.inf
    assert after[idx(state, "post-d")] > before[idx(state, "post-d")]
    top = ids(state, top_n(after, 5))
    assert "post-d" in top
    assert top[0] == "post-d"  # the newest read weighs most
    assert (artifact.similarity != similarity_before).nnz == 0


def test_other_readers_are_not_affected_by_a_read(artifact, state) -> None:
    scorer = Scorer(artifact, state, NO_EXPLORATION)
    other_before = scorer.for_reader("u:someone-else").values
    read(state, "u:visitor", "post-a", dt=0.0)
    other_after = scorer.for_reader("u:someone-else").values
    assert np.isfinite(other_after[idx(state, "post-a")])
    # Trending moved a little (one more read of a), but no one else's history did.
    assert ids(state, top_n(other_after, 3))[0] == ids(state, top_n(other_before, 3))[0]


def test_a_reader_with_no_history_gets_trending_order(blog_data, artifact, state) -> None:
    now = state.newest_event_time
    trending = np.where(state.available(now), state.trending(), -np.inf)
    expected = top_n(trending, 20)
    trending_art = fit("trending-now", blog_data[0], RecipeParams())

    for art in (artifact, trending_art, None):
        scores = Scorer(art, state, NO_EXPLORATION).for_reader("u:brand-new")
        assert top_n(scores.values, 20).tolist() == expected.tolist()
        np.testing.assert_allclose(
            scores.values[expected], trending[expected], atol=1e-5
        )  # newest tiebreak
    assert Scorer(None, state).recipe.startswith("trending-now")
    assert Scorer(artifact, state).for_reader("u:x").recipe == "user-personalization"


def test_trending_recipe_ignores_history_but_still_hides_read_items(blog_data, state) -> None:
    trending_art = fit("trending-now", blog_data[0], RecipeParams())
    scorer = Scorer(trending_art, state, NO_EXPLORATION)
    read(state, "u:visitor", "post-a")
    values = scorer.for_reader("u:visitor").values
    assert values[idx(state, "post-a")] == -np.inf
    finite = np.isfinite(values)
    np.testing.assert_allclose(values[finite], state.trending()[finite], atol=1e-5)


# -- items the model never saw -----------------------------------------------------------------


def test_a_post_published_after_training_can_appear_through_exploration(artifact, state) -> None:
    explore = Scorer(artifact, state, Exploration(weight=0.5, item_age_cutoff_days=2.0))
    plain = Scorer(artifact, state, NO_EXPLORATION)
    now = state.newest_event_time
    state.set_item("post-fresh", published_at=now, categories=["tech"])  # after the scorers

    with_bonus = explore.for_reader("u:brand-new").values
    without = plain.for_reader("u:brand-new").values
    fresh = idx(state, "post-fresh")

    assert with_bonus[fresh] == pytest.approx(0.5, abs=1e-5)  # full bonus: new and unread
    assert "post-fresh" in ids(state, top_n(with_bonus, 10))
    assert without[fresh] == pytest.approx(0.0, abs=1e-5)  # only the newest-first tiebreak
    assert "post-fresh" not in ids(state, top_n(without, 10))
    assert (without > 0).sum() > 10  # plenty of read posts outrank it

    # A reader who opens it never gets it again.
    read(state, "u:brand-new", "post-fresh")
    assert explore.for_reader("u:brand-new").values[fresh] == -np.inf


def test_exploration_fades_with_age_and_with_reads(artifact, state) -> None:
    scorer = Scorer(artifact, state, Exploration(weight=0.5, item_age_cutoff_days=2.0))
    now = state.newest_event_time
    state.set_item("post-new", published_at=now, categories=[])
    state.set_item("post-day-old", published_at=now - DAY, categories=[])
    state.set_item("post-week-old", published_at=now - 7 * DAY, categories=[])
    state.set_item("post-read-a-lot", published_at=now, categories=[])
    state.observe([f"s:{k}" for k in range(30)], ["post-read-a-lot"] * 30, [now] * 30)

    bonus = scorer.freshness(state.newest_event_time)
    assert bonus[idx(state, "post-new")] == pytest.approx(0.5)
    assert bonus[idx(state, "post-day-old")] == pytest.approx(0.25)
    assert bonus[idx(state, "post-week-old")] == 0.0
    assert bonus[idx(state, "post-read-a-lot")] == pytest.approx(0.5 / 4)  # 1 / (1 + 30/10)
    assert np.all(Scorer(artifact, state, NO_EXPLORATION).freshness(now) == 0)


# -- filters and selection ---------------------------------------------------------------------


def test_deleted_items_never_appear(artifact, state) -> None:
    scorer = Scorer(artifact, state, Exploration())
    read(state, "u:visitor", "post-a")
    top_trending = state.item_ids[int(np.argmax(state.trending()))]
    now = state.newest_event_time
    for item in ("post-b", top_trending):
        state.set_item(item, published_at=now - DAY, categories=["tech"], deleted=True)

    for reader in ("u:visitor", "u:brand-new"):
        values = scorer.for_reader(reader).values
        everything = ids(state, top_n(values, state.n_items))
        assert "post-b" not in everything
        assert top_trending not in everything
        assert values[idx(state, "post-b")] == -np.inf
    assert scorer.similar(idx(state, "post-a"))[idx(state, "post-b")] == -np.inf


def test_similar_items_come_from_the_model_then_from_the_category(artifact, state) -> None:
    scorer = Scorer(artifact, state, Exploration())
    a = idx(state, "post-a")
    similar = scorer.similar(a)
    assert similar[a] == -np.inf
    assert ids(state, top_n(similar, 1)) == ["post-b"]

    # A post the model never saw still has neighbours: posts of its category.
    state.set_item("post-fresh", state.newest_event_time, ["tech"])
    fresh_similar = scorer.similar(idx(state, "post-fresh"))
    shown = set(ids(state, top_n(fresh_similar, state.n_items)))
    assert {"post-a", "post-b", "post-c", "post-d"} <= shown
    tech = state.category_mask("tech")
    assert all(tech[state.item_index[i]] for i in shown)


def test_top_n_orders_best_first() -> None:
    values = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    assert top_n(values, 3).tolist() == [1, 3, 2]
    assert top_n(values, 5).tolist() == [1, 3, 2, 4, 0]
    assert top_n(values, 50).tolist() == [1, 3, 2, 4, 0]
    assert top_n(values, 0).tolist() == []
    assert top_n(values, 3).dtype == np.int64


def test_top_n_skips_excluded_and_masked_items() -> None:
    values = np.array([0.1, -np.inf, 0.5, np.nan, 0.3, -np.inf])
    assert top_n(values, 10).tolist() == [2, 4, 0]  # fewer finite scores than asked for
    mask = np.array([True, True, False, True, True, True])
    assert top_n(values, 10, mask=mask).tolist() == [4, 0]
    assert top_n(values, 1, mask=mask).tolist() == [4]
    assert top_n(values, 3, mask=np.zeros(6, dtype=bool)).tolist() == []
    assert top_n(np.full(4, -np.inf), 2).tolist() == []
    assert top_n(np.zeros(0), 5).tolist() == []
    np.testing.assert_array_equal(values[[2, 4, 0]], [0.5, 0.3, 0.1])  # input untouched


def test_top_n_on_large_score_vectors_matches_a_full_sort() -> None:
    rng = np.random.default_rng(5)
    values = rng.random(5000)
    values[rng.random(5000) < 0.3] = -np.inf
    expected = np.argsort(-values, kind="stable")[:100]
    assert top_n(values, 100).tolist() == expected.tolist()


def test_reads_older_than_the_scoring_history_are_still_never_recommended() -> None:
    state = OnlineState(history_length=3, seen_length=100)
    readers = ["u:heavy"] * 40 + ["u:other"] * 40
    items = [f"p{k}" for k in range(40)] * 2
    state.observe(readers, items, [1000.0 + k for k in range(80)])
    scores = Scorer(None, state, NO_EXPLORATION).for_reader("u:heavy").values
    assert np.isinf(scores).all()  # all 40 posts were read, not just the newest 3


def test_anchors_name_the_read_that_brought_each_item(artifact, state) -> None:
    """A reader who read a, then c: b is there because of a, d because of c."""
    scorer = Scorer(artifact, state, Exploration())
    read(state, "u:visitor", "post-a")
    read(state, "u:visitor", "post-c", dt=30.0)
    scores = scorer.for_reader("u:visitor")
    wanted = np.array([idx(state, "post-d"), idx(state, "post-b")])

    anchors = scorer.anchors(scores.history, wanted)

    assert ids(state, anchors) == ["post-c", "post-a"]
    # An item no read brought (no similarity to a or c) has no anchor.
    stranger = next(
        i
        for i in range(state.n_items)
        if i
        not in set(scorer.neighbours(idx(state, "post-a")).tolist())
        | set(scorer.neighbours(idx(state, "post-c")).tolist())
    )
    assert scorer.anchors(scores.history, np.array([stranger])).tolist() == [-1]
    assert scorer.anchors(np.zeros(0, dtype=np.int64), wanted).tolist() == [-1, -1]


def test_within_trending_blend_reorders_what_is_trending_by_taste(blog_data, state) -> None:
    """With blend="product" a reader who read a gets b above posts that trend as much but
    were never read with a; a reader with no history gets the trending order itself."""
    data, _ = blog_data
    art = fit("user-personalization", data, RecipeParams(blend="product"))
    scorer = Scorer(art, state, NO_EXPLORATION)
    trending, _ = scorer.shared()

    cold = scorer.for_reader("u:nobody").values
    assert ids(state, top_n(cold, 10)) == ids(state, top_n(trending.copy(), 10))

    read(state, "u:visitor", "post-a")
    warm = scorer.for_reader("u:visitor").values
    b, d = idx(state, "post-b"), idx(state, "post-d")
    assert warm[b] / trending[b] > 1.5  # a's strongest neighbour: close to double
    assert warm[d] / trending[d] == pytest.approx(1.0)  # never read with a: as trending
    rank = {i: r for r, i in enumerate(np.argsort(-cold, kind="stable").tolist())}
    rank_warm = {i: r for r, i in enumerate(np.argsort(-warm, kind="stable").tolist())}
    assert rank_warm[b] < rank[b]


def _sections_state() -> tuple[OnlineState, Scorer, Scorer]:
    """Sport trends twice as much as politics; one post has no section. The
    model knows no co-reads, so only sections can personalize. Returns the state and
    scorers with category_weight 0 and 1."""
    state = OnlineState(trending_half_life_hours=6.0)
    t0 = 1_767_225_600.0
    sections = {"pol-1": ["politics"], "pol-2": ["politics"], "sport-1": ["sport"]}
    sections |= {"sport-2": ["sport"], "sport-3": ["sport"], "mixed": ["politics", "sport"]}
    sections |= {"plain": []}
    for item, cats in sections.items():
        state.set_item(item, t0 - DAY, cats)
    reads = {"pol-1": 3, "pol-2": 3, "sport-1": 6, "sport-2": 6, "sport-3": 6, "mixed": 3}
    reads |= {"plain": 4}
    k = 0
    for item, n in reads.items():
        for _ in range(n):
            state.observe([f"s:crowd{k}"], [item], [t0 + k])
            k += 1
    empty = Interactions(
        *(np.zeros(0, dtype=t) for t in (np.int32, np.int32, np.int32, np.float64)),
        item_ids=np.asarray(list(sections), dtype=str),
        reader_ids=np.zeros(0, dtype=str),
    )
    scorers = []
    for weight in (0.0, 1.0):
        params = RecipeParams(blend="product", category_weight=weight)
        scorers.append(Scorer(fit("user-personalization", empty, params), state, NO_EXPLORATION))
    return state, scorers[0], scorers[1]


def test_a_readers_sections_bend_trending_toward_them() -> None:
    state, plain, sections = _sections_state()
    state.observe(["u:reader"], ["pol-1"], [state.newest_event_time + 1])
    without = ids(state, top_n(plain.for_reader("u:reader").values, 6))
    assert set(without[:3]) == {"sport-1", "sport-2", "sport-3"}  # trending order
    assert without.index("pol-2") > without.index("plain")
    ranked = ids(state, top_n(sections.for_reader("u:reader").values, 6))
    assert ranked[0] == "pol-2"  # their section first, though sport trends twice as much
    assert ranked.index("mixed") < ranked.index("sport-1")  # half politics beats none
    assert "pol-1" not in ranked  # read: never shown again
    # The next reads change the next answer, without retraining: after two sport reads,
    # the sport post they have not read leads.
    for item in ("sport-1", "sport-2"):
        state.observe(["u:reader"], [item], [state.newest_event_time + 1])
    ranked = ids(state, top_n(sections.for_reader("u:reader").values, 6))
    assert ranked[0] == "sport-3"


def test_the_section_boost_is_neutral_for_items_without_one_and_readers_without_history() -> None:
    state, plain, sections = _sections_state()
    assert sections.category_boost(np.zeros(0, dtype=np.int64), state.trending()) is None
    history = np.asarray([idx(state, "pol-1")])
    boost = sections.category_boost(history, state.trending())
    assert boost is not None
    assert boost[idx(state, "plain")] == 1.0
    assert boost[idx(state, "pol-2")] > 1.0 > boost[idx(state, "sport-1")]
    newcomer = sections.for_reader("u:nobody").values
    np.testing.assert_allclose(newcomer, plain.for_reader("u:nobody").values)


def test_a_section_gone_quiet_does_not_lift_its_stale_posts_above_what_trends() -> None:
    # A reader's only reads are two days old, in a section nobody reads any more; the
    # 1-hour trending of its posts is ~0, so even the largest boost leaves them below news.
    state = OnlineState(trending_half_life_hours=6.0)
    t0 = 1_767_225_600.0
    for k in range(20):
        state.set_item(f"obit-{k}", t0 - 3 * DAY, ["obits"])
    for k in range(50):
        state.set_item(f"news-{k}", t0 - DAY, ["news"])
    state.observe(["u:reader"] * 3, ["obit-0", "obit-1", "obit-2"], [t0 - 2 * DAY] * 3)
    for k in range(500):
        state.observe([f"s:crowd{k}"], [f"news-{k % 50}"], [t0 + k])
    empty = Interactions(
        *(np.zeros(0, dtype=t) for t in (np.int32, np.int32, np.int32, np.float64)),
        item_ids=np.asarray(state.item_ids, dtype=str),
        reader_ids=np.zeros(0, dtype=str),
    )
    params = RecipeParams(blend="product", category_weight=1.0, trending_half_life_hours=1.0)
    scorer = Scorer(fit("user-personalization", empty, params), state, NO_EXPLORATION)
    top = ids(state, top_n(scorer.for_reader("u:reader").values, 10))
    assert all(item.startswith("news-") for item in top), top
    boost = scorer.category_boost(np.asarray([idx(state, "obit-0")]), state.trending(1.0))
    assert boost is not None and boost.max() <= 8.0 and boost.min() >= 1 / 8


# -- one answer for the same events, whatever the process saw before ---------------------------


def test_a_process_that_saw_the_same_events_gives_the_same_scores(blog_data, artifact) -> None:
    """A long-running server (its shared trending cached) and a fresh process (a batch job,
    another replica) agree after an event that moves time a month ahead."""
    data, facts = blog_data
    running = state_from(data, facts, trending_half_life_hours=6.0, history_length=50)
    server = Scorer(artifact, running, Exploration())
    server.for_reader("u:someone")  # the shared terms are now cached
    month_later = running.newest_event_time + 30 * DAY
    running.observe(["u:visitor"], ["post-c"], [month_later])

    fresh = state_from(data, facts, trending_half_life_hours=6.0, history_length=50)
    fresh.observe(["u:visitor"], ["post-c"], [month_later])
    batch = Scorer(artifact, fresh, Exploration())
    for reader in ("u:visitor", "u:someone-else"):
        np.testing.assert_allclose(
            server.for_reader(reader).values, batch.for_reader(reader).values, rtol=1e-9
        )
    trending, _ = server.shared()
    assert ids(running, top_n(trending, 1)) == ["post-c"]  # the month's only read trends


def test_the_last_days_trending_keeps_a_place_beside_the_last_hours() -> None:
    state = OnlineState(trending_half_life_hours=6.0)
    now = 1_700_000_000.0
    yesterday = [now - 20 * 3600 + k for k in range(40)]  # read a lot, 20 hours ago
    state.observe([f"u:{k}" for k in range(40)], ["yesterday"] * 40, yesterday)
    state.observe(["u:a", "u:b", "u:c"], ["earlier"] * 3, [now - 7200] * 3)  # 2 h ago, 3 reads
    state.observe(["u:d", "u:e"], ["just-now"] * 2, [now - 600, now - 300])

    def order(slow: float) -> list[str]:
        params = RecipeParams(trending_half_life_hours=1.0, slow_trending_weight=slow)
        empty = sp.csr_matrix((0, 0))
        model = Artifact("trending-now", np.array([], dtype=str), np.zeros(0), empty, now, params)
        values = Scorer(model, state, NO_EXPLORATION).for_reader("u:new").values
        return ids(state, top_n(values, 3))

    assert order(0.0) == ["just-now", "earlier", "yesterday"]  # the last hour only
    assert order(1.0) == ["just-now", "yesterday", "earlier"]  # the last day beside it


def test_settle_brings_a_running_scorer_to_every_event(blog_data, artifact) -> None:
    """Below the 0.1 % a request waits for, one event leaves the shared terms behind; the
    serving refresher's settle brings them level with a process that saw every event."""
    data, facts = blog_data
    running = state_from(data, facts, trending_half_life_hours=6.0, history_length=50)
    server = Scorer(artifact, running, Exploration())
    server.for_reader("u:someone")
    one_more = running.newest_event_time - 86400.0  # a late event: little weight today
    running.observe(["u:visitor"], ["post-c"], [one_more])
    fresh = state_from(data, facts, trending_half_life_hours=6.0, history_length=50)
    fresh.observe(["u:visitor"], ["post-c"], [one_more])
    batch = Scorer(artifact, fresh, Exploration())
    server.settle()
    np.testing.assert_allclose(
        server.for_reader("u:someone-else").values, batch.for_reader("u:someone-else").values
    )


def test_a_model_may_carry_its_own_exploration_weight(artifact, state) -> None:
    """The replay may choose a model with more or less exploration than serving's setting."""
    young = idx(state, "post-d")
    state.published_at[young] = state.newest_event_time - 3600.0  # an hour old
    serving = Exploration(weight=0.3)
    bonus = {
        weight: Scorer(
            replace(artifact, params=replace(artifact.params, exploration_weight=weight)),
            state,
            serving,
        ).shared()[1][young]
        for weight in (None, 0.0, 0.6)
    }
    assert bonus[0.0] == 0.0 < bonus[None] < bonus[0.6]
