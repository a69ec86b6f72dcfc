"""Event log on a Redis stream, appended by one Lua script per group of batches.

Every key shares one hash tag (``{clickrec}:events``, ``{clickrec}:seq``, ...), so the whole
log lives in one slot: a script can touch all of it atomically, on a single server and on a
Redis Cluster node alike. That makes the log one partition: its throughput is one core's.
(The client is a plain one: on a Cluster, the URL names the node that serves the slot.)

- ``events``: a stream whose entry IDs are ``<seq>-0``; each entry holds one field, the
  record as JSON (null columns left out). Seqs come from ``seq`` (INCRBY), so they are
  global, dense and never reused, with gaps only where events were erased.
- ``ids``: a hash event_id → seq, the dedup index. It keeps every id ever appended (the
  same window as SQLite's unique index), so it grows with the log; erased ids leave it.
- ``offsets`` (consumer → seq), ``dead`` (seq → dead letter as JSON), ``traces`` (a sorted
  set of ``"<first_seq> <traceparent>"`` scored by the append's last seq).
- ``lease``, ``rebuild``, ``unscrubbed``: erasure and scrub (see ``erase_reader``).

The whole log is held in the server's memory; durability is the server's append-only file
(``appendonly yes``, ``appendfsync always``, checked at open unless ``durability=none``),
optionally confirmed by replicas with WAIT (``replicas=N``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import pyarrow as pa
import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from clickrec.backends.base import TRACEPARENT, AppendResult
from clickrec.backends.sqlite_log import FRESH_ID
from clickrec.core.errors import StoreUnavailable
from clickrec.core.schema import EVENT_COLUMNS, EVENT_SCHEMA

logger = logging.getLogger("clickrec.eventlog")

_DATA_COLUMNS = EVENT_COLUMNS[1:]
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
_FIELD = b"record"  # the one field of a stream entry
_GROUP_RECORDS = 10_000  # records per script call: a script blocks the server while it runs
_PAGE = 1000  # entries per XRANGE when scanning the whole stream
_IDLE_PING_S = 1.0  # a writer connection idle longer is checked before a script is sent
_LEASE_MS = 60_000  # how long a crashed eraser can keep others out
_DEFAULT_TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 10.0}
_LEASE_LOST = "the event log lease was lost"  # the lease scripts' error

# One append group: per batch, drop records whose event_id is in ``ids`` (unless flagged
# fresh) or earlier in the call; then one INCRBY for all kept records, an XADD of each at
# ``<seq>-0``, its id into ``ids``, and the trace link of a traced batch. Returns, per batch,
# the kept indexes and their seqs.
# ARGV: batch count, then per batch: n, traceparent or "", n × (event_id, fresh, record).
_APPEND_LUA = """
local events, counter, ids, traces = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local pos, seen, batches, total = 2, {}, {}, 0
for b = 1, tonumber(ARGV[1]) do
  local n, first, keep = tonumber(ARGV[pos]), pos + 2, {}
  for i = 0, n - 1 do
    local at = first + 3 * i
    local id = ARGV[at]
    if not seen[id] and (ARGV[at + 1] == '1' or redis.call('HEXISTS', ids, id) == 0) then
      keep[#keep + 1] = i
    end
    seen[id] = true
  end
  batches[b] = {first, ARGV[pos + 1], keep}
  total = total + #keep
  pos = first + 3 * n
end
local seq = 0
if total > 0 then seq = redis.call('INCRBY', counter, total) - total end
local out = {}
for b, batch in ipairs(batches) do
  local first, trace, keep, seqs = batch[1], batch[2], batch[3], {}
  for j, i in ipairs(keep) do
    seq = seq + 1
    local at, s = first + 3 * i, string.format('%d', seq)
    redis.call('XADD', events, s .. '-0', 'record', ARGV[at + 2])
    redis.call('HSET', ids, ARGV[at], s)
    seqs[j] = seq
  end
  if trace ~= '' and #seqs > 0 then
    redis.call('ZADD', traces, seqs[#seqs], string.format('%d', seqs[1]) .. ' ' .. trace)
  end
  out[2 * b - 1], out[2 * b] = keep, seqs
end
return out
"""

# A migration: entries that keep the seqs they had in another log (ARGV: seq, event_id,
# record, ...); those at or below the counter are there already (a resumed copy).
_COPY_IN_LUA = """
local events, counter, ids = KEYS[1], KEYS[2], KEYS[3]
local last, n = tonumber(redis.call('GET', counter) or '0'), 0
for i = 1, #ARGV, 3 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', events, ARGV[i] .. '-0', 'record', ARGV[i + 2])
    redis.call('HSET', ids, ARGV[i + 1], ARGV[i])
    last, n = seq, n + 1
  end
end
redis.call('SET', counter, string.format('%d', last))
return n
"""

# Erasure and scrub rewrite the stream; they hold the lease (KEYS[1]) with a token (ARGV[1])
# and every script they run checks it first and renews it (ARGV[2] ms).
_LEASE_LUA = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('ERR {_LEASE_LOST}')
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Erase stream entries (ARGV[3..]: seq, event_id pairs): XDEL, their dedup ids and dead
# letters; mark the stream as holding deleted bytes. Returns how many entries were there.
_ERASE_LUA = (
    _LEASE_LUA
    + """
local events, ids, dead, unscrubbed = KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local deleted = 0
for i = 3, #ARGV, 2 do
  local seq, id = ARGV[i], ARGV[i + 1]
  deleted = deleted + redis.call('XDEL', events, seq .. '-0')
  if redis.call('HGET', ids, id) == seq then redis.call('HDEL', ids, id) end
  redis.call('HDEL', dead, seq)
end
if deleted > 0 then redis.call('SET', unscrubbed, '1') end
return deleted
"""
)

# Copy the stream's entries after ARGV[3] into a fresh stream, ARGV[4] of them (0: all);
# with ARGV[5] == '1', then put the copy in the stream's place. XDEL only flags an entry in
# its listpack node, whose bytes stay in memory and in RDB files; a copy has none of them.
_REBUILD_LUA = (
    _LEASE_LUA
    + """
local events, copy, unscrubbed = KEYS[2], KEYS[3], KEYS[4]
if ARGV[3] == '0-0' then redis.call('DEL', copy) end
local entries
if ARGV[4] == '0' then
  entries = redis.call('XRANGE', events, '(' .. ARGV[3], '+')
else
  entries = redis.call('XRANGE', events, '(' .. ARGV[3], '+', 'COUNT', ARGV[4])
end
for _, entry in ipairs(entries) do
  redis.call('XADD', copy, entry[1], entry[2][1], entry[2][2])
end
local last = ARGV[3]
if #entries > 0 then last = entries[#entries][1] end
if ARGV[5] == '1' then
  if redis.call('EXISTS', copy) == 1 then
    redis.call('RENAME', copy, events)
  else
    redis.call('DEL', events)
  end
  redis.call('DEL', unscrubbed)
end
return {#entries, last}
"""
)


@dataclass(frozen=True)
class _Keys:
    """The log's keys, all under one hash tag (one cluster slot)."""

    events: str
    seq: str
    ids: str
    offsets: str
    dead: str
    traces: str
    lease: str
    rebuild: str
    unscrubbed: str

    @classmethod
    def under(cls, prefix: str) -> _Keys:
        if not prefix or any(c in prefix for c in "{}"):
            raise ValueError(
                f"the event log's key prefix must be non-empty, without braces: {prefix!r}"
            )
        names = cls.__dataclass_fields__
        return cls(**{name: f"{{{prefix}}}:{name}" for name in names})


@dataclass(frozen=True)
class _Options:
    """What the URL's query says beyond what redis-py reads."""

    durability: str = "fsync"
    replicas: int = 0
    timeout_ms: int = 1000


def _split_url(url: str) -> tuple[str, _Options, str]:
    """The URL for redis-py (our parameters taken out), our options, and the server's
    address for messages (never the password)."""
    parts = urlsplit(url)
    ours = {"durability", "replicas", "timeout_ms"}
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = {k: v for k, v in query if k in ours}
    rest = urlencode([(k, v) for k, v in query if k not in ours])
    durability = given.get("durability", "fsync")
    if durability not in ("fsync", "none"):
        raise ValueError(f"durability={durability!r} in the event log URL: use fsync or none")
    try:
        options = _Options(
            durability, int(given.get("replicas", 0)), int(given.get("timeout_ms", 1000))
        )
    except ValueError:
        raise ValueError("replicas and timeout_ms in the event log URL must be integers") from None
    if options.replicas < 0 or options.timeout_ms < 0:
        raise ValueError("replicas and timeout_ms in the event log URL must not be negative")
    if parts.scheme == "unix":
        where = parts.path
    else:
        host = parts.hostname or "localhost"
        where = f"[{host}]:{parts.port or 6379}" if ":" in host else f"{host}:{parts.port or 6379}"
    return urlunsplit(parts._replace(query=rest)), options, where


def _reason(exc: BaseException) -> str:
    return next(iter(str(exc).strip().splitlines()), "") or type(exc).__name__


def _payload(record: dict[str, Any]) -> bytes:
    """The stored form of a record: its non-null columns (no flags, no seq) as JSON."""
    return orjson.dumps({c: v for c in _DATA_COLUMNS if (v := record.get(c)) is not None})


def _names(columns: Sequence[str] | None) -> Sequence[str]:
    names = EVENT_COLUMNS if columns is None else tuple(columns)
    unknown = set(names) - set(EVENT_COLUMNS)
    if unknown:
        raise ValueError(f"unknown event columns: {sorted(unknown)}")
    return names


def _seq_of(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _to_table(entries: list[tuple[bytes, dict[bytes, bytes]]], names: Sequence[str]) -> pa.Table:
    """Stream entries as an event table, decoded column by column."""
    rows = [orjson.loads(fields[_FIELD]) for _, fields in entries]
    schema = pa.schema([EVENT_SCHEMA.field(n) for n in names])
    arrays = {}
    for name in names:
        if name == "seq":
            values: list[Any] = [_seq_of(entry_id) for entry_id, _ in entries]
        else:
            values = [row.get(name) for row in rows]
        arrays[name] = pa.array(values, type=schema.field(name).type)
    return pa.table(arrays, schema=schema)


Waiter = tuple[Sequence[dict[str, Any]], "asyncio.Future[AppendResult]"]


class RedisEventLog:
    """The event log on a Redis stream (``redis://`` or ``rediss://``).

    Query parameters of the URL: ``durability=fsync`` (the default: opening checks that
    the server fsyncs every write) or ``none`` (no check, for throwaway logs);
    ``replicas=N`` with ``timeout_ms`` (default 1000): after each append, WAIT until N
    replicas have it, else StoreUnavailable. Other parameters go to redis-py.

    ``append`` runs its script from the caller's thread; ``append_async`` queues the batch,
    and one flusher thread sends every waiting batch in one script call (group commit), so
    the event loop never waits on Redis.

    ``before_commit``: Redis shows an append to every client the moment the script ran,
    so "before any reader can see them" holds for readers in this process only: a
    process-local lock is held around (script + WAIT + ``before_commit``), and ``read``,
    ``read_tail``, ``read_seqs`` and ``last_seq`` take it too, so a reader here never sees
    a seq this process appended but has not yet claimed. Readers in other processes may.
    """

    def __init__(self, url: str, prefix: str = "clickrec") -> None:
        target, self._options, self.where = _split_url(url)
        self._keys = _Keys.under(prefix)
        reads = Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)  # idempotent commands
        self._redis = redis.Redis.from_url(target, retry=reads, **_DEFAULT_TIMEOUTS)
        self._writer: redis.Redis | None = None
        wait_s = max(_DEFAULT_TIMEOUTS["socket_timeout"], self._options.timeout_ms / 1000 + 5)
        try:
            with self._failing("connecting"):
                self._redis.ping()
                if self._options.durability == "fsync":
                    self._check_fsync()
                # A script whose reply is lost may have run: never resent (no retries).
                self._writer = redis.Redis.from_url(
                    target,
                    retry=Retry(NoBackoff(), 0),
                    single_connection_client=True,
                    **(_DEFAULT_TIMEOUTS | {"socket_timeout": wait_s}),
                )
        except BaseException:
            self._redis.close()
            raise
        self._append_script = self._writer.register_script(_APPEND_LUA)
        self._erase_script = self._redis.register_script(_ERASE_LUA)
        self._rebuild_script = self._redis.register_script(_REBUILD_LUA)
        self._lease_script = self._redis.register_script(_LEASE_LUA + "return 1")
        self._release_script = self._redis.register_script(_RELEASE_LUA)
        self._copy_in_script = self._redis.register_script(_COPY_IN_LUA)
        self._claim = threading.RLock()  # see the class docstring; also guards _writer
        self._last_write = time.monotonic()
        self._waiting: list[Waiter] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._committing = False
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="eventlog-flush")
        self._closed = False
        self.before_commit: Callable[[list[int]], None] | None = None

    @contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        """Redis errors as StoreUnavailable, in one line that names the server."""
        try:
            yield
        except redis.RedisError as exc:
            raise StoreUnavailable(
                f"event log on Redis at {self.where}: {doing} failed: {_reason(exc)}"
            ) from exc

    def _check_fsync(self) -> None:
        """Refuse a server that can lose acknowledged writes (a crash loses up to a second
        of them unless every write is fsynced); only warn where CONFIG is not allowed."""
        try:
            config = cast(dict[str, str], self._redis.config_get("append*"))
        except redis.ResponseError as exc:  # a managed Redis that hides CONFIG
            logger.warning(
                "cannot check the durability of the event log's Redis at %s (%s): make sure "
                "it runs with appendonly yes and appendfsync always",
                self.where,
                _reason(exc),
            )
            return
        only, fsync = config.get("appendonly"), config.get("appendfsync")
        if only != "yes" or fsync != "always":
            raise StoreUnavailable(
                f"the event log's Redis at {self.where} can lose acknowledged events "
                f"(appendonly {only}, appendfsync {fsync}): set appendonly yes and "
                "appendfsync always, or add durability=none to the URL for a throwaway log"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("event log is closed")

    # -- writing -------------------------------------------------------------------------
    def append(self, records: Sequence[dict[str, Any]]) -> AppendResult:
        self._check_open()
        return self._append_group([records])[0]

    async def append_async(self, records: Sequence[dict[str, Any]]) -> AppendResult:
        self._check_open()
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
        """On the loop: hand the waiting batches (up to _GROUP_RECORDS records) to the
        flusher thread; the rest go in the next group."""
        self._scheduled = False
        size = taken = 0
        while taken < len(self._waiting) and (not taken or size < _GROUP_RECORDS):
            size += len(self._waiting[taken][0])
            taken += 1
        group, self._waiting = self._waiting[:taken], self._waiting[taken:]
        if not group:
            return
        self._committing = True
        assert self._loop is not None
        loop = self._loop
        try:
            done = self._flusher.submit(self._append_group, [records for records, _ in group])
        except RuntimeError:  # closed meanwhile
            failed: Future[list[AppendResult]] = Future()
            failed.set_exception(StoreUnavailable("event log is closed"))
            self._settle(group, failed)
            return
        done.add_done_callback(lambda f: _call_soon(loop, self._settle, group, f))

    def _settle(self, group: list[Waiter], done: Future[list[AppendResult]]) -> None:
        self._committing = False
        exc = done.exception()
        for i, (_, future) in enumerate(group):
            if future.done():  # its request was cancelled (client gone); the events stay
                continue
            if exc is None:
                future.set_result(done.result()[i])
            elif isinstance(exc, StoreUnavailable):
                future.set_exception(exc)
            else:
                future.set_exception(StoreUnavailable(f"event log write failed: {exc}"))
        if self._waiting and not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _append_group(self, batches: list[Sequence[dict[str, Any]]]) -> list[AppendResult]:
        """One script call for every batch; ``before_commit`` sees the new seqs before any
        reader of this process does."""
        self._check_open()
        args = _script_args(batches)
        keys = self._keys
        with self._claim:
            assert self._writer is not None
            with self._failing("checking the connection"):
                if time.monotonic() - self._last_write > _IDLE_PING_S:
                    self._ping_writer()
            with self._failing("append (its events may or may not be stored)"):
                reply = self._append_script(
                    keys=[keys.events, keys.seq, keys.ids, keys.traces],
                    args=args,
                    client=self._writer,
                )
                self._last_write = time.monotonic()
                results = [
                    AppendResult(
                        [int(i) for i in reply[2 * b]],
                        [int(s) for s in reply[2 * b + 1]],
                        len(batch) - len(reply[2 * b]),
                    )
                    for b, batch in enumerate(batches)
                ]
                seqs = [s for result in results for s in result.seqs]
                if seqs and self._options.replicas:
                    self._wait_for_replicas()
            if seqs and self.before_commit is not None:
                self.before_commit(seqs)
        return results

    def copy_in(self, table: pa.Table) -> int:
        """Add events that keep their seqs (``clickrec migrate`` from another log), in seq
        order; seqs at or below this log's last are skipped (a resumed copy). Returns how
        many were added. Not for a log that takes appends meanwhile."""
        self._check_open()
        rows = table.to_pylist()
        added = 0
        for start in range(0, len(rows), _GROUP_RECORDS):
            args: list[Any] = []
            for row in rows[start : start + _GROUP_RECORDS]:
                args += (row["seq"], row["event_id"], _payload(row))
            with self._claim, self._failing("copying events in"):
                added += int(
                    self._copy_in_script(
                        keys=[self._keys.events, self._keys.seq, self._keys.ids],
                        args=args,
                        client=self._writer,
                    )
                )
        return added

    def _ping_writer(self) -> None:
        """Check the writer's connection before a script goes out on it; a connection the
        server dropped (a restart, an idle timeout) is made again, once."""
        assert self._writer is not None
        try:
            self._writer.ping()
        except redis.ConnectionError:
            self._writer.ping()

    def _wait_for_replicas(self) -> None:
        assert self._writer is not None
        wanted, timeout = self._options.replicas, self._options.timeout_ms
        acked = int(self._writer.wait(wanted, timeout))
        if acked < wanted:
            raise StoreUnavailable(
                f"event log on Redis at {self.where}: only {acked} of {wanted} replicas "
                f"confirmed the append within {timeout} ms (its events may or may not be kept)"
            )

    # -- reading -------------------------------------------------------------------------
    def _range(self, start: str, end: str = "+", count: int | None = None) -> list[Any]:
        with self._failing("reading"):
            return cast(list[Any], self._redis.xrange(self._keys.events, start, end, count))

    def read(self, after_seq: int, limit: int, columns: Sequence[str] | None = None) -> pa.Table:
        names = _names(columns)
        self._check_open()
        if limit == 0:
            return _to_table([], names)
        with self._claim:
            entries = self._range(f"({max(after_seq, 0)}-0", "+", limit if limit > 0 else None)
        return _to_table(entries, names)

    def read_tail(self, last: int, columns: Sequence[str] | None = None) -> pa.Table:
        names = _names(columns)
        self._check_open()
        if last <= 0:
            return _to_table([], names)
        with self._claim:
            entries = self._range(f"({max(self._last_seq() - last, 0)}-0")
        return _to_table(entries, names)

    def last_seq(self) -> int:
        self._check_open()
        with self._claim:
            return self._last_seq()

    def _last_seq(self) -> int:
        with self._failing("reading"):
            return int(cast(bytes | None, self._redis.get(self._keys.seq)) or 0)

    def read_seqs(self, seqs: Sequence[int]) -> pa.Table:
        """The events with these seqs, in seq order (EVENT_SCHEMA)."""
        self._check_open()
        wanted = sorted(s for s in set(seqs) if s > 0)
        entries: list[Any] = []
        with self._claim, self._failing("reading"):
            for start in range(0, len(wanted), _PAGE):
                pipe = self._redis.pipeline(transaction=False)
                for seq in wanted[start : start + _PAGE]:
                    pipe.xrange(self._keys.events, f"{seq}-0", f"{seq}-0")
                for found in pipe.execute():
                    entries.extend(found)
        return _to_table(entries, EVENT_COLUMNS)

    def get_offset(self, consumer: str) -> int:
        self._check_open()
        with self._failing("reading an offset"):
            return int(cast(bytes | None, self._redis.hget(self._keys.offsets, consumer)) or 0)

    def commit_offset(self, consumer: str, seq: int) -> None:
        self._check_open()
        with self._failing("committing an offset"):
            self._redis.hset(self._keys.offsets, consumer, seq)

    def trace_links(self, first_seq: int, last_seq: int, limit: int) -> list[tuple[int, int, str]]:
        self._check_open()
        # Appends' seq ranges never overlap, so by last seq they are also by first seq: the
        # links that overlap the range are a prefix of those ending at or after first_seq.
        with self._failing("reading trace links"):
            found = cast(
                list[tuple[bytes, float]],
                self._redis.zrangebyscore(
                    self._keys.traces, first_seq, "+inf", start=0, num=limit, withscores=True
                ),
            )
        links = []
        for member, score in found:
            first, parent = member.split(b" ", 1)
            if int(first) <= last_seq:
                links.append((int(first), int(score), parent.decode()))
        return links

    def prune_trace_links(self, through_seq: int) -> int:
        self._check_open()
        with self._failing("pruning trace links"):
            return int(self._redis.zremrangebyscore(self._keys.traces, "-inf", through_seq))

    # -- dead letters ------------------------------------------------------------------
    def park(
        self, consumer: str, letters: Sequence[tuple[int, str | None, str, int]], now: float
    ) -> None:
        """Park events a consumer could not process: (seq, event_id, error, attempts); a
        letter parked again keeps its consumer, event id and first parking time."""
        self._check_open()
        if not letters:
            return
        dead = self._keys.dead

        def update(pipe: redis.client.Pipeline) -> None:
            rows = self._dead_rows(pipe, [seq for seq, _, _, _ in letters])
            for seq, event_id, error, attempts in letters:
                row = rows.setdefault(
                    seq, {"consumer": consumer, "event_id": event_id, "parked_at": now}
                )
                row.update(error=error, attempts=attempts, state="parked")
            pipe.multi()
            pipe.hset(dead, items=_dead_items(rows))

        with self._failing("parking dead letters"):
            self._redis.transaction(update, dead)

    def dead_letters(
        self,
        consumer: str | None = None,
        states: Sequence[str] = ("parked", "replay"),
        seqs: Sequence[int] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        self._check_open()
        with self._failing("reading dead letters"):
            stored = self._dead_rows(self._redis, seqs)
        letters = [
            {c: row.get(c) for c in _DEAD_COLUMNS} | {"seq": seq}
            for seq, row in sorted(stored.items())
            if row["state"] in states and (consumer is None or row["consumer"] == consumer)
        ]
        return letters[:limit] if limit >= 0 else letters

    def count_dead_letters(
        self, consumer: str | None = None, states: Sequence[str] = ("parked", "replay")
    ) -> int:
        self._check_open()
        with self._failing("counting dead letters"):
            values = cast(list[bytes], self._redis.hvals(self._keys.dead))
        rows = (orjson.loads(v) for v in values)
        return sum(1 for r in rows if r["state"] in states and consumer in (None, r["consumer"]))

    def _dead_rows(
        self, client: redis.Redis | redis.client.Pipeline, seqs: Sequence[int] | None
    ) -> dict[int, dict[str, Any]]:
        """Stored dead letters by seq: all of them, or those of ``seqs``."""
        if seqs is None:
            raw = cast(dict[bytes, bytes], client.hgetall(self._keys.dead))
            return {int(k): orjson.loads(v) for k, v in raw.items()}
        if not seqs:
            return {}
        fields = [str(s) for s in seqs]
        values = cast(list[bytes | None], client.hmget(self._keys.dead, fields))
        return {s: orjson.loads(v) for s, v in zip(seqs, values, strict=True) if v is not None}

    def set_dead_state(
        self, seqs: Sequence[int] | None, state: str, now: float | None = None
    ) -> int:
        """Mark parked letters for replay (``replay``), as replayed (``done``, with the time)
        or purged (``purged``); None means every parked or replaying letter."""
        self._check_open()
        dead = self._keys.dead

        changed = 0

        def update(pipe: redis.client.Pipeline) -> None:
            nonlocal changed
            rows = self._dead_rows(pipe, seqs)
            rows = {s: row for s, row in rows.items() if row["state"] in ("parked", "replay")}
            for row in rows.values():
                row["state"] = state
                if now is not None:
                    row["replayed_at"] = now
            changed = len(rows)
            pipe.multi()
            if rows:
                pipe.hset(dead, items=_dead_items(rows))

        with self._failing("changing dead letters"):
            self._redis.transaction(update, dead)
        return changed

    # -- erasure ------------------------------------------------------------------------
    def erase_reader(self, user_id: str) -> tuple[int, list[str]]:
        """Delete a reader's events (theirs, and the anonymous ones of their sessions: what
        they read before logging in), their dedup ids and dead letters; returns (events
        deleted, the reader's session ids). The events found are those up to the seq the
        scan began at; ones appended later are not the erasure's.

        The log has no index by reader (it would cost every append), so the stream is
        scanned twice: once for the reader's sessions, once for the rows. XDEL leaves the
        deleted bytes in the stream's memory and in snapshots of it; ``scrub`` rewrites
        the stream and then the server's files. Erasures and scrubs take turns (a lease)."""
        self._check_open()
        with self._failing("erasing a reader"), self._lease(attempts=100) as token:
            end = self._last_seq()
            sessions: set[str] = set()
            for _, rows in self._scan(end, token):
                sessions.update(r["session_id"] for r in rows if r.get("user_id") == user_id)
            doomed: list[str] = []
            for seqs, rows in self._scan(end, token):
                for seq, row in zip(seqs, rows, strict=True):
                    user = row.get("user_id")
                    if user == user_id or (user is None and row["session_id"] in sessions):
                        doomed += (str(seq), row["event_id"])
            erased = 0
            keys = self._keys
            for start in range(0, len(doomed), 2 * _PAGE):
                erased += int(
                    self._erase_script(
                        keys=[keys.lease, keys.events, keys.ids, keys.dead, keys.unscrubbed],
                        args=[token, _LEASE_MS, *doomed[start : start + 2 * _PAGE]],
                    )
                )
        return erased, sorted(sessions)

    def _scan(self, end: int, token: str) -> Iterator[tuple[list[int], list[dict[str, Any]]]]:
        """The stream up to ``end`` in pages of (seqs, decoded records), renewing the lease."""
        after = 0
        while after < end:
            self._renew(token)
            page = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                self._redis.xrange(self._keys.events, f"({after}-0", f"{end}-0", _PAGE),
            )
            if not page:
                return
            seqs = [_seq_of(entry_id) for entry_id, _ in page]
            yield seqs, [orjson.loads(fields[_FIELD]) for _, fields in page]
            after = seqs[-1]

    @contextmanager
    def _lease(self, attempts: int) -> Iterator[str]:
        """Hold the log's lease (erasures and scrubs take turns) while the block runs;
        StoreUnavailable if another holds it for ``attempts`` tries."""
        token = secrets.token_hex(16)
        for attempt in range(attempts):
            if self._redis.set(self._keys.lease, token, nx=True, px=_LEASE_MS):
                break
            if attempt + 1 == attempts:
                raise StoreUnavailable(
                    f"event log on Redis at {self.where}: busy with another erasure or scrub"
                )
            time.sleep(0.1)
        try:
            yield token
        finally:
            self._release_script(keys=[self._keys.lease], args=[token])

    def _renew(self, token: str) -> None:
        self._lease_script(keys=[self._keys.lease], args=[token, _LEASE_MS])

    def scrub(self, attempts: int = 50) -> bool:
        """Leave no copy of erased events in the server's memory or files: rewrite the
        stream without them (in chunks, appends going on), then rewrite the append-only
        file and, where the server takes snapshots, the RDB file. False if busy (another
        erasure, or a rewrite that did not finish within ``attempts`` polls)."""
        self._check_open()
        with self._failing("scrubbing"):
            try:
                with self._lease(attempts) as token:
                    if self._redis.exists(self._keys.unscrubbed):
                        self._rebuild(token)
            except StoreUnavailable:  # busy: another erasure or scrub holds the lease
                return False
            except redis.ResponseError as exc:
                if _LEASE_LOST in str(exc):
                    return False
                raise
            return self._rewrite_files(attempts)

    def _rebuild(self, token: str) -> None:
        """Copy the stream into a fresh one, then swap (the last chunk and the swap in one
        script, so no append falls between)."""
        keys = self._keys
        after = "0-0"
        while True:
            copied, last = self._rebuild_script(
                keys=[keys.lease, keys.events, keys.rebuild, keys.unscrubbed],
                args=[token, _LEASE_MS, after, _PAGE, 0],
            )
            after = last.decode() if isinstance(last, bytes) else str(last)
            if int(copied) < _PAGE:
                break
        self._rebuild_script(
            keys=[keys.lease, keys.events, keys.rebuild, keys.unscrubbed],
            args=[token, _LEASE_MS, after, 0, 1],
        )

    def _rewrite_files(self, attempts: int) -> bool:
        """Rewrite the append-only file (and take a snapshot where snapshots are kept), so
        the files hold only the current data; False if one did not finish in time."""
        info = self._redis.info("persistence")
        ok = True
        if int(info.get("aof_enabled", 0)):
            ok = self._background(
                self._redis.bgrewriteaof,
                ("aof_rewrite_in_progress", "aof_rewrite_scheduled"),
                "aof_last_bgrewrite_status",
                attempts,
            )
        try:
            snapshots = cast(dict[str, str], self._redis.config_get("save")).get("save")
        except redis.ResponseError:  # a managed Redis: its snapshots are its own
            snapshots = None
        if ok and snapshots:
            ok = self._background(
                lambda: self._redis.bgsave(schedule=False),  # a scheduled one is not in INFO
                ("rdb_bgsave_in_progress",),
                "rdb_last_bgsave_status",
                attempts,
            )
        return ok

    def _background(
        self, start: Callable[[], object], busy: tuple[str, ...], status: str, attempts: int
    ) -> bool:
        """Start a background save once none is running (one that began earlier may hold
        old data), then wait for it; True when it finished well within ``attempts`` polls."""
        started = False
        for _ in range(attempts):
            info = self._redis.info("persistence")
            running = any(int(info.get(key, 0)) for key in busy)
            if started and not running:
                return bool(info.get(status) == "ok")
            if not started and not running:
                try:
                    start()
                    started = True
                except redis.ResponseError:  # another began meanwhile: wait for it
                    pass
            time.sleep(0.1)
        return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._flusher.shutdown(wait=True)  # a group in flight finishes
        with self._claim:
            if self._writer is not None:
                self._writer.close()
            self._redis.close()


def _script_args(batches: list[Sequence[dict[str, Any]]]) -> list[Any]:
    """The append script's ARGV (see _APPEND_LUA)."""
    args: list[Any] = [len(batches)]
    for batch in batches:
        args += (len(batch), (batch[0].get(TRACEPARENT) or "") if batch else "")
        for record in batch:
            args += (record["event_id"], 1 if record.get(FRESH_ID) else 0, _payload(record))
    return args


def _dead_items(rows: dict[int, dict[str, Any]]) -> list[str | bytes]:
    """Dead letters as HSET's flat list of fields and values."""
    return [x for seq, row in rows.items() for x in (str(seq), orjson.dumps(row))]


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Run ``callback`` on the loop, unless the loop is gone (its waiters with it)."""
    with suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
