"""Online state: trending in event time, reader histories, merges, bulk loads, item facts."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec.models.online import OnlineState, load_bulk

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0
YEAR = 365 * 24 * HOUR


def ranking(state: OnlineState) -> list[str]:
    """Item ids by trending score, best first (ties by id)."""
    t = state.trending()
    return sorted(state.item_ids, key=lambda i: (-t[state.item_index[i]], i))


def trending_by_id(state: OnlineState) -> dict[str, float]:
    t = state.trending()
    return {i: float(t[state.item_index[i]]) for i in state.item_ids}


def history_ids(state: OnlineState, reader: str) -> list[str]:
    items, _ = state.history(reader)
    return [state.item_ids[i] for i in items]


def burst_then_few(offset: float = 0.0) -> tuple[list[str], list[str], list[float]]:
    """100 reads of "old" at T0, then 3 reads of "new" ten trending half-lives (60 h) later."""
    readers = [f"s:{k}" for k in range(103)]
    items = ["old"] * 100 + ["new"] * 3
    times = [T0 + offset + k for k in range(100)] + [T0 + offset + 60 * HOUR + k for k in range(3)]
    return readers, items, times


# -- trending --------------------------------------------------------------------------------


def test_a_few_recent_reads_beat_a_burst_many_half_lives_ago() -> None:
    state = OnlineState(trending_half_life_hours=6.0)
    readers, items, times = burst_then_few()
    state.observe(readers[:100], items[:100], times[:100])
    assert ranking(state) == ["old"]

    state.observe(readers[100:], items[100:], times[100:])

    assert ranking(state) == ["new", "old"]
    t = trending_by_id(state)
    assert t["new"] == pytest.approx(1.0)  # scaled so the top item scores 1
    # 100 reads ten half-lives ago weigh 100 / 1024 of a read now: about a third of 3 reads.
    assert t["old"] == pytest.approx((100 / 1024) / 3, rel=1e-2)
    assert state.counts()[state.item_index["old"]] == 100


def test_within_one_half_life_the_burst_still_wins() -> None:
    state = OnlineState(trending_half_life_hours=6.0)
    state.observe(["r"] * 100, ["old"] * 100, [T0] * 100)
    state.observe(["r"] * 3, ["new"] * 3, [T0 + 5 * HOUR] * 3)
    assert ranking(state) == ["old", "new"]


def test_time_is_event_time_not_wall_time() -> None:
    """Events dated years ago rank exactly like the same events dated now."""
    now_state = OnlineState(trending_half_life_hours=6.0)
    now_state.observe(*burst_then_few())

    past_state = OnlineState(trending_half_life_hours=6.0)
    past_state.observe(*burst_then_few(offset=-5 * YEAR))

    assert ranking(past_state) == ranking(now_state) == ["new", "old"]
    for item, value in trending_by_id(now_state).items():
        assert trending_by_id(past_state)[item] == pytest.approx(value, rel=1e-9)
    assert past_state.newest_event_time == pytest.approx(now_state.newest_event_time - 5 * YEAR)


def test_a_state_whose_clock_started_years_ago_replays_to_the_same_ranking() -> None:
    fresh = OnlineState(trending_half_life_hours=6.0)
    fresh.observe(*burst_then_few())

    old = OnlineState(trending_half_life_hours=6.0)
    old.observe(["s:ancient"] * 50, ["ancient"] * 50, [T0 - 3 * YEAR] * 50)
    old.observe(*burst_then_few())

    assert ranking(old) == ["new", "old", "ancient"]
    assert trending_by_id(old)["ancient"] == 0.0  # thousands of half-lives ago
    for item, value in trending_by_id(fresh).items():
        assert trending_by_id(old)[item] == pytest.approx(value, rel=1e-9)


def test_reanchoring_over_a_very_long_span_keeps_values_finite() -> None:
    half_life_h = 1.0
    state = OnlineState(trending_half_life_hours=half_life_h)
    # One read every 300 half-lives, 30 times: 9000 half-lives, far past 2**1023.
    for k in range(30):
        t = T0 + k * 300 * half_life_h * HOUR
        state.observe([f"s:{k}"] * 2, [f"p{k}", "steady"], [t, t])

    t = state.trending()
    assert np.all(np.isfinite(t))
    assert np.all((t >= 0) & (t <= 1))
    assert np.all(np.isfinite(state._trend[: state.n_items]))
    assert set(ranking(state)[:2]) == {"p29", "steady"}
    assert trending_by_id(state)["p29"] == pytest.approx(1.0)
    assert trending_by_id(state)["p28"] < 1e-80  # 300 half-lives: nothing left to speak of
    # A burst right after a long gap still ranks as it would in a fresh state.
    state.observe(["x"] * 5, ["late"] * 5, [state.newest_event_time + 10.0] * 5)
    assert ranking(state)[0] == "late"
    assert np.all(np.isfinite(state.trending()))


def test_trending_of_an_empty_state_is_empty() -> None:
    state = OnlineState()
    assert state.trending().shape == (0,)
    state.observe([], [], [])
    assert state.events_seen == 0
    assert state.newest_event_time == -np.inf


# -- histories -------------------------------------------------------------------------------


def test_history_is_newest_first_with_event_times() -> None:
    state = OnlineState(history_length=10)
    state.observe(["u:1", "u:1"], ["a", "b"], [T0, T0 + 10])
    state.observe(["u:2", "u:1"], ["z", "c"], [T0 + 15, T0 + 20])

    items, times = state.history("u:1")
    assert [state.item_ids[i] for i in items] == ["c", "b", "a"]
    np.testing.assert_array_equal(times, [T0 + 20, T0 + 10, T0])
    assert history_ids(state, "u:2") == ["z"]
    unknown_items, unknown_times = state.history("u:nobody")
    assert len(unknown_items) == 0 and len(unknown_times) == 0


def test_history_is_bounded_by_history_length() -> None:
    state = OnlineState(history_length=5)
    for k in range(23):
        state.observe(["u:1"], [f"p{k}"], [T0 + k])
        items, _ = state.history("u:1")
        assert len(items) <= 5
    assert history_ids(state, "u:1") == [f"p{k}" for k in range(22, 17, -1)]


def test_history_keeps_the_newest_reads_when_it_is_trimmed() -> None:
    state = OnlineState(history_length=5, seen_length=8)
    for k in range(23):
        state.observe(["u:1"], [f"p{k}"], [T0 + k])

    got = history_ids(state, "u:1")
    assert got == ["p22", "p21", "p20", "p19", "p18"]
    seen = [state.item_ids[i] for i in state.seen("u:1")]
    assert seen == [f"p{k}" for k in range(22, 14, -1)]  # the 8 newest are never shown again
    assert len(state.readers["u:1"].items) <= 2 * 8  # never grows without bound


def test_merge_reader_moves_the_anonymous_history_to_the_user() -> None:
    state = OnlineState(history_length=10)
    state.observe(["u:7"], ["home"], [T0])
    state.observe(["s:abc", "s:abc"], ["a", "b"], [T0 + 10, T0 + 20])

    state.merge_reader("s:abc", "u:7")

    assert history_ids(state, "u:7") == ["b", "a", "home"]
    assert history_ids(state, "s:abc") == []
    assert "s:abc" not in state.readers


def test_merge_into_a_user_without_history_and_of_an_unknown_session() -> None:
    state = OnlineState()
    state.observe(["s:abc"], ["a"], [T0])
    state.merge_reader("s:abc", "u:new")
    assert history_ids(state, "u:new") == ["a"]

    state.merge_reader("s:never-seen", "u:new")  # nothing to move, nothing lost
    assert history_ids(state, "u:new") == ["a"]


def test_merge_interleaves_by_time_and_respects_the_bound() -> None:
    state = OnlineState(history_length=4)
    state.observe(["u:1"] * 3, ["u1", "u2", "u3"], [T0, T0 + 20, T0 + 40])
    state.observe(["s:x"] * 3, ["s1", "s2", "s3"], [T0 + 10, T0 + 30, T0 + 50])

    state.merge_reader("s:x", "u:1")

    assert history_ids(state, "u:1") == ["s3", "u3", "s2", "u2"]


def test_observe_applies_merges_before_the_events() -> None:
    """A reader logs in: the session's reads and the new read all end up with the user."""
    state = OnlineState()
    state.observe(["s:abc"], ["a"], [T0])
    state.observe(["u:9"], ["b"], [T0 + 5], merges=[("s:abc", "u:9")])
    assert history_ids(state, "u:9") == ["b", "a"]
    assert history_ids(state, "s:abc") == []


# -- bulk loads ------------------------------------------------------------------------------


def random_events(n: int, seed: int, readers: int = 40, items: int = 60):
    rng = np.random.default_rng(seed)
    reader = np.asarray([f"u:{k}" for k in rng.integers(0, readers, n)])
    item = np.asarray([f"p{k:03d}" for k in rng.zipf(1.5, n) % items])
    ts = np.sort(T0 + rng.uniform(0, 72 * HOUR, n))
    return reader, item, ts


def test_load_bulk_matches_observe() -> None:
    readers, items, ts = random_events(600, seed=1)
    observed = OnlineState(trending_half_life_hours=6.0, history_length=50)
    for lo in range(0, len(ts), 37):  # in small batches, as acknowledged
        sl = slice(lo, lo + 37)
        observed.observe(readers[sl].tolist(), items[sl].tolist(), ts[sl].tolist())

    bulk = OnlineState(trending_half_life_hours=6.0, history_length=50)
    shuffle = np.random.default_rng(2).permutation(len(ts))  # bulk input need not be sorted
    load_bulk(bulk, readers[shuffle], items[shuffle], ts[shuffle])

    assert ranking(bulk) == ranking(observed)
    expected = trending_by_id(observed)
    for item, value in trending_by_id(bulk).items():
        assert value == pytest.approx(expected[item], rel=1e-9, abs=1e-12)
    assert bulk.events_seen == observed.events_seen == 600
    assert bulk.newest_event_time == observed.newest_event_time
    for reader in set(readers.tolist()):
        assert history_ids(bulk, reader) == history_ids(observed, reader)
        np.testing.assert_array_equal(bulk.history(reader)[1], observed.history(reader)[1])
    counts_b = {i: int(bulk.counts()[bulk.item_index[i]]) for i in bulk.item_ids}
    counts_o = {i: int(observed.counts()[observed.item_index[i]]) for i in observed.item_ids}
    assert counts_b == counts_o


def test_load_bulk_matches_observe_for_readers_past_the_history_length() -> None:
    readers, items, ts = random_events(600, seed=3, readers=5)  # ~120 reads per reader
    observed = OnlineState(history_length=50)
    observed.observe(readers.tolist(), items.tolist(), ts.tolist())
    bulk = OnlineState(history_length=50)
    load_bulk(bulk, readers, items, ts)
    for reader in set(readers.tolist()):
        assert history_ids(bulk, reader) == history_ids(observed, reader)


def test_load_bulk_onto_a_live_state_extends_histories_and_trending() -> None:
    state = OnlineState(history_length=10)
    state.observe(["u:1"], ["a"], [T0])
    load_bulk(
        state,
        np.asarray(["u:1", "u:2", "u:1"]),
        np.asarray(["b", "b", "c"]),
        np.asarray([T0 + 10, T0 + 11, T0 + 12]),
    )
    assert history_ids(state, "u:1") == ["c", "b", "a"]
    assert history_ids(state, "u:2") == ["b"]
    assert ranking(state)[0] == "b"
    assert state.events_seen == 4


def test_load_bulk_of_nothing_changes_nothing() -> None:
    state = OnlineState()
    load_bulk(state, np.asarray([]), np.asarray([]), np.asarray([]))
    assert state.n_items == 0 and state.anchor is None


# -- item facts ------------------------------------------------------------------------------


def test_available_hides_deleted_expired_and_not_yet_published_items() -> None:
    state = OnlineState()
    now = T0
    state.set_item("live", published_at=now - HOUR, categories=["tech"])
    state.set_item("undated", published_at=None, categories=[])
    state.set_item("deleted", published_at=now - HOUR, categories=[], deleted=True)
    state.set_item("expired", published_at=now - 2 * HOUR, categories=[], expires_at=now - 1)
    state.set_item("expiring", published_at=now - 2 * HOUR, categories=[], expires_at=now + 60)
    state.set_item("scheduled", published_at=now + HOUR, categories=[])
    state.set_item("clock-skew", published_at=now + 30, categories=[])  # within a minute
    state.observe(["u:1"], ["only-read"], [now])  # never described: shown

    ok = state.available(now)
    shown = {i for i in state.item_ids if ok[state.item_index[i]]}
    assert shown == {"live", "undated", "expiring", "clock-skew", "only-read"}

    # Time moves on: the scheduled post goes live, the expiring one goes away.
    later = state.available(now + 2 * HOUR)
    shown_later = {i for i in state.item_ids if later[state.item_index[i]]}
    assert "scheduled" in shown_later and "expiring" not in shown_later

    # Undeleting is setting the item again.
    state.set_item("deleted", published_at=now - HOUR, categories=[])
    assert state.available(now)[state.item_index["deleted"]]


def test_category_mask_follows_item_updates() -> None:
    state = OnlineState()
    state.set_item("a", None, ["tech", "science"])
    state.set_item("b", None, ["tech"])
    state.set_item("c", None, [])

    def members(cat: str) -> set[str]:
        mask = state.category_mask(cat)
        assert mask.shape == (state.n_items,)
        return {i for i in state.item_ids if mask[state.item_index[i]]}

    assert members("tech") == {"a", "b"}
    assert members("science") == {"a"}
    assert members("sport") == set()

    state.set_item("a", None, ["sport"])  # recategorized: leaves its old categories
    assert members("tech") == {"b"}
    assert members("science") == set()
    assert members("sport") == {"a"}
    assert state.item_category[state.item_index["a"]] == ["sport"]


def test_item_facts_survive_the_item_index_growing() -> None:
    state = OnlineState()
    state.set_item("first", T0, ["tech"], expires_at=T0 + HOUR)
    state.set_item("gone", T0, ["tech"], deleted=True)
    many = [f"p{k}" for k in range(3000)]
    state.observe(["u:1"] * len(many), many, [T0 + k for k in range(len(many))])
    state.set_item("last", T0, ["tech"])

    assert state.n_items == 3003
    mask = state.category_mask("tech")
    assert mask.shape == (3003,)
    assert {state.item_ids[i] for i in np.flatnonzero(mask)} == {"first", "gone", "last"}
    ok = state.available(T0)
    assert ok[state.item_index["first"]] and ok[state.item_index["last"]]
    assert not ok[state.item_index["gone"]]
    assert not state.available(T0 + 2 * HOUR)[state.item_index["first"]]
    assert state.trending().shape == (3003,)
    assert ranking(state)[0] == "p2999"


def test_anonymous_sessions_idle_for_30_minutes_leave_the_online_state() -> None:
    state = OnlineState(session_idle_minutes=30)
    state.observe(["s:gone", "s:kept", "u:known"], ["a", "b", "c"], [0.0, 0.0, 0.0])
    state.observe(["s:kept"], ["d"], [1500.0])  # 25 minutes later: still going
    assert set(state.readers) == {"s:gone", "s:kept", "u:known"}
    state.observe(["u:other"], ["e"], [1801.0])  # 30 minutes after s:gone's last event
    assert set(state.readers) == {"s:kept", "u:known", "u:other"}
    state.observe(["u:other"], ["f"], [1500.0 + 1801.0])
    assert set(state.readers) == {"u:known", "u:other"}  # known readers are never dropped
    keep_all = OnlineState(session_idle_minutes=0)
    keep_all.observe(["s:x", "u:y"], ["a", "b"], [0.0, 1e6])
    assert set(keep_all.readers) == {"s:x", "u:y"}


def test_bulk_loaded_sessions_end_too_but_only_after_logins_could_merge_them() -> None:
    state = OnlineState(session_idle_minutes=30)
    load_bulk(
        state,
        np.array(["s:old", "s:recent", "u:known"]),
        np.array(["a", "b", "c"]),
        np.array([0.0, 5000.0, 5000.0]),
    )
    assert "s:old" in state.readers  # nothing dropped during the load itself
    state.observe(["u:known"], ["d"], [5001.0])
    assert set(state.readers) == {"s:recent", "u:known"}


def test_trending_is_kept_at_several_half_lives_for_models_to_choose() -> None:
    state = OnlineState(trending_half_life_hours=6.0)
    hour = 3600.0
    state.observe(["r1", "r2", "r3", "r4"], ["old", "old", "old", "now"], [0, 0, 0, 10 * hour])
    old, now = state.item_index["old"], state.item_index["now"]
    hourly, daily = state.trending(1.0), state.trending(24.0)
    assert hourly[now] > hourly[old]  # 3 reads 10 hours ago weigh 3/1024 at a 1-hour half-life
    assert daily[old] > daily[now]  # ... and 3 × 0.75 at a 1-day one
    assert np.array_equal(state.trending(7.0), state.trending())  # untracked: the state's own
    np.testing.assert_allclose(state.trending(6.0)[[old, now]], [3 * 2 ** (-10 / 6), 1.0])
    # Re-anchoring keeps every half-life's counts.
    before = state.trending(1.0)
    state._reanchor(20 * hour)
    np.testing.assert_allclose(state.trending(1.0), before)


def test_category_matrix_follows_the_catalog() -> None:
    state = OnlineState()
    state.set_item("a", None, ["politics", "world"])
    state.set_item("b", None, ["sport"])
    state.index_of("c")  # read before the catalog knew it: no section yet
    matrix = state.category_matrix()
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(np.asarray(matrix.sum(axis=1)).ravel(), [1.0, 1.0, 0.0])
    assert state.category_matrix() is matrix  # built once per catalog change
    state.set_item("b", None, ["politics"])  # moved to another section
    moved = state.category_matrix()
    assert moved is not matrix
    politics = sorted(state.categories).index("politics")
    assert moved[state.index_of("b"), politics] == 1.0
    assert moved[state.index_of("b")].nnz == 1


def test_past_max_readers_the_least_recently_active_leave() -> None:
    state = OnlineState(max_readers=10)
    for k in range(10):
        state.observe([f"u:{k}"], [f"item-{k}"], [1000.0 + k])
    assert len(state.readers) == 10 and state.readers_evicted == 0
    state.observe(["u:0"], ["item-x"], [2000.0])  # reader 0 comes back: now the newest
    state.observe(["u:new"], ["item-y"], [2001.0])  # 11 readers: down to 9
    assert len(state.readers) == 9 and state.readers_evicted == 2
    assert "u:0" in state.readers and "u:new" in state.readers
    assert "u:1" not in state.readers and "u:2" not in state.readers  # the two stalest
    assert state.history("u:1")[0].size == 0  # a reader who comes back starts afresh
    assert state.counts()[state.index_of("item-1")] == 1  # trending keeps their reads


def test_bulk_loading_keeps_the_bound_too() -> None:
    state = OnlineState(max_readers=100)
    readers = np.array([f"u:{k}" for k in range(1000)])
    load_bulk(state, readers, np.array(["a"] * 1000), 1000.0 + np.arange(1000.0))
    assert len(state.readers) == 90
    assert set(state.readers) == {f"u:{k}" for k in range(910, 1000)}  # the newest


def test_no_bound_by_default() -> None:
    state = OnlineState()
    readers = np.array([f"s:{k}" for k in range(5000)])
    load_bulk(state, readers, np.array(["a"] * 5000), 1000.0 + np.arange(5000.0))
    assert len(state.readers) == 5000
