"""From one machine to many without losing history: copy an embedded home's event log and
catalog into the scale-out stores (Redis, PostgreSQL), resumable, verified by counts and
checksums, and then point the home's config file at them.

The copy is made while nothing else writes (the lake's writer lock proves no worker runs):

- **catalog**: every table, row by row in primary-key order, upserted, so a second run
  overwrites what a first one left half done;
- **event log**: every event with the seq it has (so the lake's parts, named by seqs, and the
  archive's offset stay true), from the target's last seq on, so a second run goes on where
  the first stopped; then the consumers' offsets and the dead letters (trace links, which
  only serve tracing, are not copied).

Verification reads both sides again: per catalog table and for the events, the row count
and a SHA-256 over the rows in key order must agree, or the config file is left alone. The
lake and the model artifacts stay where they are (their URLs do not change).
"""

from __future__ import annotations

import hashlib
import shutil
import threading
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pyarrow as pa
import sqlalchemy as sa
import tomli_w

from clickrec.backends import sql_catalog
from clickrec.backends.base import EventLog
from clickrec.backends.redis_log import RedisEventLog
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import CONFIG_FILE, Settings
from clickrec.core.errors import Conflict, InvalidInput
from clickrec.core.schema import EVENT_COLUMNS

Progress = Callable[[str, int, int], None]
"""Told (what, done, total) as the copy goes."""

_CHUNK = 10_000
_CONSUMERS = ("archive",)
_DEAD_STATES = ("parked", "replay", "done", "purged")


@dataclass(frozen=True)
class Check:
    """One verified part: rows and checksum on each side."""

    name: str
    rows: int
    target_rows: int
    checksum: str
    target_checksum: str

    @property
    def ok(self) -> bool:
        return self.rows == self.target_rows and self.checksum == self.target_checksum


def migrate(
    settings: Settings,
    event_log: str | None,
    catalog: str | None,
    progress: Progress = lambda what, done, total: None,
) -> list[Check]:
    """Copy the home's event log to ``event_log`` (redis://) and its catalog to ``catalog``
    (postgresql://), verify, and record the new places in the config file. Raises Conflict
    when a worker runs or a check fails (the config file then still names the old places)."""
    if event_log is None and catalog is None:
        raise InvalidInput("name a target: --event-log redis://… and/or --catalog postgresql://…")
    if event_log is not None and not event_log.startswith(("redis://", "rediss://")):
        raise InvalidInput(f"the event log can move to redis:// only, not {event_log!r}")
    from clickrec.backends.registry import open_catalog, open_event_log, open_lake

    checks: list[Check] = []
    lake = open_lake(settings)
    idle = threading.Event()
    idle.set()  # take the lock now or not at all: held means a worker runs
    if not lake.acquire_writer(idle):
        raise Conflict("a worker is running on this home: stop clickrec serve first")
    try:
        if catalog is not None:
            source = open_catalog(settings)
            target = SQLCatalog(catalog)
            try:
                checks += copy_catalog(source, target, progress)
            finally:
                source.close()
                target.close()
        if event_log is not None:
            log = open_event_log(settings)
            moved = RedisEventLog(event_log)
            try:
                checks.append(copy_events(log, moved, progress))
            finally:
                log.close()
                moved.close()
    finally:
        lake.close()  # gives the writer lock up too
    bad = [c.name for c in checks if not c.ok]
    if bad:
        raise Conflict(f"the copy does not match the source for: {', '.join(bad)}; run again")
    record_stores(settings, {"event_log": event_log, "catalog": catalog})
    return checks


# -- catalog -------------------------------------------------------------------------------
def copy_catalog(source: SQLCatalog, target: SQLCatalog, progress: Progress) -> list[Check]:
    checks = []
    for table in sql_catalog.metadata.sorted_tables:
        with source.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        done = 0
        for rows in _table_rows(source, table):
            with target.engine.begin() as conn:
                sql_catalog.copy_rows(conn, table, rows)
            done += len(rows)
            progress(f"catalog {table.name}", done, total)
        checks.append(_table_check(source, target, table))
    return checks


def _table_rows(catalog: SQLCatalog, table: sa.Table) -> Iterator[list[dict[str, Any]]]:
    key = list(table.primary_key.columns)
    with catalog.engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(
            sa.select(table).order_by(*key)
        )
        for part in result.partitions(_CHUNK):
            yield [{str(k): v for k, v in row._mapping.items()} for row in part]


def _table_check(source: SQLCatalog, target: SQLCatalog, table: sa.Table) -> Check:
    (rows, digest), (target_rows, target_digest) = (
        _digest(_table_rows(c, table)) for c in (source, target)
    )
    return Check(f"catalog {table.name}", rows, target_rows, digest, target_digest)


def _digest(chunks: Iterator[list[dict[str, Any]]]) -> tuple[int, str]:
    sha = hashlib.sha256()
    rows = 0
    for chunk in chunks:
        for row in chunk:
            sha.update(orjson.dumps(row, option=orjson.OPT_SORT_KEYS))
            rows += 1
    return rows, sha.hexdigest()


# -- event log -----------------------------------------------------------------------------
def copy_events(source: EventLog, target: RedisEventLog, progress: Progress) -> Check:
    total = source.last_seq()
    after = target.last_seq()  # a resumed copy goes on from there
    while True:
        table = source.read(after, _CHUNK)
        if table.num_rows == 0:
            break
        target.copy_in(table)
        after = int(table.column("seq")[-1].as_py())
        progress("events", after, total)
    for consumer in _CONSUMERS:
        target.commit_offset(consumer, source.get_offset(consumer))
    letters = source.dead_letters(None, _DEAD_STATES, limit=10**9)
    for letter in letters:
        row = (letter["seq"], letter["event_id"], letter["error"], letter["attempts"])
        target.park(letter["consumer"], [row], letter["parked_at"])
        if letter["state"] != "parked":
            target.set_dead_state([letter["seq"]], letter["state"], letter["replayed_at"])
    (rows, digest), (target_rows, target_digest) = (
        _digest(_event_rows(log)) for log in (source, target)
    )
    return Check("events", rows, target_rows, digest, target_digest)


def _event_rows(log: EventLog) -> Iterator[list[dict[str, Any]]]:
    after = 0
    while True:
        table: pa.Table = log.read(after, _CHUNK, EVENT_COLUMNS)
        if table.num_rows == 0:
            return
        after = int(table.column("seq")[-1].as_py())
        yield table.to_pylist()


# -- the config file -----------------------------------------------------------------------
def record_stores(settings: Settings, moved: dict[str, str | None]) -> None:
    """Name the new places in the home's config file (the old one kept beside it)."""
    path = settings.home / CONFIG_FILE
    doc = tomllib.loads(path.read_text()) if path.exists() else {}
    stores = doc.setdefault("stores", {})
    for name, url in moved.items():
        if url is not None:
            stores[name] = _without_password(url)
    if path.exists():
        shutil.copy2(path, path.with_name(CONFIG_FILE + ".before-migrate"))
    path.write_text(tomli_w.dumps(doc))


def _without_password(url: str) -> str:
    """The URL for the file: a password stays in the environment (PGPASSWORD, REDIS URL)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
