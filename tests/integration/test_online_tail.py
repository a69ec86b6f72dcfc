"""The online state sees each event exactly once: from this process's requests or the tail."""

from __future__ import annotations

import threading

import pytest

from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.core.types import Event
from clickrec.engine import Engine

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
    restarted = Engine(engine.settings)  # replays the log into a fresh online state
    try:
        assert restarted.recommender is not None
        assert {h["item_id"] for h in restarted.recommender.history("ana", 10)} == live
    finally:
        restarted.close()
