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
    errors = [
        FieldError(
            first_index + i,
            "timestamp",
            f"is more than {int(MAX_FUTURE_SECONDS)} seconds in the future",
        )
        for i, e in enumerate(events)
        if e.timestamp is not None and (to_unix(e.timestamp) or 0.0) > now + MAX_FUTURE_SECONDS
    ]
    if errors:
        raise InvalidInput(errors)


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


_PROCESS_TAG = secrets.token_hex(5)  # tells apart ids made by different processes
_COUNTER = itertools.count()  # next() is atomic under the interpreter lock


def new_event_id(now: float) -> str:
    """A server-made id: time-ordered (so the log's unique index grows at its end, which
    keeps appends cheap), then a per-process tag and counter, so it is unique without a
    system call per event."""
    return f"{int(now * 1_000_000):014x}{_PROCESS_TAG}{next(_COUNTER) & 0xFFFFFF:06x}"


def to_record(event: Event, now: float) -> dict[str, Any]:
    """The stored form of an event (EVENT_SCHEMA columns without ``seq``)."""
    return {
        "_fresh_id": event.event_id is None,
        "event_id": event.event_id or new_event_id(now),
        "timestamp": to_unix(event.timestamp) if event.timestamp is not None else now,
        "user_id": event.user_id,
        "session_id": event.session_id,
        "item_id": event.item_id,
        "event_type": event.event_type,
        "event_value": event.event_value,
        "recommendation_id": event.recommendation_id,
        "impression": _json(event.impression),
        "context": _json(event.context),
        "properties": _json(event.properties),
        "received_at": now,
    }
