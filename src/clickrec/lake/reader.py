"""Read the whole event history for training: the archived lake plus the log's unarchived tail."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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
    """Files, rows and dates in the lake, for a status page (footers only: no data is read)."""
    files = rows = 0
    dates: set[dt.date] = set()
    for path in lake.parts():
        count = lake.part_rows(path)
        if count:
            files += 1
            rows += count
            dates.add(_part_date(path))
    return {
        "files": files,
        "rows": rows,
        "dates": len(dates),
        "first_date": min(dates).isoformat() if dates else None,
        "last_date": max(dates).isoformat() if dates else None,
    }


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
    """Archived rows with ``seq <= offset`` in seq order, in ``schema``'s types.

    Parts are read one at a time, through pyarrow (DuckDB cannot decrypt them), and only
    ``schema``'s columns, so memory holds the result plus one part.
    """
    if offset <= 0:
        return schema.empty_table()
    wanted = list(dict.fromkeys(["seq", *schema.names]))
    pieces = [_conform(schema.empty_table(), wanted, schema)]
    for path in lake.parts(max_seq=offset):
        part = lake.read_part(path, columns=wanted)
        pieces.append(_conform(part.filter(pc.less_equal(part["seq"], offset)), wanted, schema))
    table = pa.concat_tables(pieces).sort_by("seq")
    return table.select(schema.names)


def _conform(part: pa.Table, names: list[str], schema: pa.Schema) -> pa.Table:
    """``part`` with exactly ``names`` in ``schema``'s types (seq is int64); a column an
    older part lacks is null, as DuckDB's ``union_by_name`` made it."""
    types = {field.name: field.type for field in schema} | {"seq": pa.int64()}
    return pa.table(
        {
            name: part[name].cast(types[name])
            if name in part.column_names
            else pa.nulls(part.num_rows, types[name])
            for name in names
        }
    )


def _part_date(path: PurePath) -> dt.date:
    """The hive partition of a part: its folder is ``date=YYYY-MM-DD``."""
    return dt.date.fromisoformat(path.parent.name.removeprefix("date="))


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
