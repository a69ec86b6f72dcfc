"""The columnar shape of a stored event, shared by the event log, the lake and training."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

EVENT_SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),  # position in the event log, strictly increasing, never reused
        ("event_id", pa.string()),
        ("timestamp", pa.float64()),  # event time, Unix seconds UTC
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("item_id", pa.string()),
        ("event_type", pa.string()),
        ("event_value", pa.float64()),
        ("recommendation_id", pa.string()),
        ("impression", pa.string()),  # JSON list, or null
        ("context", pa.string()),  # JSON object, or null
        ("properties", pa.string()),  # JSON object, or null
        ("received_at", pa.float64()),  # server time of acknowledgement, Unix seconds
    ]
)

EVENT_COLUMNS: tuple[str, ...] = tuple(EVENT_SCHEMA.names)


def reader_key(user_id: str | None, session_id: str) -> str:
    """Who a reader is: the user when known, else the anonymous session."""
    return f"u:{user_id}" if user_id else f"s:{session_id}"


def reader_column(table: pa.Table) -> pa.ChunkedArray:
    """``reader_key`` for every row of an event table, vectorized."""
    users = pc.binary_join_element_wise("u:", table.column("user_id"), "")
    sessions = pc.binary_join_element_wise("s:", table.column("session_id"), "")
    return pc.if_else(pc.is_null(table.column("user_id")), sessions, users)
