"""Baselines as live models: the contract every one keeps, and that new events count."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec.evaluation.baselines import (
    ALSFoldIn,
    BPRFoldIn,
    ItemKNN,
    LivePopularity,
    RandomItems,
)
from clickrec.evaluation.live import LiveModel
from clickrec.models.base import Interactions

T0 = 1_767_225_600.0
HOUR = 3600.0


def co_read(groups: int = 6, sessions: int = 120, seed: int = 0) -> Interactions:
    """Readers who read within one of ``groups`` disjoint groups of four items, plus a
    last reader (the newcomer) whose single read comes after everyone else's."""
    rng = np.random.default_rng(seed)
    reader, item = [], []
    for r in range(sessions):
        group = r % groups
        for it in rng.choice(4, 3, replace=False):
            reader.append(r)
            item.append(4 * group + int(it))
    reader.append(sessions)
    item.append(0)  # the newcomer reads item 0, of group 0 (items 0..3)
    n = len(reader)
    return Interactions(
        np.asarray(reader, dtype=np.int32),
        np.asarray(item, dtype=np.int32),
        np.asarray(reader, dtype=np.int32),
        T0 + 60.0 * np.arange(n),
        np.asarray([f"i{k}" for k in range(4 * groups)]),
        np.asarray([f"s:{r}" for r in range(sessions + 1)]),
    )


def implicit_models() -> list[LiveModel]:
    pytest.importorskip("implicit")
    return [
        ALSFoldIn(factors=6, regularization=0.1, alpha=40.0, iterations=30),
        BPRFoldIn(factors=8, learning_rate=0.05, iterations=200),
        ItemKNN("cosine", "cosine", neighbours=10),
        ItemKNN("bm25", "bm25", neighbours=10),
    ]


@pytest.fixture(params=["popularity", "trending", "random", "implicit"])
def models(request: pytest.FixtureRequest) -> list[LiveModel]:
    if request.param == "implicit":
        return implicit_models()
    return {
        "popularity": [LivePopularity()],
        "trending": [LivePopularity("trending", half_life_hours=1.0)],
        "random": [RandomItems()],
    }[request.param]


def test_every_baseline_keeps_the_recommend_contract(models: list[LiveModel]) -> None:
    data = co_read()
    newcomer = int(data.reader[-1])
    for model in models:
        model.fit(data.subset(data.reader != newcomer))
        for reader in (0, 3, newcomer):
            exclude = np.unique(data.item[data.reader == reader])
            top = np.asarray(model.recommend(reader, 10, exclude))
            assert len(top) == 10, model.name  # filled, even for a reader never seen
            assert len(np.unique(top)) == 10
            assert not np.isin(top, exclude).any()
            assert ((top >= 0) & (top < data.n_items)).all()
        assert len(model.recommend(0, 100, np.zeros(0, dtype=np.int64))) == data.n_items


def test_a_new_read_brings_its_group_for_every_personal_baseline() -> None:
    data = co_read()
    newcomer = int(data.reader[-1])
    for model in implicit_models():
        model.fit(data.subset(data.reader != newcomer))
        model.observe(data.reader[-1:], data.item[-1:], data.timestamp[-1:])
        top = np.asarray(model.recommend(newcomer, 3, np.array([0])))
        assert set(top.tolist()) == {1, 2, 3}, model.name


def test_trending_follows_what_is_read_now_and_popularity_remembers() -> None:
    readers = np.arange(30, dtype=np.int32)
    # Item 0 was read 20 times a day ago; item 1 ten times in the last hour.
    items = np.r_[np.zeros(20), np.ones(10)].astype(np.int32)
    times = np.r_[T0 - 24 * HOUR + np.arange(20), T0 - HOUR + np.arange(10)]
    train = Interactions(
        readers,
        items,
        readers,
        times,
        np.array(["old", "new"]),
        np.array([str(r) for r in readers]),
    )
    trending, popularity = LivePopularity("t", half_life_hours=2.0), LivePopularity("p")
    for model in (trending, popularity):
        model.fit(train)
    none = np.zeros(0, dtype=np.int64)
    assert trending.recommend(0, 1, none)[0] == 1
    assert popularity.recommend(0, 1, none)[0] == 0
    # A year later, one fresh read of the old item is enough to make it trend again.
    later = np.array([T0 + 8760 * HOUR])
    trending.observe(np.array([0]), np.array([0]), later)
    assert trending.recommend(0, 1, none)[0] == 0
    assert np.isfinite(trending._scores).all()


def test_random_is_seeded() -> None:
    data = co_read()
    a, b = RandomItems(seed=4), RandomItems(seed=4)
    a.fit(data)
    b.fit(data)
    none = np.zeros(0, dtype=np.int64)
    assert np.array_equal(a.recommend(0, 5, none), b.recommend(0, 5, none))
