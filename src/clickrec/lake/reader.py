"""Read the whole event history for training: the archived lake plus the log's unarchived tail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from clickrec.backends.base import EventLog, Lake
from clickrec.core.schema import EVENT_COLUMNS, EVENT_SCHEMA

_TAIL_CHUNK = 100_000


def load_events(
    lake: Lake,
    log: EventLog,
    consumer: str = "archive",
    columns: Sequence[str] | None = None,
) -> pa.Table:
    """Every event exactly once, in seq order: lake rows up to the offset, then the log after it."""
    schema = _schema_of(columns)
    # The offset is read first: everything at or below it is already durable in the lake, and
    # everything above it is still in the log, so the two reads meet without gap or overlap
    # even while the archive consumer keeps running. Lake parts past the offset (a crash
    # residue not yet recovered) are filtered out by the same bound.
    offset = log.get_offset(consumer)
    archived = _read_lake(lake, offset, schema)
    tail = _read_log(log, offset, schema)
    return pa.concat_tables([archived, tail])


def lake_stats(lake: Lake) -> dict[str, Any]:
    """Files, rows and dates in the lake, for a status page."""
    stats: dict[str, Any] = {
        "files": 0,
        "rows": 0,
        "dates": 0,
        "first_date": None,
        "last_date": None,
    }
    if not lake.has_files():
        return stats
    query = (
        "SELECT count(DISTINCT filename), count(*), count(DISTINCT date), min(date), max(date) "
        "FROM read_parquet($glob, hive_partitioning=true, union_by_name=true, filename=true)"
    )
    with duckdb.connect() as con:
        [(files, rows, dates, first, last)] = con.sql(
            query, params={"glob": lake.glob()}
        ).fetchall()
    stats.update(
        files=files,
        rows=rows,
        dates=dates,
        first_date=first.isoformat(),
        last_date=last.isoformat(),
    )
    return stats


def _schema_of(columns: Sequence[str] | None) -> pa.Schema:
    if columns is None:
        return EVENT_SCHEMA
    unknown = [name for name in columns if name not in EVENT_COLUMNS]
    if unknown:
        raise ValueError(f"unknown event columns {unknown}; known: {list(EVENT_COLUMNS)}")
    if len(set(columns)) != len(columns):
        raise ValueError(f"columns repeat: {list(columns)}")
    return pa.schema([EVENT_SCHEMA.field(name) for name in columns])


def _read_lake(lake: Lake, offset: int, schema: pa.Schema) -> pa.Table:
    """Archived rows with ``seq <= offset`` in seq order, in ``schema``'s types."""
    if offset <= 0 or not lake.has_files():
        return schema.empty_table()
    selected = ", ".join(f'"{name}"' for name in schema.names)  # EVENT_SCHEMA's names only
    query = (
        f"SELECT {selected} "  # nosec B608
        "FROM read_parquet($glob, hive_partitioning=true, union_by_name=true) "
        "WHERE seq <= $offset ORDER BY seq"
    )
    with duckdb.connect() as con:
        table = con.sql(query, params={"glob": lake.glob(), "offset": offset}).to_arrow_table()
    return table.cast(schema)


def _read_log(log: EventLog, offset: int, schema: pa.Schema) -> pa.Table:
    """Events after ``offset`` still only in the log, read in chunks until none are left."""
    chunks = [schema.empty_table()]
    after = offset
    while True:
        chunk = log.read(after, _TAIL_CHUNK)
        if chunk.num_rows == 0:
            break
        chunks.append(chunk.select(schema.names).cast(schema))
        after = chunk["seq"][-1].as_py()
    return pa.concat_tables(chunks)
