"""Domain types: what a client sends (events, items, users) and what it gets back.

Every string, list and map has a bound, so one request can never make the engine hold
an unbounded amount of memory. Times are accepted as Unix seconds or ISO 8601; a time
without a zone is taken as UTC.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

# Ids and tags hold no control characters (a NUL would be cut by SQLite and refused by
# PostgreSQL); free text holds no NUL.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"
_NO_NUL = r"^[^\x00]*$"


Id = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_NO_CONTROL)]
ShortStr = Annotated[str, StringConstraints(max_length=256, pattern=_NO_NUL)]
EventType = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_NO_CONTROL)]
Scalar = str | float | int | bool | None

MAX_EVENTS_PER_BATCH = 1000
MAX_ITEMS_PER_BATCH = 1000
MAX_FUTURE_SECONDS = 300.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def to_unix(value: datetime | float | int | None) -> float | None:
    """Unix seconds from a datetime (naive means UTC) or a number."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)


def _bounded(max_keys: int, max_len: int) -> AfterValidator:
    """A validator that bounds a map's keys and its string values."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        _check_map(value, max_keys, max_len)
        return value

    return AfterValidator(check)


Context = Annotated[dict[str, ShortStr], _bounded(20, 256)]
Properties = Annotated[dict[str, Scalar], _bounded(50, 1024)]
Attributes = Annotated[dict[str, Scalar], _bounded(50, 1024)]


FilterName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
FilterValues = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")],
        Annotated[str, StringConstraints(max_length=2500)],
    ],
    Field(max_length=25),
]


_ColumnName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")]
MetadataColumns = Annotated[list[_ColumnName], Field(max_length=20)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _encodable(text: str) -> bool:
    """False for strings with lone surrogates (JSON can carry them; UTF-8 cannot)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_map(value: dict[str, Any] | None, max_keys: int, max_len: int) -> None:
    if value is None:
        return
    if len(value) > max_keys:
        raise ValueError(f"at most {max_keys} keys")
    for k, v in value.items():
        if not k or len(k) > 64:
            raise ValueError("keys must be 1 to 64 characters")
        if not _encodable(k) or (isinstance(v, str) and not _encodable(v)):
            raise ValueError(f"key or value of {k!r} is not valid Unicode (a lone surrogate)")
        if isinstance(v, str) and len(v) > max_len:
            raise ValueError(f"value of {k!r} is longer than {max_len} characters")
        if isinstance(v, str) and "\x00" in v:
            raise ValueError(f"value of {k!r} contains a NUL character")
        if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
            raise ValueError(f"value of {k!r} is outside the 64-bit integer range")
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"value of {k!r} must be a finite number")


class Event(Strict):
    """One interaction of a reader with an item (a view, a click, a read, a share…)."""

    event_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=_NO_CONTROL)] | None
    ) = None
    user_id: Id | None = None
    session_id: Id
    item_id: Id
    event_type: EventType = "click"
    event_value: float | None = Field(default=None, allow_inf_nan=False)
    timestamp: datetime | None = None
    recommendation_id: Annotated[str, StringConstraints(max_length=128, pattern=_NO_NUL)] | None = (
        None
    )
    impression: list[Id] | None = Field(default=None, max_length=500)
    context: Context | None = None
    properties: Properties | None = None

    @field_validator("timestamp")
    @classmethod
    def _not_before_epoch(cls, value: datetime | None) -> datetime | None:
        if value is not None and value < (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH):
            raise ValueError("is before 1970-01-01")
        return value


class EventBatch(Strict):
    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)


class Item(Strict):
    """A post in the catalog."""

    item_id: Id
    published_at: datetime | None = None
    categories: list[Tag] = Field(default_factory=list, max_length=20)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    author: ShortStr | None = None
    title: Annotated[str, StringConstraints(max_length=1000, pattern=_NO_NUL)] | None = None
    text: Annotated[str, StringConstraints(max_length=20000, pattern=_NO_NUL)] | None = None
    url: Annotated[str, StringConstraints(max_length=2048, pattern=_NO_NUL)] | None = None
    language: Annotated[str, StringConstraints(max_length=16, pattern=_NO_NUL)] | None = None
    expires_at: datetime | None = None
    attributes: Attributes = Field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        """The stored form: times as Unix seconds."""
        rec = self.model_dump()
        rec["published_at"] = to_unix(self.published_at)
        rec["expires_at"] = to_unix(self.expires_at)
        return rec


class ItemBatch(Strict):
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS_PER_BATCH)


class User(Strict):
    user_id: Id
    attributes: Attributes = Field(default_factory=dict)


class UserBatch(Strict):
    users: list[User] = Field(min_length=1, max_length=MAX_ITEMS_PER_BATCH)


class ScoredItem(BaseModel):
    item_id: str
    score: float


class Recommendation(BaseModel):
    recommendation_id: str
    model_version: str | None
    recipe: str
    items: list[ScoredItem]
