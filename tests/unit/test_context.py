"""Trending per context: events carry a context map (device, referrer…), and a request's
context bends trending toward what trends among events with the same values."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec.models.online import OnlineState, load_bulk
from clickrec.models.scoring import Scorer
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog

PHONE = {"device": "phone"}
DESKTOP = {"device": "desktop"}


def _state(**kwargs: int) -> OnlineState:
    """Item a is read on phones (10 reads), item b on desktops (20 reads: more popular)."""
    state = OnlineState(**kwargs)
    events = [("a", PHONE)] * 10 + [("b", DESKTOP)] * 20
    state.observe(
        [f"r{k}" for k in range(len(events))],
        [item for item, _ in events],
        [1000.0 + k for k in range(len(events))],
        contexts=[context for _, context in events],
    )
    return state


def test_a_phone_request_sees_what_trends_on_phones() -> None:
    state = _state()
    a, b = state.item_index["a"], state.item_index["b"]
    scorer = Scorer(None, state)
    trending, _ = scorer.shared()
    assert trending[b] > trending[a]  # overall, b leads
    on_phone = scorer.contextual(trending, PHONE)
    assert on_phone[a] > on_phone[b] and on_phone.max() == pytest.approx(1.0)
    assert np.array_equal(scorer.contextual(trending, None), trending)
    # A value never seen, and a weight of 0, leave trending as it is.
    assert np.array_equal(scorer.contextual(trending, {"device": "tv"}), trending)
    assert np.array_equal(
        Scorer(None, state, context_weight=0).contextual(trending, PHONE), trending
    )
    ranked = scorer.for_reader("new-reader", context=PHONE).values
    assert ranked[a] > ranked[b]
    assert scorer.for_reader("new-reader").values[b] > scorer.for_reader("x").values[a]


def test_the_lift_is_smoothed_and_bounded() -> None:
    state = _state()
    lift = state.context_lift(PHONE)
    assert lift is not None
    a, b = state.item_index["a"], state.item_index["b"]
    assert 1.0 < lift[a] <= 8.0 and 0.125 <= lift[b] < 1.0
    assert state.context_lift({"device": "tv"}) is None


def test_context_pairs_are_capped_so_a_high_cardinality_key_cannot_grow_memory() -> None:
    state = OnlineState(max_context_values=3)
    contexts = [{"referrer": f"https://site/{k}"} for k in range(50)]
    state.observe([f"r{k}" for k in range(50)], ["a"] * 50, [float(k) for k in range(50)],
                  contexts=contexts)  # fmt: skip
    assert len(state.context_slots) == 3 and state._context.shape[0] == 3
    # The catalog can still grow past the first arrays' capacity.
    state.observe(["r"] * 3000, [f"i{k}" for k in range(3000)], [60.0] * 3000,
                  contexts=[PHONE] * 3000)  # fmt: skip
    assert state._context.shape[1] >= state.n_items


def test_bulk_loading_gives_the_same_lift_as_event_by_event() -> None:
    one, bulk = _state(), OnlineState()
    items = ["a"] * 10 + ["b"] * 20
    contexts = [PHONE] * 10 + [DESKTOP] * 20
    order = np.random.default_rng(0).permutation(30)  # load_bulk sorts by time itself
    load_bulk(
        bulk,
        np.array([f"r{k}" for k in range(30)])[order],
        np.array(items)[order],
        (1000.0 + np.arange(30))[order],
        contexts=[contexts[k] for k in order.tolist()],
    )
    assert bulk.item_index == one.item_index
    np.testing.assert_allclose(bulk.context_lift(PHONE), one.context_lift(PHONE))  # type: ignore[arg-type]


def test_re_anchoring_keeps_the_lift() -> None:
    state = _state()
    before = state.context_lift(PHONE)
    state._reanchor(1000.0 + 3600.0 * 24)
    np.testing.assert_allclose(state.context_lift(PHONE), before)  # type: ignore[arg-type]


def test_the_synthetic_blog_can_give_readers_a_device_and_leaves_other_blogs_unchanged() -> None:
    plain = generate_blog(BlogSpec(users=60, days=3, seed=5))
    with_device = generate_blog(BlogSpec(users=60, days=3, seed=5, device_effect=1.0))
    assert "device" not in plain.interactions.column_names
    assert set(with_device.interactions.column("device").to_pylist()) == {"phone", "desktop"}
    assert with_device.interactions.num_rows > 0
    # The same seed without devices draws exactly what it always did.
    again = generate_blog(BlogSpec(users=60, days=3, seed=5))
    assert again.interactions.equals(plain.interactions)
    events = blog_interactions_as_events(with_device)
    assert all(e["context"]["device"] in ("phone", "desktop") for e in events)
