"""Bulk import of interaction and item files (CSV or Parquet), the Personalize import job.

Rows go through the same validation and the same ingestion path as live events, in
batches, so a site can start from years of history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import TypeAdapter, ValidationError

from clickrec.core.errors import InvalidInput
from clickrec.core.types import Event, Item, to_unix
from clickrec.ingestion.service import Ingestor
from clickrec.ingestion.validation import check_times, parse_batch

BATCH = 1000
Progress = Callable[[int], None]


def read_table(path: Path, text_columns: Sequence[str | None] = ()) -> pa.Table:
    """A CSV (comma; tab for .tsv/.txt/.inter) or Parquet file. ``text_columns`` are read
    as strings as written, so an id like ``007`` stays ``007``."""
    if not path.exists():
        raise InvalidInput(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path)
    delimiter = "\t" if suffix in (".tsv", ".txt", ".inter") else ","
    convert = pacsv.ConvertOptions(
        strings_can_be_null=True,
        column_types={c: pa.string() for c in text_columns if c},
    )
    return pacsv.read_csv(
        path, parse_options=pacsv.ParseOptions(delimiter=delimiter), convert_options=convert
    )


@dataclass(frozen=True)
class InteractionColumns:
    """Which file column feeds each event field; None means the file has no such column."""

    user_id: str | None = "user_id"
    session_id: str | None = "session_id"
    item_id: str = "item_id"
    event_type: str | None = "event_type"
    timestamp: str | None = "timestamp"
    event_value: str | None = "event_value"
    event_id: str | None = "event_id"
    default_event_type: str = "click"

    def text(self) -> list[str | None]:
        """The columns that hold ids and names, never numbers."""
        return [self.user_id, self.session_id, self.item_id, self.event_type, self.event_id]


def _stringify(table: pa.Table, name: str | None) -> list[Any] | None:
    """A column as Python values: ids as strings, numbers kept as numbers."""
    if name is None or name not in table.column_names:
        return None
    col = table.column(name)
    if (
        pa.types.is_integer(col.type)
        or pa.types.is_string(col.type)
        or pa.types.is_large_string(col.type)
    ):
        return col.cast(pa.string()).to_pylist()
    return col.to_pylist()


def _event_rows(table: pa.Table, cols: InteractionColumns) -> Iterator[dict[str, Any]]:
    if cols.item_id not in table.column_names:
        raise InvalidInput(
            f"the file has no column {cols.item_id!r} for item_id "
            f"(columns: {', '.join(table.column_names)})"
        )
    users = _stringify(table, cols.user_id)
    sessions = _stringify(table, cols.session_id)
    items = _stringify(table, cols.item_id) or []
    types = _stringify(table, cols.event_type)
    values = _stringify(table, cols.event_value)
    ids = _stringify(table, cols.event_id)
    times = (
        table.column(cols.timestamp).to_pylist() if cols.timestamp in table.column_names else None
    )
    if sessions is None and users is None:
        raise InvalidInput("the file needs a user or a session column")
    for i, item in enumerate(items):
        row: dict[str, Any] = {"item_id": item}
        user = users[i] if users else None
        if user is not None:
            row["user_id"] = user
        if sessions is not None:
            row["session_id"] = sessions[i]
        if times is not None and times[i] is not None:
            row["timestamp"] = times[i]
        if row.get("session_id") is None and user is not None:
            row["session_id"] = _daily_session(user, row.get("timestamp"))
        row["event_type"] = types[i] if types and types[i] else cols.default_event_type
        if values is not None and values[i] is not None:
            row["event_value"] = values[i]
        if ids is not None and ids[i] is not None:
            row["event_id"] = ids[i]
        yield row


_WHEN = TypeAdapter(datetime)


def _daily_session(user: str, timestamp: Any) -> str:
    """A session for files without one: the reader's UTC day (read the way events read
    their timestamps, so seconds and milliseconds agree); a bad time is left to validation."""
    try:
        t = to_unix(_WHEN.validate_python(timestamp)) if timestamp is not None else None
        day = datetime.fromtimestamp(t, UTC).strftime("%Y%m%d") if t is not None else "0"
    except (ValidationError, ValueError, OverflowError, OSError):
        day = "0"
    return f"{user}-{day}"


def _validated_chunks(
    table: pa.Table, cols: InteractionColumns, now: float
) -> Iterator[list[Event]]:
    """The file's events in batches, validated like live events (row numbers in errors)."""
    for start in range(0, table.num_rows, BATCH):
        rows = list(_event_rows(table.slice(start, BATCH), cols))
        events = parse_batch(Event, rows, first_index=start)
        check_times(events, now, first_index=start)
        yield events


def import_interactions(
    ingestor: Ingestor, path: Path, cols: InteractionColumns, progress: Progress = lambda n: None
) -> tuple[int, int, int]:
    """Validate the whole file, then ingest it batch by batch; nothing is written if any
    row is bad. Memory stays bounded: a batch at a time is held as Python objects (each
    row is validated twice, which costs less than holding millions of them).

    ``progress`` is told of each batch twice, once per pass. Returns (rows, accepted,
    duplicates).
    """
    table = read_table(path, cols.text())
    if cols.timestamp in table.column_names:
        table = table.sort_by(cols.timestamp)
    now = ingestor.clock.now()
    for events in _validated_chunks(table, cols, now):
        progress(len(events))
    accepted = duplicates = 0
    for events in _validated_chunks(table, cols, now):
        result = ingestor.ingest(events)
        accepted += result.accepted
        duplicates += result.duplicates
        progress(len(events))
    return table.num_rows, accepted, duplicates


def _split_list(value: Any, sep: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [v.strip() for v in str(value).split(sep) if v.strip()]


def item_records(path: Path, id_column: str = "item_id", list_sep: str = "|") -> list[Item]:
    """Items from a file; list columns (categories, tags) may be joined with ``list_sep``."""
    text = [id_column, "categories", "tags", "author", "title", "text", "url", "language"]
    table = read_table(path, text)
    if id_column not in table.column_names:
        raise InvalidInput(f"the file has no column {id_column!r} for item_id")
    table = table.rename_columns(["item_id" if c == id_column else c for c in table.column_names])
    for name in ("item_id", "author", "title", "text", "url", "language"):
        if name in table.column_names:
            idx = table.column_names.index(name)
            table = table.set_column(idx, name, pc.cast(table.column(name), pa.string()))
    known = set(Item.model_fields) - {"attributes"}
    rows = []
    for rec in table.to_pylist():
        row = {k: v for k, v in rec.items() if k in known and v is not None}
        for key in ("categories", "tags"):
            row[key] = _split_list(rec.get(key), list_sep)
        row["attributes"] = {k: v for k, v in rec.items() if k not in known and v is not None}
        rows.append(row)
    return parse_batch(Item, rows)
