"""Regression tests for review findings on scoring (all fixed)."""

from __future__ import annotations

import numpy as np

from clickrec.models.online import OnlineState
from clickrec.models.scoring import Exploration, Scorer


def test_trending_follows_a_doubling_of_events() -> None:
    state = OnlineState(trending_half_life_hours=6.0)
    scorer = Scorer(None, state, Exploration(weight=0.0))
    t = 1_700_000_000.0
    state.observe(["s:a"] * 999 + ["s:b"], ["a"] * 999 + ["b"], [t] * 1000)
    trending, _ = scorer.shared()  # seen 1000: key part 1000 // 1 = 1000
    assert trending[state.item_index["b"]] < 0.01
    state.observe(["s:b"] * 1000, ["b"] * 1000, [t] * 1000)
    trending, _ = scorer.shared()  # seen 2000: key part 2000 // 2 = 1000, the same key
    fresh = state.trending()
    assert fresh[state.item_index["b"]] == 1.0  # "b" now leads …
    assert np.allclose(trending, fresh, atol=1e-3)  # … but the cache still says ~0.001
