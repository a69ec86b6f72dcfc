"""The replay protocol: every model gets the same live stream and is asked the same things."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from clickrec.evaluation.baselines import LivePopularity, RandomItems
from clickrec.evaluation.live import LiveModel, RecipeModel
from clickrec.evaluation.replay import (
    Stream,
    first_touches,
    holdout,
    late_sessions,
    run,
    session_clicks,
)
from clickrec.evaluation.split import temporal_split
from clickrec.models.base import Interactions, RecipeParams
from clickrec.models.scoring import Exploration
from clickrec.testing.synthetic import BlogSpec, generate_blog
from clickrec.training.dataset import to_interactions, training_table
from clickrec.training.evaluate import evaluate_recipe
from clickrec.training.offline import session_next_click
from clickrec.training.pipeline import candidates

T0 = 1_767_225_600.0


def blog_table(users: int = 150, days: int = 6, anonymous: bool = False) -> pa.Table:
    table = generate_blog(BlogSpec(users=users, days=days, seed=5)).interactions
    if anonymous:
        at = table.column_names.index("user_id")
        table = table.set_column(at, "user_id", pa.nulls(table.num_rows, pa.string()))
    return training_table(table)


@pytest.fixture(scope="module")
def blog() -> Interactions:
    return to_interactions(blog_table())


@pytest.fixture(scope="module")
def stream(blog: Interactions) -> Stream:
    return first_touches(blog, float(np.quantile(blog.timestamp, 0.8)), max_events=600)


class Oracle:
    """Knows the whole log: recommends the reader's next new item, whatever it is."""

    name = "oracle"

    def __init__(self, data: Interactions, stream: Stream) -> None:
        self.data, self.stream, self.fed = data, stream, 0

    def fit(self, train: Interactions) -> None:
        self.fed = 0

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        self.fed += len(items)

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        future = self.stream.events[self.fed :]
        items = self.data.item[future[self.data.reader[future] == reader]]
        items = items[~np.isin(items, exclude)]
        _, first = np.unique(items, return_index=True)
        return items[np.sort(first)][:k].astype(np.int64)


class Recording:
    """Wraps a model and keeps what it was fed and what it answered."""

    def __init__(self, model: LiveModel) -> None:
        self.model, self.name = model, model.name
        self.fed: list[tuple[int, int, float]] = []
        self.answers: list[tuple[int, np.ndarray]] = []

    def fit(self, train: Interactions) -> None:
        self.model.fit(train)

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        self.fed += list(zip(readers.tolist(), items.tolist(), times.tolist(), strict=True))
        self.model.observe(readers, items, times)

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        top = self.model.recommend(reader, k, exclude)
        self.answers.append((reader, top))
        return top


def test_an_oracle_that_knows_the_future_hits_every_time(
    blog: Interactions, stream: Stream
) -> None:
    result = run([Oracle(blog, stream)], blog, stream)["oracle"]
    for k in (5, 10, 20):
        assert result[f"hr@{k}"] == 1.0
        assert result[f"mrr@{k}"] == 1.0
    assert result["sampled"] == len(stream.queries) > 100


def test_random_hits_about_k_in_the_catalog(blog: Interactions, stream: Stream) -> None:
    result = run([RandomItems(seed=3)], blog, stream)["random"]
    expected = 20 / blog.n_items  # readers exclude a few dozen items at most: ~k / items
    spread = 4 * math.sqrt(expected * (1 - expected) / len(stream.queries))
    assert abs(result["hr@20"] - expected) < spread + 0.01
    assert result["hr@5"] <= result["hr@10"] <= result["hr@20"]


def test_trending_beats_random_on_the_blog(blog: Interactions, stream: Stream) -> None:
    models: list[LiveModel] = [
        RecipeModel("clickrec trending", "trending-now", trending_half_life_hours=6.0),
        LivePopularity("live trending", half_life_hours=6.0),
        RandomItems(),
    ]
    result = run(models, blog, stream)
    floor = result["random"]["hr@10"]
    assert result["clickrec trending"]["hr@10"] > 3 * floor
    assert result["live trending"]["hr@10"] > 3 * floor
    # Serving's trending and the baseline count the same events the same way.
    assert result["clickrec trending"]["hr@10"] == pytest.approx(
        result["live trending"]["hr@10"], abs=0.03
    )


def test_touched_items_are_never_recommended(blog: Interactions, stream: Stream) -> None:
    # A short seen list: the scorer alone would show old reads again; the replay may not.
    short = RecipeModel("short memory", "user-personalization", history_length=3, seen_length=3)
    models = [Recording(m) for m in (short, LivePopularity(), RandomItems())]
    run(models, blog, stream)
    for model in models:
        assert len(model.answers) == len(stream.queries)
        for pos, (reader, top) in zip(stream.queries.tolist(), model.answers, strict=True):
            event = stream.events[pos]
            before = np.arange(len(blog)) < event
            touched = blog.item[before & (blog.reader == reader)]
            assert reader == blog.reader[event]
            assert not np.isin(top, touched).any(), model.name
            assert len(top) == 20 == len(np.unique(top))


def test_a_model_that_shows_touched_items_is_an_error(blog: Interactions, stream: Stream) -> None:
    class Careless(LivePopularity):
        def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
            return np.r_[exclude[:1], super().recommend(reader, k - 1, exclude)]

    with pytest.raises(ValueError, match="excluded"):
        run([Careless("careless")], blog, stream)


def test_every_model_observes_the_same_events(blog: Interactions, stream: Stream) -> None:
    models = [
        Recording(RecipeModel("up", "user-personalization")),
        Recording(LivePopularity()),
        Recording(RandomItems()),
    ]
    result = run(models, blog, stream)
    expected = list(
        zip(
            blog.reader[stream.events].tolist(),
            blog.item[stream.events].tolist(),
            blog.timestamp[stream.events].tolist(),
            strict=True,
        )
    )
    for model in models:
        assert model.fed == expected
        assert result[model.name]["observed"] == len(stream.events)
    # The events are in time order and all after the cut; training is all before it.
    assert np.all(np.diff(blog.timestamp[stream.events]) >= 0)
    assert blog.timestamp[stream.train].max() < blog.timestamp[stream.events].min()


def co_read(extra_reader: bool = True) -> Interactions:
    """Sessions that read a then b, c then d, and many that read the popular e and f."""
    pairs = [("a", "b")] * 6 + [("c", "d")] * 6 + [("e", "f")] * 20
    item_ids = np.array(["a", "b", "c", "d", "e", "f"])
    index = {item: k for k, item in enumerate(item_ids.tolist())}
    reader, item, ts = [], [], []
    for k, pair in enumerate(pairs):
        for pos, it in enumerate(pair):
            reader.append(k)
            item.append(index[it])
            ts.append(T0 + 60.0 * k + pos)
    if extra_reader:  # a reader who arrives after training and reads a
        reader.append(len(pairs))
        item.append(index["a"])
        ts.append(T0 + 60.0 * len(pairs))
    n = len(reader)
    return Interactions(
        np.asarray(reader, dtype=np.int32),
        np.asarray(item, dtype=np.int32),
        np.asarray(reader, dtype=np.int32),
        np.asarray(ts),
        item_ids,
        np.asarray([f"s:{r}" for r in range(max(reader) + 1)]),
    ).subset(np.arange(n) >= 0)


def test_observe_changes_the_recipe_answer_at_once() -> None:
    data = co_read()
    newcomer, a, b = int(data.reader[-1]), 0, 1
    model = RecipeModel("up", "user-personalization", RecipeParams(shrinkage=0.0))
    model.fit(data.subset(data.reader != newcomer))
    none = np.zeros(0, dtype=np.int64)
    before = model.recommend(newcomer, 2, none)
    assert set(before.tolist()) == {4, 5}  # e and f: trending, nothing personal yet
    model.observe(data.reader[-1:], data.item[-1:], data.timestamp[-1:])
    after = model.recommend(newcomer, 2, np.array([a]))
    assert after[0] == b


def test_holdout_scores_a_recipe_as_the_pipeline_does(blog: Interactions) -> None:
    split = temporal_split(
        blog.reader, blog.item, blog.timestamp, blog.n_readers, blog.n_items, 0.2
    )
    params = RecipeParams()
    pipeline = evaluate_recipe(
        "user-personalization", params, blog, split, {}, Exploration(), 6.0, 50
    )
    live = holdout([RecipeModel("up", "user-personalization", params, 6.0, 50)], blog, split)
    assert live["up"]["ndcg@10"] > 0.01
    for key in ("ndcg@10", "recall@20", "mrr@20", "coverage@20"):
        assert live["up"][key] == pytest.approx(pipeline[key], abs=1e-9)


def test_next_click_matches_the_evaluate_command() -> None:
    table = blog_table(users=80, days=4, anonymous=True)
    data = to_interactions(table)
    stream = session_clicks(data, late_sessions(data, 0.2), max_sessions=10**6)
    name = "user-personalization/next-read"
    params = next(c.params for c in candidates(RecipeParams()) if c.name == name)
    model = RecipeModel("up", "user-personalization", params, 6.0, 50)
    live = run([model], data, stream)["up"]
    cand = session_next_click(table, test_fraction=0.2, max_sessions=10**6)
    reference = cand[name]
    assert live["sampled"] == reference["predictions"] > 50
    assert live["mrr@20"] > 0.01
    assert live["mrr@20"] == pytest.approx(reference["mrr@20"], abs=1e-9)
    assert live["hr@20"] == pytest.approx(reference["hr@20"], abs=1e-9)


def test_the_stream_asks_first_touches_only(blog: Interactions, stream: Stream) -> None:
    keys = blog.reader.astype(np.int64) * blog.n_items + blog.item
    for pos in stream.queries.tolist():
        event = stream.events[pos]
        assert keys[event] not in keys[:event]
    again = first_touches(blog, float(np.quantile(blog.timestamp, 0.8)), max_events=600)
    assert np.array_equal(again.queries, stream.queries)  # seeded
    with pytest.raises(ValueError, match="no events"):
        first_touches(blog, float(blog.timestamp.max()) + 1.0)
