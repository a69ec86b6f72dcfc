"""Event log on SQLite in WAL mode, with group commit from a single writer thread.

Callers hand their batch to the writer and wait; the writer takes every batch that is
waiting, writes them in one transaction with ``synchronous=FULL`` and wakes the callers.
So an acknowledged event is on disk, and many concurrent requests share one fsync.
"""

from __future__ import annotations

import operator
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pyarrow as pa

from clickrec.backends.base import AppendResult
from clickrec.core.errors import StoreUnavailable
from clickrec.core.schema import EVENT_COLUMNS, EVENT_SCHEMA

_DDL = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    timestamp REAL NOT NULL,
    user_id TEXT,
    session_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_value REAL,
    recommendation_id TEXT,
    impression TEXT,
    context TEXT,
    properties TEXT,
    received_at REAL NOT NULL
);
DROP INDEX IF EXISTS events_user;
DROP INDEX IF EXISTS events_session;
CREATE TABLE IF NOT EXISTS offsets (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""

_DATA_COLUMNS = EVENT_COLUMNS[1:]
FRESH_ID = "_fresh_id"  # a record flag: the server just made this event_id, so it is new
# Rows go in as multi-row VALUES statements of up to _CHUNK rows: a few sqlite3_step calls
# per group commit (the writer must win the interpreter lock back after each call, which
# is slow while request threads are busy), and no per-row JSON parsing inside SQLite.
_CHUNK = 128
_ROW_MARKS = "(" + ", ".join("?" for _ in _DATA_COLUMNS) + ")"
_INSERT_HEAD = f"INSERT INTO events ({', '.join(_DATA_COLUMNS)}) VALUES "


def _insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Insert rows in order; returns the seq of the last one."""
    last = 0
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        sql = _INSERT_HEAD + ", ".join([_ROW_MARKS] * len(chunk))
        cursor = conn.execute(sql, [value for row in chunk for value in row])
        last = int(cursor.lastrowid or 0)
    return last


_all_columns = operator.itemgetter(*_DATA_COLUMNS)


def _row_of(record: dict[str, Any]) -> tuple[Any, ...]:
    """The insert parameters of a record; missing columns are NULL."""
    try:
        return _all_columns(record)
    except KeyError:
        return tuple(record.get(c) for c in _DATA_COLUMNS)


_SELECT = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _to_table(rows: list[tuple[Any, ...]], names: Sequence[str] = EVENT_COLUMNS) -> pa.Table:
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[] for _ in names]
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in names])
    return pa.table(
        {
            n: pa.array(col, type=schema.field(n).type)
            for n, col in zip(names, columns, strict=True)
        },
        schema=schema,
    )


def _select(columns: Sequence[str] | None) -> tuple[str, Sequence[str]]:
    """A SELECT of known columns only (names are checked, never pasted from input)."""
    names = EVENT_COLUMNS if columns is None else tuple(columns)
    unknown = set(names) - set(EVENT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown event columns: {sorted(unknown)}")
    return f"SELECT {', '.join(names)} FROM events", names


class SQLiteEventLog:
    """The embedded event log; one file, safe against crashes (WAL + FULL sync)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write = _connect(path)
        self._write.executescript(_DDL)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._pending: queue.Queue[tuple[Sequence[dict[str, Any]], Future[AppendResult]] | None]
        self._pending = queue.Queue()
        self._closed = False
        self._closing = threading.Lock()
        self.before_commit: Callable[[list[int]], None] | None = None
        self._writer = threading.Thread(
            target=self._write_loop, name="eventlog-writer", daemon=True
        )
        self._writer.start()

    # -- writing -------------------------------------------------------------------------
    def append(self, records: Sequence[dict[str, Any]]) -> AppendResult:
        future: Future[AppendResult] = Future()
        with self._closing:  # never enqueue behind the writer's stop sentinel
            if self._closed:
                raise StoreUnavailable("event log is closed")
            self._pending.put((records, future))
        return future.result()

    def _write_loop(self) -> None:
        while True:
            first = self._pending.get()
            if first is None:
                return
            group = [first]
            while len(group) < 256:
                try:
                    nxt = self._pending.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._pending.put(None)
                    break
                group.append(nxt)
            self._commit_group(group)

    def _commit_group(
        self, group: list[tuple[Sequence[dict[str, Any]], Future[AppendResult]]]
    ) -> None:
        """One transaction for every batch waiting, rows inserted a chunk at a time: the
        writer calls into SQLite a handful of times per group, since each call must win
        the interpreter lock back from busy request threads."""
        conn = self._write
        try:
            conn.execute("BEGIN IMMEDIATE")
            taken = self._new_records(conn, [records for records, _ in group])
            rows = [
                _row_of(records[i])
                for (records, _), keep in zip(group, taken, strict=True)
                for i in keep
            ]
            last = _insert_rows(conn, rows) if rows else 0
            results, seq = [], last - len(rows)
            for (records, _), keep in zip(group, taken, strict=True):
                seqs = list(range(seq + 1, seq + 1 + len(keep)))
                seq += len(keep)
                results.append(AppendResult(keep, seqs, len(records) - len(keep)))
            if self.before_commit is not None and rows:
                self.before_commit(list(range(last - len(rows) + 1, last + 1)))
            conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - every waiter must learn of the failure
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, fut in group:
                fut.set_exception(StoreUnavailable(f"event log write failed: {exc}"))
            return
        for (_, fut), result in zip(group, results, strict=True):
            fut.set_result(result)

    @staticmethod
    def _new_records(
        conn: sqlite3.Connection, batches: list[Sequence[dict[str, Any]]]
    ) -> list[list[int]]:
        """Per batch, the indices of records whose event_id is neither in the log nor
        earlier in the group (server-made ids are new by construction: not looked up)."""
        given = [r["event_id"] for b in batches for r in b if not r.get(FRESH_ID)]
        existing: set[str] = set()
        for start in range(0, len(given), 500):
            chunk = given[start : start + 500]
            marks = ",".join("?" * len(chunk))
            existing.update(
                row[0]
                for row in conn.execute(
                    f"SELECT event_id FROM events WHERE event_id IN ({marks})", chunk
                )
            )
        taken = []
        for batch in batches:
            keep = []
            for i, record in enumerate(batch):
                event_id = record["event_id"]
                if event_id not in existing:
                    existing.add(event_id)
                    keep.append(i)
            taken.append(keep)
        return taken

    # -- reading -------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    def read(self, after_seq: int, limit: int, columns: Sequence[str] | None = None) -> pa.Table:
        select, names = _select(columns)
        rows = (
            self._reader()
            .execute(f"{select} WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit))
            .fetchall()
        )
        return _to_table(rows, names)

    def read_tail(self, last: int, columns: Sequence[str] | None = None) -> pa.Table:
        select, names = _select(columns)
        newest = self.last_seq()
        rows = (
            self._reader()
            .execute(f"{select} WHERE seq > ? ORDER BY seq", (newest - last,))
            .fetchall()
        )
        return _to_table(rows, names)

    def last_seq(self) -> int:
        (seq,) = self._reader().execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()
        return int(seq)

    def get_offset(self, consumer: str) -> int:
        row = (
            self._reader()
            .execute("SELECT seq FROM offsets WHERE consumer = ?", (consumer,))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def commit_offset(self, consumer: str, seq: int) -> None:
        conn = self._reader()
        conn.execute(
            "INSERT INTO offsets(consumer, seq) VALUES (?, ?) "
            "ON CONFLICT(consumer) DO UPDATE SET seq = excluded.seq",
            (consumer, seq),
        )

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._pending.put(None)
        self._writer.join(timeout=10)
        self._write.close()
        for conn in self._readers:
            conn.close()
