"""Leave-last-out: each reader's last item held out, the full catalog ranked, ties lost."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from clickrec.cli import app
from clickrec.evaluation.leave_last_out import (
    ScoredPopularity,
    ScoredRecipeModel,
    last_items,
    rates,
    run,
    target_rank,
)
from clickrec.models.base import Interactions, RecipeParams
from clickrec.testing.synthetic import BlogSpec, generate_blog
from clickrec.training.dataset import to_interactions, training_table
from clickrec.training.offline import BASELINE_POPULARITY, POPULARITY_ALL_TIME

T0 = 1_767_225_600.0


def interactions(
    events: list[tuple[int, int, float]], n_readers: int, n_items: int
) -> Interactions:
    """(reader, item, seconds after T0) per event, kept in the given order (time order)."""
    reader, item, t = (np.array(col) for col in zip(*events, strict=True))
    return Interactions(
        reader=reader.astype(np.int32),
        item=item.astype(np.int32),
        session=reader.astype(np.int32),
        timestamp=T0 + t.astype(np.float64),
        item_ids=np.array([f"i{j}" for j in range(n_items)]),
        reader_ids=np.array([f"u:r{r}" for r in range(n_readers)]),
    )


# Reader 0 reads 0, 1, 2; reader 1 reads only 3; reader 2 reads 1 then 4 at the same
# second (4 comes later in the data); reader 3 reads 0, 1, then 0 again.
EVENTS = [
    (0, 0, 1.0),
    (2, 1, 1.0),
    (3, 0, 1.0),
    (0, 1, 2.0),
    (3, 1, 2.0),
    (1, 3, 3.0),
    (0, 2, 3.0),
    (2, 4, 4.0),
    (2, 1, 4.0),
    (3, 0, 5.0),
]


class FixedScores:
    """Scores every reader's items the same, given in advance: the ranking is by hand."""

    def __init__(self, values: list[float], name: str = "fixed") -> None:
        self.name = name
        self.values = np.array(values, dtype=np.float64)
        self.fitted_on: Interactions | None = None

    def fit(self, train: Interactions) -> None:
        self.fitted_on = train

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        raise AssertionError("leave-last-out observes nothing after the fit")

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        raise AssertionError("a scored model is ranked on its scores")

    def scores(self, reader: int) -> np.ndarray:
        return self.values.copy()


class FixedList:
    """Recommends a fixed list, less what it is told to exclude: no scores to read."""

    def __init__(self, items: list[int], name: str = "list") -> None:
        self.name = name
        self.items = np.array(items, dtype=np.int64)

    def fit(self, train: Interactions) -> None:
        pass

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        pass

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        return self.items[~np.isin(self.items, exclude)][:k]


def test_each_readers_last_new_item_is_held_out_and_the_rest_trains() -> None:
    data = interactions(EVENTS, n_readers=4, n_items=5)
    split = last_items(data)
    # Reader 0: item 2. Reader 1 has nothing before their one event. Reader 2 read 1 and
    # 4 at the same second; the data lists 1 last, but reader 2 had read 1 before, so
    # nothing is held out for them; nor for reader 3, whose last read repeats item 0.
    assert split.readers.tolist() == [0]
    assert split.targets.tolist() == [2]
    assert split.repeats == 2
    assert np.flatnonzero(~split.train).tolist() == [6]


def test_among_events_at_the_same_time_the_later_in_the_data_is_the_last() -> None:
    data = interactions([(0, 0, 1.0), (0, 2, 2.0), (0, 1, 2.0)], n_readers=1, n_items=3)
    split = last_items(data)
    assert split.targets.tolist() == [1]
    assert split.train.tolist() == [True, True, False]


def test_ties_count_against_the_target() -> None:
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    assert target_rank(scores, target=2, exclude=np.zeros(0, dtype=np.int64)) == 4
    assert target_rank(scores, target=0, exclude=np.zeros(0, dtype=np.int64)) == 1
    # An excluded item ahead of or tied with the target does not count.
    assert target_rank(scores, target=2, exclude=np.array([0, 3])) == 2
    # A target the model may never show ranks last, behind every item not excluded.
    never = np.array([0.9, -np.inf, 0.5, np.nan, -np.inf])
    assert target_rank(never, target=1, exclude=np.array([0])) == 4


def test_metrics_by_hand() -> None:
    ranks = np.array([1, 3, 0, 11, 40])  # 0: a list that left the target out
    got = rates(ranks, ks=(10, 20))
    assert got["hr@10"] == pytest.approx(2 / 5)
    assert got["ndcg@10"] == pytest.approx((1.0 + 1.0 / math.log2(4)) / 5)
    assert got["mrr@10"] == pytest.approx((1.0 + 1.0 / 3) / 5)
    assert got["hr@20"] == pytest.approx(3 / 5)
    assert got["ndcg@20"] == pytest.approx((1.0 + 0.5 + 1.0 / math.log2(12)) / 5)
    assert got["mrr@20"] == pytest.approx((1.0 + 1.0 / 3 + 1.0 / 11) / 5)


def test_the_readers_items_are_excluded_and_the_model_fits_without_the_targets() -> None:
    # Readers 0 and 1 each read three items; their last ones (2 and 4) are held out.
    events = [(0, 0, 1.0), (1, 3, 1.0), (0, 1, 2.0), (1, 1, 2.0), (0, 2, 3.0), (1, 4, 3.0)]
    data = interactions(events, n_readers=2, n_items=6)
    # Items 0, 1 and 3 score above every target; only 5 is a rival for both readers.
    model = FixedScores([9.0, 8.0, 1.0, 7.0, 1.0, 1.0])
    result = run([model], data, ks=(1, 2, 3))["fixed"]
    assert model.fitted_on is not None
    assert model.fitted_on.item.tolist() == [0, 3, 1, 1]  # neither target
    # Reader 0 (read 0 and 1): rivals 3 (7.0 > 1.0), 4 and 5 (tied): rank 4.
    # Reader 1 (read 3 and 1): rivals 0, 2 and 5 (tied, so ahead): rank 4 as well.
    assert result["hr@3"] == 0.0
    assert result["readers"] == 2.0 and result["ties_counted"] == 1.0
    # Without the taste for item 3, reader 0's target ties with 4 and 5 only: rank 3;
    # reader 1's still has 0 ahead and ties with 2 and 5: rank 4.
    flatter = run([FixedScores([9.0, 8.0, 1.0, 0.0, 1.0, 1.0])], data, ks=(3, 4))["fixed"]
    assert flatter["hr@3"] == 0.5 and flatter["hr@4"] == 1.0
    assert flatter["ndcg@4"] == pytest.approx((0.5 + 1.0 / math.log2(5)) / 2)


def test_a_list_only_model_is_ranked_on_its_list_and_must_not_list_touched_items() -> None:
    events = [(0, 0, 1.0), (1, 3, 1.0), (0, 1, 2.0), (1, 1, 2.0), (0, 2, 3.0), (1, 4, 3.0)]
    data = interactions(events, n_readers=2, n_items=6)
    result = run([FixedList([0, 1, 2, 3, 4, 5])], data, ks=(1, 2))["list"]
    # Reader 0 gets [2, 3]: a hit at 1; reader 1 gets [0, 2]: target 4 is left out.
    assert result["hr@1"] == 0.5 and result["hr@2"] == 0.5 and result["ties_counted"] == 0.0

    class Careless(FixedList):
        def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
            return self.items[:k]

    with pytest.raises(ValueError, match="excluded item"):
        run([Careless([0, 1, 2])], data, ks=(3,))


def test_nothing_to_hold_out_is_an_error() -> None:
    data = interactions([(0, 0, 1.0), (1, 1, 2.0)], n_readers=2, n_items=2)
    with pytest.raises(ValueError, match="nothing to hold out"):
        run([FixedScores([1.0, 0.0])], data)


@pytest.fixture(scope="module")
def blog() -> Interactions:
    table = generate_blog(BlogSpec(users=120, days=4, seed=3)).interactions
    return to_interactions(training_table(table))


def test_a_recipe_is_ranked_on_the_serving_scores_and_agrees_with_its_list(
    blog: Interactions,
) -> None:
    params = RecipeParams(half_life_hours=8760.0, cooccurrence="reader", sequence_weight=1.0)
    model = ScoredRecipeModel("taste", "user-personalization", params)
    split = last_items(blog)
    model.fit(blog.subset(split.train))
    history = {r: np.unique(blog.item[split.train & (blog.reader == r)]) for r in split.readers}
    for reader, target in zip(split.readers.tolist(), split.targets.tolist(), strict=True):
        exclude = history[reader]
        rank = target_rank(model.scores(reader), target, exclude)
        top = model.recommend(reader, 20, exclude).tolist()
        # Whatever the ties, a target within the top 20 by rank is on the list, no lower.
        if rank <= 20:
            assert target in top and top.index(target) + 1 <= rank
        if target in top:
            assert rank >= top.index(target) + 1


def test_popularity_ranks_the_target_by_its_count_as_plain_counts_and_as_served() -> None:
    # Held out: item 1 of reader 0, 2 of reader 1, 0 of reader 2, 2 of reader 3. What
    # trains counts item 0 twice, item 1 twice, item 2 once and item 3 never.
    events = [(0, 0, 1.0), (1, 0, 1.0), (2, 1, 1.0), (3, 1, 1.0), (2, 2, 1.5)]
    events += [(0, 1, 2.0), (1, 2, 2.0), (3, 2, 2.0), (2, 0, 3.0)]
    data = interactions(events, n_readers=4, n_items=4)
    served = ScoredRecipeModel("served", "popularity-count", RecipeParams(half_life_hours=1e9), 1e9)
    result = run([ScoredPopularity("counts"), served], data, ks=(1, 2))
    # Reader 0 (read 0): 1 first. Reader 1 (read 0): 1 beats 2. Reader 2 (read 1, 2): 0
    # first. Reader 3 (read 1): 0 beats 2.
    for name in ("counts", "served"):
        assert result[name]["hr@1"] == 0.5 and result[name]["hr@2"] == 1.0
        assert result[name]["mrr@2"] == pytest.approx(0.75)


def test_clickrec_evaluate_leave_last_out(tmp_path: Path) -> None:
    table = generate_blog(BlogSpec(users=80, days=3, seed=4)).interactions
    path = tmp_path / "events.csv"
    pacsv.write_csv(table.select(["user_id", "item_id", "timestamp"]), path)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(
        app,
        ["evaluate", str(path), "--protocol", "leave-last-out", "--json", str(report)],
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # the console wraps at 80 columns
    assert "ndcg@10" in said and "ties counted against it" in said
    data = json.loads(report.read_text())
    assert data["protocol"] == "leave-last-out"
    cands = data["candidates"]
    assert {POPULARITY_ALL_TIME, BASELINE_POPULARITY} <= set(cands)
    readers = {m["readers"] for m in cands.values()}
    assert len(readers) == 1 and 0 < readers.pop() <= 80
    for metrics in cands.values():
        assert metrics["ndcg@10"] <= metrics["hr@10"] <= metrics["hr@20"] <= 1.0


def test_table_without_readers_to_hold_out_fails_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    pacsv.write_csv(
        pa.table({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [T0, T0 + 1]}), path
    )
    result = CliRunner().invoke(app, ["evaluate", str(path), "--protocol", "leave-last-out"])
    assert result.exit_code == 1
    assert "no leave-last-out possible" in result.output
