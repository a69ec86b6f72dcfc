"""The contract every event log backend keeps; parametrized over the backends that exist."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clickrec.backends.base import EventLog
from clickrec.backends.sqlite_log import SQLiteEventLog

pytestmark = pytest.mark.integration

BACKENDS: dict[str, Callable[[Path], EventLog]] = {
    "sqlite": lambda tmp: SQLiteEventLog(tmp / "events.db"),
}


@pytest.fixture(params=sorted(BACKENDS))
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], EventLog]]:
    opened: list[EventLog] = []

    def make() -> EventLog:
        log = BACKENDS[request.param](tmp_path)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def record(event_id: str, item: str = "i", user: str | None = "u", t: float = 1.0) -> dict:
    return {
        "event_id": event_id,
        "timestamp": t,
        "user_id": user,
        "session_id": "s",
        "item_id": item,
        "event_type": "read",
        "event_value": None,
        "recommendation_id": None,
        "impression": None,
        "context": None,
        "properties": None,
        "received_at": 2.0,
    }


def test_append_assigns_increasing_seqs_and_reads_back(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    assert log.last_seq() == 0
    result = log.append([record("a"), record("b", item="j")])
    assert result.seqs == [1, 2] and result.duplicates == 0
    rows = log.read(0, 10).to_pylist()
    assert [(r["seq"], r["event_id"], r["item_id"]) for r in rows] == [(1, "a", "i"), (2, "b", "j")]
    assert log.read(1, 10).num_rows == 1
    assert log.read_tail(1).column("event_id").to_pylist() == ["b"]


def test_duplicates_are_stored_once(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record("a")])
    result = log.append([record("a"), record("b"), record("b")])
    assert result.inserted == [1] and result.duplicates == 2
    assert log.read(0, 10).column("event_id").to_pylist() == ["a", "b"]


def test_concurrent_appends_lose_nothing(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()

    def writer(w: int) -> None:
        for b in range(20):
            log.append([record(f"{w}-{b}-{i}") for i in range(25)])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = log.read(0, 10_000).column("seq").to_pylist()
    assert seqs == list(range(1, 8 * 20 * 25 + 1))


def test_offsets_survive_reopening(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record("a"), record("b")])
    log.commit_offset("archive", 1)
    log.close()
    again = make_log()
    assert again.get_offset("archive") == 1 and again.get_offset("other") == 0
    assert again.last_seq() == 2


def test_acknowledged_events_survive_a_killed_process(tmp_path: Path) -> None:
    """SIGKILL right after append returns: every acknowledged event is on disk."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from clickrec.backends.sqlite_log import SQLiteEventLog\n"
        f"log = SQLiteEventLog(Path({str(tmp_path / 'events.db')!r}))\n"
        "for b in range(50):\n"
        "    log.append([dict(event_id=f'{b}-{i}', timestamp=1.0, user_id='u', session_id='s',"
        " item_id='i', event_type='read', received_at=1.0) for i in range(20)])\n"
        "    print(b, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9
    acknowledged = len(done.stdout.split()) * 20
    log = SQLiteEventLog(tmp_path / "events.db")
    try:
        assert acknowledged == 1000
        assert log.last_seq() == acknowledged
    finally:
        log.close()
