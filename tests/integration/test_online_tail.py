"""The online state sees each event exactly once: from this process's requests or the tail."""

from __future__ import annotations

import threading

import pytest

from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.core.types import Event
from clickrec.engine import Engine, ServingEngine

pytestmark = pytest.mark.integration


def events(n: int, prefix: str) -> list[Event]:
    return [
        Event(user_id=f"{prefix}{i % 7}", session_id="s", item_id=f"p{i % 11}") for i in range(n)
    ]


def test_own_and_foreign_events_are_applied_once(engine: Engine) -> None:
    rec = engine.recommender
    assert rec is not None

    def send(k: int) -> None:
        for _ in range(10):
            engine.ingestor.ingest(events(20, f"api{k}-"))

    threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    # Meanwhile another process (an import, another server) appends to the same log.
    other = SQLiteEventLog(engine.settings.store_path(engine.settings.stores.event_log))
    try:
        for b in range(5):
            other.append(
                [
                    {
                        "event_id": f"import-{b}-{i}",
                        "timestamp": 1.0,
                        "user_id": "imp",
                        "session_id": "s",
                        "item_id": "p-imported",
                        "event_type": "read",
                        "received_at": 1.0,
                    }
                    for i in range(30)
                ]
            )
            rec.catch_up()
    finally:
        other.close()
    for t in threads:
        t.join()
    while rec.catch_up():
        pass
    assert rec.state.events_seen == 4 * 10 * 20 + 5 * 30
    assert rec.state.counts()[rec.state.item_index["p-imported"]] == 150


def test_a_login_keeps_anonymous_reads_after_a_restart(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    anonymous = [Event(session_id="visit", item_id=f"p{i}") for i in range(3)]
    logged_in = [Event(user_id="ana", session_id="visit", item_id="p9")]
    engine.ingestor.ingest(anonymous)
    engine.ingestor.ingest(logged_in)
    rec = engine.recommender
    assert rec is not None
    live = {h["item_id"] for h in rec.history("ana", 10)}
    assert live == {"p0", "p1", "p2", "p9"}
    engine.close()
    restarted = ServingEngine(engine.settings)  # replays the log into a fresh online state
    try:
        assert restarted.recommender is not None
        assert {h["item_id"] for h in restarted.recommender.history("ana", 10)} == live
    finally:
        restarted.close()


def _foreign(log: SQLiteEventLog, reader: str, item: str, n: int = 1) -> None:
    """Events another process (a second replica, an import) appends to the shared log."""
    log.append(
        [
            {
                "event_id": f"{reader}-{item}-{i}",
                "timestamp": 1.0,
                "user_id": reader,
                "session_id": "s",
                "item_id": item,
                "event_type": "read",
                "received_at": 1.0,
            }
            for i in range(n)
        ]
    )


def test_an_answer_includes_what_another_process_appended_just_before(engine: Engine) -> None:
    """Read-your-writes across replicas: no background tail runs here, yet the next answer
    knows the click another process acknowledged a moment ago."""
    rec = engine.recommender
    assert rec is not None
    behind: list[int] = []
    rec.on_behind = lambda: behind.append(1)
    other = SQLiteEventLog(engine.settings.store_path(engine.settings.stores.event_log))
    try:
        for k in range(20):
            _foreign(other, "x", f"post-{k}")
            assert rec.history("x", 1)[0]["item_id"] == f"post-{k}"
        _foreign(other, "y", "post-0")
        listed = [i["item_id"] for i in rec.recommend("y", None, 30).items]
        assert "post-0" not in listed and "post-1" in listed  # read: never offered again
    finally:
        other.close()
    assert behind == []
    assert rec.state.events_seen == 21  # each event applied once, by whoever came first


def test_without_the_catch_up_only_the_background_tail_brings_others_events(
    engine: Engine,
) -> None:
    rec = engine.recommender
    assert rec is not None
    rec.catch_up_seconds = 0.0
    other = SQLiteEventLog(engine.settings.store_path(engine.settings.stores.event_log))
    try:
        _foreign(other, "x", "post-a")
        assert rec.history("x", 1) == []
        rec.catch_up()
        assert rec.history("x", 1)[0]["item_id"] == "post-a"
    finally:
        other.close()


def test_an_answer_that_cannot_wait_for_the_tail_is_counted(engine: Engine) -> None:
    """While the tail is busy past the bound, the answer goes out and says it was behind."""
    rec = engine.recommender
    assert rec is not None
    rec.catch_up_seconds = 0.01
    behind: list[int] = []
    rec.on_behind = lambda: behind.append(1)
    other = SQLiteEventLog(engine.settings.store_path(engine.settings.stores.event_log))
    try:
        _foreign(other, "x", "post-a")
        with rec._tail_lock:  # the refresher in the middle of a long pass
            assert rec.history("x", 1) == []
        assert behind == [1]
        assert rec.history("x", 1)[0]["item_id"] == "post-a"
    finally:
        other.close()
