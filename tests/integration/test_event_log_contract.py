"""The contract every event log backend keeps; parametrized over the backends that exist."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clickrec.backends.base import AppendResult, EventLog
from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.core.errors import StoreUnavailable

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


def test_async_appends_from_one_loop_are_committed_together_and_in_order(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    seen: list[list[int]] = []
    log.before_commit = seen.append

    async def main() -> list[AppendResult]:
        batches = [[record(f"{b}-{i}", t=float(b)) for i in range(30)] for b in range(12)]
        batches[5].append(record("0-0"))  # a duplicate of an event earlier in the same group
        return await asyncio.gather(*(log.append_async(batch) for batch in batches))

    results = asyncio.run(main())

    assert [r.duplicates for r in results] == [0] * 5 + [1] + [0] * 6
    assert [s for r in results for s in r.seqs] == list(range(1, 12 * 30 + 1))
    assert len(seen) < 12  # fewer transactions than requests: batches waiting shared one
    rows = log.read(0, 1000).to_pylist()
    assert [r["event_id"] for r in rows[:31]] == [f"0-{i}" for i in range(30)] + ["1-0"]


def test_an_event_with_every_field_reads_back_as_sent(make_log) -> None:  # type: ignore[no-untyped-def]
    """Lean rows (ids only) and full rows (value, maps…) mixed in one append keep order."""
    log = make_log()
    full = record("full") | {
        "event_value": 2.5,
        "recommendation_id": "r1",
        "impression": '["a","b"]',
        "context": '{"device":"tv"}',
        "properties": '{"x":1}',
        "received_at": 9.0,
    }
    later = record("later") | {"received_at": 3.0}
    log.append([record("a"), full, record("b"), later])
    rows = log.read(0, 10).to_pylist()
    assert [r["event_id"] for r in rows] == ["a", "full", "b", "later"]
    assert {k: rows[1][k] for k in full} == full
    assert rows[0]["event_value"] is None and rows[0]["received_at"] == 2.0
    assert rows[3]["received_at"] == 3.0


def test_async_append_waits_for_another_writer_instead_of_failing(make_log, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """While another process holds the write lock (an import), the loop's group is written
    once the lock is free; the loop itself is never blocked meanwhile."""
    log = make_log()
    other = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def main() -> AppendResult:
        nonlocal ticks
        task = asyncio.ensure_future(log.append_async([record("a"), record("b")]))
        for _ in range(20):  # the loop keeps running while the append waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not task.done()
        other.execute("COMMIT")
        return await task

    result = asyncio.run(main())
    other.close()
    assert ticks == 20
    assert result.seqs == [1, 2]
    assert log.read(0, 10).column("event_id").to_pylist() == ["a", "b"]


def test_appends_after_close_are_refused(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record("a")])
    log.close()
    with pytest.raises(StoreUnavailable):
        log.append([record("b")])
    with pytest.raises(StoreUnavailable):
        asyncio.run(log.append_async([record("c")]))
