"""The archive consumer against a real SQLite event log: every event lands in the lake once."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.core.errors import Conflict
from clickrec.core.schema import EVENT_SCHEMA
from clickrec.ingestion.archive import ArchiveConsumer
from clickrec.lake.localfs import LocalLake
from clickrec.lake.reader import load_events

pytestmark = pytest.mark.integration

START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()
DAY = 86_400.0

CRASHING_RUN = """
import sys
from pathlib import Path
from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.ingestion.archive import ArchiveConsumer
from clickrec.lake.localfs import LocalLake

log = SQLiteEventLog(Path(sys.argv[1]))
ArchiveConsumer(log, LocalLake(Path(sys.argv[2])), batch_size=int(sys.argv[3])).run_once()
sys.exit("run_once returned: the crash hook did not fire")
"""


def records(first: int, count: int) -> list[dict[str, Any]]:
    """Events numbered from ``first``, their timestamps spread over three UTC days."""
    return [
        {
            "event_id": f"e{i}",
            "timestamp": START + (i % 3) * DAY + i,
            "user_id": f"u{i % 7}" if i % 2 else None,
            "session_id": f"s{i % 11}",
            "item_id": f"post-{i % 13}",
            "event_type": "click" if i % 4 == 0 else "view",
            "event_value": float(i) if i % 5 == 0 else None,
            "recommendation_id": None,
            "impression": '["post-1", "post-2"]' if i % 6 == 0 else None,
            "context": '{"device": "mobile"}',
            "properties": None,
            "received_at": time.time(),
        }
        for i in range(first, first + count)
    ]


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SQLiteEventLog]:
    event_log = SQLiteEventLog(tmp_path / "events.db")
    yield event_log
    event_log.close()


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    return LocalLake(tmp_path / "lake")


def archive_all(consumer: ArchiveConsumer) -> int:
    total = 0
    while archived := consumer.run_once():
        total += archived
    return total


def lake_seqs(lake: LocalLake) -> list[int]:
    with duckdb.connect() as con:
        rows = con.sql(
            "SELECT seq FROM read_parquet($glob, hive_partitioning=true, union_by_name=true) "
            "ORDER BY seq",
            params={"glob": lake.glob()},
        ).fetchall()
    return [seq for (seq,) in rows]


def test_archives_every_event_exactly_once(log: SQLiteEventLog, lake: LocalLake) -> None:
    log.append(records(1, 1000))

    assert archive_all(ArchiveConsumer(log, lake, batch_size=300)) == 1000

    assert lake_seqs(lake) == list(range(1, 1001))
    assert log.get_offset("archive") == 1000
    with duckdb.connect() as con:
        dates = con.sql(
            "SELECT DISTINCT date FROM read_parquet($glob, hive_partitioning=true) ORDER BY 1",
            params={"glob": lake.glob()},
        ).fetchall()
    assert [d for (d,) in dates] == [dt.date(2024, 5, day) for day in (1, 2, 3)]


def test_lake_rows_equal_the_log(log: SQLiteEventLog, lake: LocalLake) -> None:
    log.append(records(1, 200))
    archive_all(ArchiveConsumer(log, lake, batch_size=64))

    assert load_events(lake, log).equals(log.read(0, 1000))


def test_load_events_joins_lake_and_tail_once(log: SQLiteEventLog, lake: LocalLake) -> None:
    log.append(records(1, 500))
    consumer = ArchiveConsumer(log, lake, batch_size=200)
    assert consumer.run_once() == 200
    # A crash residue past the offset must not show up twice.
    lake.write_batch(log.read(200, 100), 201, 300)

    table = load_events(lake, log)

    assert table.schema == EVENT_SCHEMA
    assert table["seq"].to_pylist() == list(range(1, 501))
    assert table["event_id"].to_pylist() == [f"e{i}" for i in range(1, 501)]


def test_load_events_with_selected_columns(log: SQLiteEventLog, lake: LocalLake) -> None:
    log.append(records(1, 50))
    ArchiveConsumer(log, lake, batch_size=20).run_once()

    table = load_events(lake, log, columns=["item_id", "seq"])

    assert table.schema == pa.schema([("item_id", pa.string()), ("seq", pa.int64())])
    assert table["seq"].to_pylist() == list(range(1, 51))
    with pytest.raises(ValueError, match="unknown"):
        load_events(lake, log, columns=["nope"])


def test_load_events_before_anything_is_archived(log: SQLiteEventLog, lake: LocalLake) -> None:
    assert load_events(lake, log).num_rows == 0

    log.append(records(1, 10))

    assert not lake.has_files()
    assert load_events(lake, log)["seq"].to_pylist() == list(range(1, 11))


def test_crash_between_lake_write_and_commit(log: SQLiteEventLog, lake: LocalLake) -> None:
    log.append(records(1, 300))

    crashed = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN, str(log.path), str(lake.root), "200"],
        env={**os.environ, "CLICKREC_CRASH_AFTER_LAKE_WRITE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert crashed.returncode == 137, crashed.stderr
    # The crash really left files the offset does not cover; otherwise this test proves nothing.
    assert log.get_offset("archive") == 0
    assert lake_seqs(lake) == list(range(1, 201))

    # More events arrive before the restart, so the retried batch has other bounds and a
    # leftover part would not simply be overwritten.
    log.append(records(301, 100))
    consumer = ArchiveConsumer(log, lake, batch_size=250)
    assert consumer.recover() == 3  # the crashed batch's part under each of the three dates
    assert archive_all(consumer) == 400
    log.append(records(401, 77))
    assert archive_all(consumer) == 77

    assert lake_seqs(lake) == list(range(1, 478))
    assert load_events(lake, log)["seq"].to_pylist() == list(range(1, 478))


def test_run_forever_archives_then_flushes_on_stop(log: SQLiteEventLog, lake: LocalLake) -> None:
    log.append(records(1, 100))
    consumer = ArchiveConsumer(log, lake, batch_size=40)
    stop = threading.Event()
    worker = threading.Thread(target=consumer.run_forever, args=(stop, 0.01))
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while log.get_offset("archive") < 100 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.get_offset("archive") == 100
        log.append(records(101, 150))
    finally:
        stop.set()
        worker.join(timeout=5)

    assert not worker.is_alive()
    assert lake_seqs(lake) == list(range(1, 251))


class FlakyLake(LocalLake):
    """Fails its first write, as a full disk or a network blip would."""

    failures = 1

    def write_batch(self, table: pa.Table, batch_first: int, batch_last: int) -> list[Path]:
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        return super().write_batch(table, batch_first, batch_last)


def test_a_failed_pass_is_logged_and_retried(
    log: SQLiteEventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lake = FlakyLake(tmp_path / "lake")
    log.append(records(1, 30))
    stop = threading.Event()
    worker = threading.Thread(target=ArchiveConsumer(log, lake).run_forever, args=(stop, 0.01))
    with caplog.at_level(logging.ERROR, logger="clickrec.archive"):
        worker.start()
        try:
            deadline = time.monotonic() + 5
            while log.get_offset("archive") < 30 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            worker.join(timeout=5)

    assert lake_seqs(lake) == list(range(1, 31))
    failures = [r.exc_info for r in caplog.records if r.name == "clickrec.archive" and r.exc_info]
    assert [type(info[1]) for info in failures if info] == [OSError]


def test_a_commit_that_fails_after_the_lake_write_does_not_duplicate(
    log: SQLiteEventLog, lake: LocalLake
) -> None:
    """The log's store goes away between the lake write and the offset commit (a Redis
    restart); the next pass, over a longer batch, must not archive those events again."""
    log.append(records(0, 100))
    consumer = ArchiveConsumer(log, lake)
    commit = log.commit_offset

    def unavailable(name: str, seq: int) -> None:
        raise ConnectionError("the log's server went away")

    log.commit_offset = unavailable  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        consumer.run_once()
    log.commit_offset = commit  # type: ignore[method-assign]
    log.append(records(100, 50))
    assert consumer.run_once() == 150
    assert lake_seqs(lake) == list(range(1, 151))  # every part file, each event once


class LeaseLostLake(LocalLake):
    """Refuses one write as a lake whose writer lease another consumer took (S3) does,
    and counts how often the consumer takes its writer lock."""

    refusals = 1
    acquired = 0

    def acquire_writer(self, stop: threading.Event, poll: float = 0.2) -> bool:
        self.acquired += 1
        return super().acquire_writer(stop, poll)

    def write_batch(self, table: pa.Table, batch_first: int, batch_last: int) -> list[Path]:
        if self.refusals:
            self.refusals -= 1
            raise Conflict("another writer took the lake's writer lease: this one writes no more")
        return super().write_batch(table, batch_first, batch_last)


def test_a_consumer_whose_writer_lock_was_taken_waits_to_take_it_again(
    log: SQLiteEventLog, tmp_path: Path
) -> None:
    """Instead of failing every pass until a restart, it takes the lock again, recovers
    what the other writer left, and goes on: every event once."""
    lake = LeaseLostLake(tmp_path / "lake")
    log.append(records(1, 30))
    stop = threading.Event()
    worker = threading.Thread(target=ArchiveConsumer(log, lake).run_forever, args=(stop, 0.01))
    worker.start()
    try:
        deadline = time.monotonic() + 5
        while log.get_offset("archive") < 30 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join(timeout=5)
    assert lake.acquired == 2
    assert lake_seqs(lake) == list(range(1, 31))
