"""Event log on SQLite in WAL mode, with group commit from a single writer thread.

Callers hand their batch to the writer and wait; the writer takes every batch that is
waiting, writes them in one transaction with ``synchronous=FULL`` and wakes the callers.
So an acknowledged event is on disk, and many concurrent requests share one fsync.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from clickrec.backends.base import TRACEPARENT, AppendResult
from clickrec.core.errors import StoreUnavailable
from clickrec.core.schema import EVENT_COLUMNS, EVENT_SCHEMA

_EVENTS_TABLE = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
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
)"""
_DDL = (
    _EVENTS_TABLE
    + """;
DROP INDEX IF EXISTS events_user;
DROP INDEX IF EXISTS events_session;
CREATE TABLE IF NOT EXISTS offsets (consumer TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    consumer TEXT NOT NULL,
    event_id TEXT,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    state TEXT NOT NULL,
    parked_at REAL NOT NULL,
    replayed_at REAL
);
"""
)
_DEAD_COLUMNS = (
    "seq",
    "consumer",
    "event_id",
    "error",
    "attempts",
    "state",
    "parked_at",
    "replayed_at",
)

_DATA_COLUMNS = EVENT_COLUMNS[1:]
FRESH_ID = "_fresh_id"  # a record flag: the server just made this event_id, so it is new
# Most events carry only ids, a type and a time. Their rows bind those six values and share
# one received_at per statement (numbered parameters), half the binding work of a full row;
# rows that carry more (a value, a recommendation id, maps) bind every column.
_LEAN = ("event_id", "timestamp", "user_id", "session_id", "item_id", "event_type")
_EXTRA = tuple(c for c in _DATA_COLUMNS if c not in _LEAN and c != "received_at")
_CHUNK = 128  # rows per statement: a few sqlite3_step calls per commit


@functools.lru_cache(maxsize=2 * _CHUNK)
def _insert_sql(lean: bool, n: int) -> str:
    """An INSERT of ``n`` rows. Like every statement here it is made of this module's column
    names and parameter marks only, never of input (hence the ``nosec`` marks for bandit)."""
    if lean:
        width = len(_LEAN)
        rows = ", ".join(
            "(" + ", ".join(f"?{2 + r * width + c}" for c in range(width)) + ", ?1)"
            for r in range(n)
        )
        columns = f"{', '.join(_LEAN)}, received_at"
    else:
        rows = ", ".join(["(" + ", ".join("?" for _ in _DATA_COLUMNS) + ")"] * n)
        columns = ", ".join(_DATA_COLUMNS)
    return f"INSERT INTO events ({columns}) VALUES {rows}"  # nosec B608


_lean_values = operator.itemgetter(*_LEAN)
_extra_values = operator.itemgetter(*_EXTRA)


def _insert_records(conn: sqlite3.Connection, records: list[dict[str, Any]]) -> int:
    """Insert records in order, a run of same-shaped rows per statement; returns the seq of
    the last one."""
    last = 0
    start = 0
    while start < len(records):
        first = records[start]
        lean = _is_lean(first)
        received = first.get("received_at")
        end = start + 1
        while (
            end < len(records)
            and end - start < _CHUNK
            and _is_lean(records[end]) == lean
            and (not lean or records[end].get("received_at") == received)
        ):
            end += 1
        run = records[start:end]
        if lean:
            params: list[Any] = [received]
            for record in run:
                params.extend(_lean_row(record))
        else:
            params = [record.get(c) for record in run for c in _DATA_COLUMNS]
        last = int(conn.execute(_insert_sql(lean, len(run)), params).lastrowid or 0)
        start = end
    return last


def _lean_row(record: dict[str, Any]) -> tuple[Any, ...]:
    try:
        return _lean_values(record)
    except KeyError:
        return tuple(record.get(c) for c in _LEAN)


def _is_lean(record: dict[str, Any]) -> bool:
    try:
        return not any(v is not None for v in _extra_values(record))
    except KeyError:
        return all(record.get(c) is None for c in _EXTRA)


def _connect(path: Path, busy_ms: int = 30_000) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        check_same_thread=False,
        isolation_level=None,
        timeout=busy_ms / 1000,
        cached_statements=4 * _CHUNK,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    return conn


def _ensure_autoincrement(conn: sqlite3.Connection) -> None:
    """Give a log made before erasure existed seqs that are never reused: without
    AUTOINCREMENT, erasing the newest event would hand its seq to the next one, which
    consumers that already passed that seq would then skip. One copy, in one transaction."""
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'events'").fetchone()
    if "AUTOINCREMENT" in sql.upper():
        return
    columns = ", ".join(EVENT_COLUMNS)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("ALTER TABLE events RENAME TO events_before_autoincrement")
        conn.execute(_EVENTS_TABLE)
        conn.execute(
            f"INSERT INTO events ({columns}) SELECT {columns} "  # nosec B608
            "FROM events_before_autoincrement ORDER BY seq"
        )
        conn.execute("DROP TABLE events_before_autoincrement")
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise


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
    return f"SELECT {', '.join(names)} FROM events", names  # nosec B608


# Tracing's side table: the trace context of each traced append, by its seq range, written
# in the append's own transaction (no extra sync) and pruned as the archive advances. Rows
# are only written while tracing is on; they hold no event data.
_TRACE_DDL = """
CREATE TABLE IF NOT EXISTS trace_links (
    last_seq INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    traceparent TEXT NOT NULL
);
"""


def _keep_trace_links(
    conn: sqlite3.Connection,
    batches: list[Sequence[dict[str, Any]]],
    results: list[AppendResult],
) -> None:
    """Store (seq range → traceparent) of each batch whose first record carries one."""
    links = [
        (result.seqs[0], result.seqs[-1], batch[0][TRACEPARENT])
        for batch, result in zip(batches, results, strict=True)
        if result.seqs and TRACEPARENT in batch[0]
    ]
    if links:
        conn.executemany(
            "INSERT OR REPLACE INTO trace_links (first_seq, last_seq, traceparent) "
            "VALUES (?, ?, ?)",
            links,
        )


Waiter = tuple[Sequence[dict[str, Any]], "asyncio.Future[AppendResult]"]


class SQLiteEventLog:
    """The embedded event log; one file, safe against crashes (WAL + FULL sync).

    Two ways in. ``append`` (imports, tools, any thread) writes one transaction in the
    caller's thread. ``append_async`` (the HTTP API) is a group commit run by the event
    loop: the batches of every request that arrived meanwhile are inserted in one
    transaction on the loop, and only the COMMIT (the fsync) is handed to a thread, so the
    loop goes on parsing the next requests while the disk syncs. The loop's connection
    never waits on a lock: if another writer (an import in another process) holds the
    log, the group is written from the thread instead.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._write = _connect(path)
        self._write.executescript(_DDL)
        self._write.executescript(_TRACE_DDL)
        _ensure_autoincrement(self._write)
        self._write_lock = threading.Lock()  # one thread at a time on self._write
        self._fast = _connect(path, busy_ms=0)  # the loop's; used by one group at a time
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._waiting: list[Waiter] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._committing = False
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="eventlog-commit")
        self._closed = False
        self.before_commit: Callable[[list[int]], None] | None = None

    # -- writing -------------------------------------------------------------------------
    def append(self, records: Sequence[dict[str, Any]]) -> AppendResult:
        if self._closed:
            raise StoreUnavailable("event log is closed")
        return self._blocking_group([records])[0]

    async def append_async(self, records: Sequence[dict[str, Any]]) -> AppendResult:
        if self._closed:
            raise StoreUnavailable("event log is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            if self._waiting or self._committing:  # another loop's group is in flight
                return await asyncio.to_thread(self.append, records)
            self._loop = loop
        future: asyncio.Future[AppendResult] = loop.create_future()
        self._waiting.append((records, future))
        if not self._scheduled and not self._committing:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        """On the loop: insert every waiting batch, then commit from the thread."""
        self._scheduled = False
        group, self._waiting = self._waiting, []
        if not group:
            return
        self._committing = True
        batches = [records for records, _ in group]
        try:
            self._fast.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # busy: another writer holds the log
            done = self._committer.submit(self._blocking_group, batches)
        else:
            try:
                results = self._insert(self._fast, batches)
            except Exception as exc:  # noqa: BLE001 - every waiter must learn of it
                self._fast.execute("ROLLBACK")
                self._settle(group, None, exc)
                return
            done = self._committer.submit(self._commit, self._fast, results)
        assert self._loop is not None
        loop = self._loop
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(self._committed, group, f))

    def _blocking_group(self, batches: list[Sequence[dict[str, Any]]]) -> list[AppendResult]:
        with self._write_lock:
            return self._transaction(self._write, batches)

    @staticmethod
    def _commit(conn: sqlite3.Connection, results: list[AppendResult]) -> list[AppendResult]:
        try:
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _committed(self, group: list[Waiter], done: Future[list[AppendResult]]) -> None:
        exc = done.exception()
        self._settle(group, None if exc else done.result(), exc)

    def _settle(
        self,
        group: list[Waiter],
        results: list[AppendResult] | None,
        exc: BaseException | None,
    ) -> None:
        self._committing = False
        for i, (_, future) in enumerate(group):
            if future.done():  # its request was cancelled (client gone); the rows stay
                continue
            if results is not None:
                future.set_result(results[i])
            elif isinstance(exc, StoreUnavailable):
                future.set_exception(exc)
            else:
                future.set_exception(StoreUnavailable(f"event log write failed: {exc}"))
        if self._waiting and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _transaction(
        self, conn: sqlite3.Connection, batches: list[Sequence[dict[str, Any]]]
    ) -> list[AppendResult]:
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = self._insert(conn, batches)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreUnavailable(f"event log write failed: {exc}") from exc
        return results

    def _insert(
        self, conn: sqlite3.Connection, batches: list[Sequence[dict[str, Any]]]
    ) -> list[AppendResult]:
        """Insert the new records of every batch (inside an open transaction) and tell
        ``before_commit`` their seqs; per batch, which records were new and their seqs."""
        taken = self._new_records(conn, batches)
        rows = [batch[i] for batch, keep in zip(batches, taken, strict=True) for i in keep]
        last = _insert_records(conn, rows) if rows else 0
        results, seq = [], last - len(rows)
        for batch, keep in zip(batches, taken, strict=True):
            results.append(
                AppendResult(
                    keep, list(range(seq + 1, seq + 1 + len(keep))), len(batch) - len(keep)
                )
            )
            seq += len(keep)
        if rows:
            _keep_trace_links(conn, batches, results)
        if self.before_commit is not None and rows:
            self.before_commit(list(range(last - len(rows) + 1, last + 1)))
        return results

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
                    f"SELECT event_id FROM events WHERE event_id IN ({marks})",  # nosec B608
                    chunk,
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

    def trace_links(self, first_seq: int, last_seq: int, limit: int) -> list[tuple[int, int, str]]:
        rows = (
            self._reader()
            .execute(
                "SELECT first_seq, last_seq, traceparent FROM trace_links "
                "WHERE last_seq >= ? AND first_seq <= ? ORDER BY last_seq LIMIT ?",
                (first_seq, last_seq, limit),
            )
            .fetchall()
        )
        return [(int(a), int(b), str(t)) for a, b, t in rows]

    def prune_trace_links(self, through_seq: int) -> int:
        conn = self._reader()
        # Checked first, so a log that was never traced takes no write lock here.
        if conn.execute(
            "SELECT 1 FROM trace_links WHERE last_seq <= ? LIMIT 1", (through_seq,)
        ).fetchone():
            return int(
                conn.execute("DELETE FROM trace_links WHERE last_seq <= ?", (through_seq,)).rowcount
            )
        return 0

    # -- dead letters ------------------------------------------------------------------
    def park(
        self, consumer: str, letters: Sequence[tuple[int, str | None, str, int]], now: float
    ) -> None:
        """Park events a consumer could not process: (seq, event_id, error, attempts)."""
        conn = self._reader()
        with conn:  # one transaction
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO dead_letters (seq, consumer, event_id, error, attempts, state, "
                "parked_at) VALUES (?, ?, ?, ?, ?, 'parked', ?) ON CONFLICT(seq) DO UPDATE SET "
                "error = excluded.error, attempts = excluded.attempts, state = 'parked'",
                [(seq, consumer, eid, error, n, now) for seq, eid, error, n in letters],
            )

    def dead_letters(
        self,
        consumer: str | None = None,
        states: Sequence[str] = ("parked", "replay"),
        seqs: Sequence[int] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        where = [f"state IN ({','.join('?' * len(states))})"]
        params: list[Any] = list(states)
        if consumer is not None:
            where.append("consumer = ?")
            params.append(consumer)
        if seqs is not None:
            where.append(f"seq IN ({','.join('?' * len(seqs))})")
            params.extend(seqs)
        query = (
            f"SELECT {', '.join(_DEAD_COLUMNS)} FROM dead_letters "  # nosec B608
            f"WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        )
        rows = self._reader().execute(query, [*params, limit]).fetchall()
        return [dict(zip(_DEAD_COLUMNS, row, strict=True)) for row in rows]

    def count_dead_letters(
        self, consumer: str | None = None, states: Sequence[str] = ("parked", "replay")
    ) -> int:
        where = f"state IN ({','.join('?' * len(states))})"
        params: list[Any] = list(states)
        if consumer is not None:
            where += " AND consumer = ?"
            params.append(consumer)
        query = f"SELECT COUNT(*) FROM dead_letters WHERE {where}"  # nosec B608
        (count,) = self._reader().execute(query, params).fetchone()
        return int(count)

    def set_dead_state(
        self, seqs: Sequence[int] | None, state: str, now: float | None = None
    ) -> int:
        """Mark parked letters for replay (``replay``), as replayed (``done``, with the time)
        or purged (``purged``); None means every parked or replaying letter."""
        conn = self._reader()
        if seqs is None:
            cur = conn.execute(
                "UPDATE dead_letters SET state = ?, replayed_at = COALESCE(?, replayed_at) "
                "WHERE state IN ('parked', 'replay')",
                (state, now),
            )
        else:
            cur = conn.execute(
                f"UPDATE dead_letters SET state = ?, replayed_at = COALESCE(?, replayed_at) "  # nosec B608
                f"WHERE state IN ('parked', 'replay') AND seq IN ({','.join('?' * len(seqs))})",
                (state, now, *seqs),
            )
        return int(cur.rowcount)

    def read_seqs(self, seqs: Sequence[int]) -> pa.Table:
        """The events with these seqs, in seq order (EVENT_SCHEMA)."""
        select, names = _select(None)
        marks = ",".join("?" * len(seqs))
        rows = (
            self._reader()
            .execute(f"{select} WHERE seq IN ({marks}) ORDER BY seq", list(seqs))  # nosec B608
            .fetchall()
        )
        return _to_table(rows, names)

    # -- erasure ------------------------------------------------------------------------
    def erase_reader(self, user_id: str) -> tuple[int, list[str]]:
        """Delete a reader's events (theirs, and the anonymous ones of their sessions: what
        they read before logging in) and their dead letters; returns (events deleted, the
        reader's session ids). Deleted content is overwritten with zeros (secure_delete);
        ``scrub`` then empties the write-ahead log that still holds the old pages.

        The log has no index by reader (it would slow every append), so the rows are found
        by a scan before the write lock is taken; only rows appended since are scanned
        under it."""
        conn = _connect(self.path)
        try:
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA temp_store=MEMORY")  # the id lists never touch a temp file
            conn.execute("CREATE TEMP TABLE doomed_sessions (session_id TEXT PRIMARY KEY)")
            conn.execute("CREATE TEMP TABLE doomed (seq INTEGER PRIMARY KEY)")
            scanned = self._mark_doomed(conn, user_id, 0)
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._mark_doomed(conn, user_id, scanned)
                erased = conn.execute(
                    "DELETE FROM events WHERE seq IN (SELECT seq FROM doomed)"
                ).rowcount
                conn.execute("DELETE FROM dead_letters WHERE seq IN (SELECT seq FROM doomed)")
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
            sessions = [row[0] for row in conn.execute("SELECT session_id FROM doomed_sessions")]
            return int(erased), sessions
        finally:
            conn.close()

    @staticmethod
    def _mark_doomed(conn: sqlite3.Connection, user_id: str, after_seq: int) -> int:
        """Add the reader's sessions and rows past ``after_seq`` to the temp tables; returns
        the newest seq scanned."""
        new_sessions = conn.execute(
            "INSERT OR IGNORE INTO doomed_sessions SELECT DISTINCT session_id FROM events "
            "WHERE seq > ? AND user_id = ?",
            (after_seq, user_id),
        ).rowcount
        if after_seq and new_sessions:  # a session first seen now may have older rows
            after_seq = 0
        conn.execute(
            "INSERT OR IGNORE INTO doomed SELECT seq FROM events WHERE seq > ?1 AND "
            "(user_id = ?2 OR (user_id IS NULL AND session_id IN doomed_sessions))",
            (after_seq, user_id),
        )
        (newest,) = conn.execute(
            "SELECT COALESCE(MAX(seq), ?) FROM events WHERE seq > ?", (after_seq, after_seq)
        ).fetchone()
        return int(newest)

    def scrub(self, attempts: int = 50) -> bool:
        """Copy the write-ahead log into the database and truncate it to zero bytes, so
        pages from before an erasure are gone from disk; False if readers kept it busy."""
        conn = _connect(self.path)
        try:
            for _ in range(attempts):
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return True
                time.sleep(0.1)
            return False
        finally:
            conn.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._committer.shutdown(wait=True)  # a commit in flight finishes
        with self._write_lock:
            self._write.close()
        self._fast.close()
        for conn in self._readers:
            conn.close()
