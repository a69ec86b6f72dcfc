"""The start-up replay that rebuilds a server's online state from the log: an event
another process appends while it runs is applied once, by the replay or by the tail."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from clickrec.config import load_settings
from clickrec.engine import Engine
from clickrec.models.online import OnlineState
from clickrec.models.scoring import Exploration
from clickrec.serving.service import Recommender

pytestmark = pytest.mark.integration


def _record(event_id: str, item: str) -> dict:
    return {
        "event_id": event_id,
        "timestamp": 1_700_000_000.0,
        "user_id": None,
        "session_id": "s1",
        "item_id": item,
        "event_type": "click",
        "received_at": 1_700_000_000.0,
    }


def test_an_event_appended_during_start_up_is_applied_once(tmp_path: Path) -> None:
    worker = Engine(load_settings(tmp_path / "home", environ={}))
    try:
        log = worker.log
        log.append([_record("e1", "a")])
        real = log.read_tail

        def read_tail_while_an_import_appends(last: int, columns: Sequence[str] | None = None):
            log.append([_record("e2", "b")])  # another process (an import) commits now
            return real(last, columns)

        log.read_tail = read_tail_while_an_import_appends  # type: ignore[method-assign]
        rec = Recommender(log, worker.catalog, OnlineState(), Exploration(), 1000)
        log.read_tail = real  # type: ignore[method-assign]
        while rec.catch_up():
            pass
        state = rec.state
        assert state.events_seen == 2  # not 3: "b" through both the replay and the tail
        assert state.counts()[state.item_index["b"]] == 1
    finally:
        worker.close()
