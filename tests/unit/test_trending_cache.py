"""The trending list shared by every reader is cached between requests; the cache must
follow the events, so a burst that changes which item leads is served at once."""

from __future__ import annotations

import numpy as np

from clickrec.models.online import OnlineState
from clickrec.models.scoring import Exploration, Scorer


def test_trending_follows_a_doubling_of_events() -> None:
    state = OnlineState(trending_half_life_hours=6.0)
    scorer = Scorer(None, state, Exploration(weight=0.0))
    t = 1_700_000_000.0
    state.observe(["s:a"] * 999 + ["s:b"], ["a"] * 999 + ["b"], [t] * 1000)
    trending, _ = scorer.shared()  # cached with "a" far ahead
    assert trending[state.item_index["b"]] < 0.01
    state.observe(["s:b"] * 1000, ["b"] * 1000, [t] * 1000)
    trending, _ = scorer.shared()  # as many events again, all "b": well past the 0.1% bound
    fresh = state.trending()
    assert fresh[state.item_index["b"]] == 1.0  # "b" now leads …
    assert np.allclose(trending, fresh, atol=1e-3)  # … and the cached list says so too
