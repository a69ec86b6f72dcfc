"""Fresh co-reads: read-next pairs learned from the live stream, decayed and bounded, and
what they do for a post published after the last training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from clickrec.models.base import RecipeParams
from clickrec.models.coreads import FreshCoreads
from clickrec.models.online import OnlineState, state_from
from clickrec.models.recipes import fit
from clickrec.models.scoring import Exploration, Scorer, top_n
from clickrec.testing.synthetic import BlogSpec, generate_blog
from tests.blogdata import interactions_of

HOUR = 3600.0
T0 = 1_700_000_000.0


def _pairs(co: FreshCoreads, items: list[int], n: int = 10) -> np.ndarray:
    return co.spread(np.asarray(items, np.int64), np.ones(len(items)), n)


def test_a_read_after_another_links_them_forward_more_than_back() -> None:
    co = FreshCoreads(backward=0.5)
    co.add_reads(
        np.array([-1, 1]), np.array([-np.inf, T0]), np.array([1, 2]), np.array([T0, T0 + 60])
    )
    after_one = _pairs(co, [1])
    assert after_one[2] > 0 and after_one[1] == 0
    assert _pairs(co, [2])[1] == pytest.approx(0.5 * after_one[2])
    co.compact(full=True)  # the same answer from the matrix as from the waiting buffer
    assert _pairs(co, [1])[2] == pytest.approx(after_one[2])


def test_reads_far_apart_or_of_the_same_post_make_no_pair() -> None:
    co = FreshCoreads(max_gap_hours=24.0)
    co.add_reads(
        np.array([1, 3]),
        np.array([T0, T0]),
        np.array([2, 3]),  # 1 → 2 two days later; 3 → 3 a repeat
        np.array([T0 + 48 * HOUR, T0 + 60]),
    )
    assert co.pairs == 0


def test_old_pairs_fade_and_are_dropped() -> None:
    co = FreshCoreads(half_life_hours=1.0)
    co.add(np.array([1]), np.array([2]), np.array([T0]))
    co.add(np.array([1]), np.array([3]), np.array([T0 + HOUR]))
    fresh = _pairs(co, [1])
    assert fresh[3] == pytest.approx(2 * fresh[2])  # one half-life newer: twice the weight
    co.add(np.array([5]), np.array([6]), np.array([T0 + 30 * HOUR]))  # 30 half-lives on
    co.compact(full=True)
    assert _pairs(co, [1])[[2, 3]].sum() == 0 and co.pairs == 2  # only 5 ↔ 6 is left


def test_memory_is_bounded_by_the_strongest_pairs() -> None:
    co = FreshCoreads(max_pairs=100, backward=0.0)
    rng = np.random.default_rng(0)
    prev, nxt = rng.integers(0, 500, 2000), rng.integers(0, 500, 2000)
    keep = prev != nxt
    co.add(prev[keep], nxt[keep], T0 + np.arange(keep.sum()))
    co.compact(full=True)
    assert co.matrix.nnz <= 100
    newest = int(np.flatnonzero(keep)[-1])
    assert co.matrix[prev[newest], nxt[newest]] > 0  # the newest pair is among the strongest


def test_a_post_published_after_training_gets_its_readers_from_fresh_coreads() -> None:
    data = interactions_of(generate_blog(BlogSpec(users=200, days=4, seed=2)).interactions)
    params = RecipeParams()
    artifact = fit("user-personalization", data, params)
    state = state_from(data, {}, trending_half_life_hours=6.0, history_length=50)
    end = float(data.timestamp.max())
    anchor = str(data.item_ids[int(np.argmax(np.bincount(data.item)))])  # a well-read post
    # After the training: a new post, read right after ``anchor`` by three readers.
    readers = [f"u:late{k}" for k in range(3) for _ in range(2)]
    items = [post for _ in range(3) for post in (anchor, "brand-new")]
    state.observe(readers, items, [end + 60.0 * k for k in range(6)])
    state.observe(["u:me"], [anchor], [end + 3600.0])

    def rank(weight: float) -> int:
        model = replace(artifact, params=replace(params, fresh_weight=weight))
        scorer = Scorer(model, state, Exploration(weight=0.0))
        order = ids(state, top_n(scorer.for_reader("u:me").values, 100))
        return order.index("brand-new") if "brand-new" in order else 100

    assert rank(1.0) < 10 <= rank(0.0)  # in the top ten only with the fresh co-reads


def ids(state: OnlineState, indices: np.ndarray) -> list[str]:
    return [state.item_ids[i] for i in indices]
