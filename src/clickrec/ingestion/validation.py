"""Turning client input into stored records: validation with errors that name each field."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from clickrec.core.errors import FieldError, InvalidInput
from clickrec.core.types import MAX_FUTURE_SECONDS, Event, to_unix


def field_errors(exc: ValidationError, index: int | None = None, skip: int = 0) -> list[FieldError]:
    """Pydantic errors as (index, field, message); ``skip`` drops leading loc parts."""
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = list(err["loc"])[skip:]
        idx = index
        if idx is None and loc and isinstance(loc[0], int):
            idx = int(loc.pop(0))
        out.append(FieldError(idx, ".".join(str(p) for p in loc), err["msg"]))
    return out


def parse_batch(model: type[BaseModel], rows: Sequence[Any], first_index: int = 0) -> list[Any]:
    """Validate every row; raise one InvalidInput naming every bad index and field."""
    parsed, errors = [], []
    for i, row in enumerate(rows):
        try:
            parsed.append(model.model_validate(row))
        except ValidationError as exc:
            errors.extend(field_errors(exc, first_index + i))
    if errors:
        raise InvalidInput(errors)
    return parsed


def check_times(events: Sequence[Event], now: float, first_index: int = 0) -> None:
    """Refuse events dated more than five minutes in the future."""
    limit = now + MAX_FUTURE_SECONDS
    late = [
        first_index + i
        for i, e in enumerate(events)
        if e.timestamp is not None and (to_unix(e.timestamp) or 0.0) > limit
    ]
    if late:
        raise _too_late(late)


def _too_late(indices: list[int]) -> InvalidInput:
    message = f"is more than {int(MAX_FUTURE_SECONDS)} seconds in the future"
    return InvalidInput([FieldError(i, "timestamp", message) for i in indices])


_PROCESS_TAG = secrets.token_hex(5)  # tells apart ids made by different processes
_COUNTER = itertools.count()  # next() is atomic under the interpreter lock


def new_event_id(now: float) -> str:
    """A server-made id: time-ordered (so the log's unique index grows at its end, which
    keeps appends cheap), then a per-process tag and counter, so it is unique without a
    system call per event."""
    return f"{int(now * 1_000_000):014x}{_PROCESS_TAG}{next(_COUNTER) & 0xFFFFFF:06x}"


def to_record(event: Event, now: float) -> dict[str, Any]:
    """The stored form of one event (EVENT_SCHEMA columns without ``seq``)."""
    return to_records([event], now, check=False)[0]


def to_records(
    events: Sequence[Event], now: float, first_index: int = 0, check: bool = True
) -> list[dict[str, Any]]:
    """The stored form of a batch, in one pass (the ingest hot path: each event's time is
    converted once). With ``check``, refuses the batch if any event is dated more than five
    minutes in the future, naming every such index."""
    limit = now + MAX_FUTURE_SECONDS
    id_head = f"{int(now * 1_000_000):014x}{_PROCESS_TAG}"
    counter = _COUNTER
    dumps = orjson.dumps
    records, late = [], []
    for i, e in enumerate(events):
        ts = now if e.timestamp is None else (to_unix(e.timestamp) or 0.0)
        if check and ts > limit:
            late.append(first_index + i)
        records.append(
            {
                "_fresh_id": e.event_id is None,
                "event_id": e.event_id or f"{id_head}{next(counter) & 0xFFFFFF:06x}",
                "timestamp": ts,
                "user_id": e.user_id,
                "session_id": e.session_id,
                "item_id": e.item_id,
                "event_type": e.event_type,
                "event_value": e.event_value,
                "recommendation_id": e.recommendation_id,
                "impression": None if e.impression is None else dumps(e.impression).decode(),
                "context": None if e.context is None else dumps(e.context).decode(),
                "properties": None if e.properties is None else dumps(e.properties).decode(),
                "received_at": now,
            }
        )
    if late:
        raise _too_late(late)
    return records
