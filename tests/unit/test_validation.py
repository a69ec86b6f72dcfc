"""Validation: bounded events, items and users; batch errors that name every index and field."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from clickrec.core.errors import InvalidInput
from clickrec.core.types import (
    MAX_FUTURE_SECONDS,
    Event,
    EventBatch,
    Item,
    User,
    to_unix,
)
from clickrec.ingestion.validation import check_times, parse_batch, to_record

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def ev(**fields) -> dict:
    return {"session_id": "s1", "item_id": "p1", **fields}


def error_fields(exc: pytest.ExceptionInfo) -> list[tuple[int | None, str]]:
    return [(e.index, e.field) for e in exc.value.errors]


# -- the event model ---------------------------------------------------------------------------


def test_a_minimal_event_gets_defaults() -> None:
    e = Event.model_validate(ev())
    assert e.event_type == "click"
    assert e.user_id is None and e.timestamp is None and e.event_id is None


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        Event.model_validate(ev(itemId="p2"))
    assert exc.value.errors()[0]["loc"] == ("itemId",)


@pytest.mark.parametrize("field", ["session_id", "item_id"])
def test_required_ids_must_be_present_and_non_empty(field: str) -> None:
    missing = ev()
    del missing[field]
    for bad in (missing, ev(**{field: ""})):
        with pytest.raises(ValidationError) as exc:
            Event.model_validate(bad)
        assert exc.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("item_id", 256),
        ("session_id", 256),
        ("user_id", 256),
        ("event_id", 128),
        ("recommendation_id", 128),
        ("event_type", 64),
    ],
)
def test_strings_are_bounded(field: str, limit: int) -> None:
    assert getattr(Event.model_validate(ev(**{field: "x" * limit})), field) == "x" * limit
    with pytest.raises(ValidationError) as exc:
        Event.model_validate(ev(**{field: "x" * (limit + 1)}))
    assert exc.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("good", ["view", "read", "page.view", "add-to-cart", "v2:share_x"])
def test_event_types_that_are_accepted(good: str) -> None:
    assert Event.model_validate(ev(event_type=good)).event_type == good


@pytest.mark.parametrize("bad", ["", "page view", "read!", "<script>", "é", "a/b"])
def test_event_types_that_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        Event.model_validate(ev(event_type=bad))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_event_value_must_be_finite(value: float) -> None:
    with pytest.raises(ValidationError) as exc:
        Event.model_validate(ev(event_value=value))
    assert exc.value.errors()[0]["loc"] == ("event_value",)
    assert Event.model_validate(ev(event_value=42.5)).event_value == 42.5


def test_context_is_a_small_string_map() -> None:
    ok = {f"k{i}": "v" for i in range(20)}
    assert Event.model_validate(ev(context=ok)).context == ok
    for bad in (
        {f"k{i}": "v" for i in range(21)},  # too many keys
        {"device": "x" * 257},  # value too long
        {"k" * 65: "v"},  # key too long
        {"": "v"},  # empty key
        {"n": 3},  # not a string
    ):
        with pytest.raises(ValidationError) as exc:
            Event.model_validate(ev(context=bad))
        assert exc.value.errors()[0]["loc"][0] == "context"


def test_properties_are_a_small_scalar_map() -> None:
    ok = {"depth": 0.8, "logged_in": True, "n": 3, "label": "x", "none": None}
    assert Event.model_validate(ev(properties=ok)).properties == ok
    for bad in (
        {f"k{i}": 1 for i in range(51)},
        {"text": "x" * 1025},
        {"depth": math.nan},
        {"nested": {"a": 1}},
        {"list": [1, 2]},
    ):
        with pytest.raises(ValidationError) as exc:
            Event.model_validate(ev(properties=bad))
        assert exc.value.errors()[0]["loc"][0] == "properties"


def test_impressions_are_bounded() -> None:
    assert len(Event.model_validate(ev(impression=["p"] * 500)).impression) == 500
    for bad in (["p"] * 501, ["ok", ""], ["x" * 257]):
        with pytest.raises(ValidationError):
            Event.model_validate(ev(impression=bad))


def test_events_are_immutable() -> None:
    e = Event.model_validate(ev())
    with pytest.raises(ValidationError):
        e.item_id = "other"  # type: ignore[misc]


def test_a_batch_holds_one_to_a_thousand_events() -> None:
    assert len(EventBatch.model_validate({"events": [ev()] * 1000}).events) == 1000
    for n in (0, 1001):
        with pytest.raises(ValidationError):
            EventBatch.model_validate({"events": [ev()] * n})


# -- times -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "2026-01-01T10:00:00",  # no zone: UTC
        "2026-01-01T10:00:00Z",
        "2026-01-01T11:00:00+01:00",
        1_767_261_600,  # Unix seconds
        1_767_261_600.0,
        datetime(2026, 1, 1, 10, 0, 0),  # naive datetime: UTC
        datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC),
    ],
)
def test_times_are_unix_seconds_and_naive_ones_are_utc(given: object) -> None:
    e = Event.model_validate(ev(timestamp=given))
    assert to_unix(e.timestamp) == 1_767_261_600.0
    assert to_record(e, now=NOW)["timestamp"] == 1_767_261_600.0


def test_to_unix_passes_numbers_and_none_through() -> None:
    assert to_unix(None) is None
    assert to_unix(5) == 5.0
    assert to_unix(datetime(1970, 1, 1, 0, 0, 10)) == 10.0


def test_check_times_refuses_events_more_than_five_minutes_ahead() -> None:
    events = [
        Event.model_validate(ev(timestamp=NOW + MAX_FUTURE_SECONDS - 1)),  # clock skew: fine
        Event.model_validate(ev(timestamp=NOW + MAX_FUTURE_SECONDS + 1)),
        Event.model_validate(ev()),  # no time: the server's
        Event.model_validate(ev(timestamp=NOW - 10 * 365 * 86400)),  # the past is fine
        Event.model_validate(ev(timestamp=NOW + 86400)),
    ]
    with pytest.raises(InvalidInput) as exc:
        check_times(events, now=NOW, first_index=10)
    assert error_fields(exc) == [(11, "timestamp"), (14, "timestamp")]
    assert "300 seconds in the future" in exc.value.errors[0].message

    check_times([events[0], events[2], events[3]], now=NOW)  # nothing raised


# -- batches ---------------------------------------------------------------------------------


def test_parse_batch_names_every_bad_index_and_field_together() -> None:
    rows = [
        ev(),
        ev(item_id=""),
        ev(event_type="page view", event_value=math.inf),
        {"item_id": "p1", "bogus": 1},
        ev(timestamp="yesterday"),
        "not an object",
    ]
    with pytest.raises(InvalidInput) as exc:
        parse_batch(Event, rows, first_index=100)

    got = set(error_fields(exc))
    assert got == {
        (101, "item_id"),
        (102, "event_type"),
        (102, "event_value"),
        (103, "session_id"),
        (103, "bogus"),
        (104, "timestamp"),
        (105, ""),
    }
    assert all(e.message for e in exc.value.errors)
    assert "item_id" in str(exc.value)
    assert exc.value.errors[0].as_dict().keys() == {"index", "field", "message"}


def test_parse_batch_nested_field_names_use_dots() -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_batch(Event, [ev(impression=["ok", ""])])
    assert error_fields(exc) == [(0, "impression.1")]


def test_parse_batch_returns_models_when_all_are_valid() -> None:
    parsed = parse_batch(Event, [ev(), ev(item_id="p2", user_id="u1")])
    assert [e.item_id for e in parsed] == ["p1", "p2"]
    assert all(isinstance(e, Event) for e in parsed)


# -- the stored record -------------------------------------------------------------------------


def test_to_record_fills_event_id_and_server_time() -> None:
    e = Event.model_validate(ev(context={"device": "mobile"}, impression=["p2", "p3"]))

    rec = to_record(e, now=NOW)
    again = to_record(e, now=NOW + 1)

    assert rec["timestamp"] == NOW
    assert rec["received_at"] == NOW
    assert len(rec["event_id"]) == 30 and int(rec["event_id"], 16) >= 0
    assert again["event_id"] != rec["event_id"]
    assert again["event_id"] > rec["event_id"]  # time-ordered, so the log index appends
    assert rec["_fresh_id"] is True
    assert rec["context"] == '{"device":"mobile"}'
    assert rec["impression"] == '["p2","p3"]'
    assert rec["properties"] is None and rec["user_id"] is None
    assert rec["event_type"] == "click"


def test_to_record_keeps_what_the_client_sent() -> None:
    e = Event.model_validate(
        ev(event_id="client-1", timestamp=NOW - 60, user_id="u1", properties={"d": 0.5})
    )
    rec = to_record(e, now=NOW)
    assert rec["event_id"] == "client-1"
    assert rec["timestamp"] == NOW - 60
    assert rec["received_at"] == NOW
    assert rec["user_id"] == "u1"
    assert rec["properties"] == '{"d":0.5}'
    from clickrec.core.schema import EVENT_COLUMNS

    assert set(rec) == set(EVENT_COLUMNS) - {"seq"} | {"_fresh_id"}
    assert rec["_fresh_id"] is False  # the client named it: the log checks for duplicates


# -- items and users -------------------------------------------------------------------------


def item(**fields) -> dict:
    return {"item_id": "p1", **fields}


@pytest.mark.parametrize(
    ("field", "ok", "bad"),
    [
        ("item_id", "x" * 256, "x" * 257),
        ("categories", ["c"] * 20, ["c"] * 21),
        ("tags", ["t"] * 50, ["t"] * 51),
        ("title", "x" * 1000, "x" * 1001),
        ("text", "x" * 20000, "x" * 20001),
        ("url", "x" * 2048, "x" * 2049),
        ("author", "x" * 256, "x" * 257),
        ("language", "pt-BR", "x" * 17),
        ("attributes", {f"k{i}": 1 for i in range(50)}, {f"k{i}": 1 for i in range(51)}),
        ("attributes", {"s": "x" * 1024}, {"s": "x" * 1025}),
        ("categories", ["x" * 128], ["x" * 129]),
        ("categories", ["news"], [""]),
    ],
)
def test_item_limits(field: str, ok: object, bad: object) -> None:
    assert getattr(Item.model_validate(item(**{field: ok})), field) == ok
    with pytest.raises(ValidationError) as exc:
        Item.model_validate(item(**{field: bad}))
    assert exc.value.errors()[0]["loc"][0] == field


def test_item_refuses_unknown_fields_and_empty_ids() -> None:
    for bad in (item(category="news"), item(item_id=""), {"title": "no id"}):
        with pytest.raises(ValidationError):
            Item.model_validate(bad)


def test_item_record_has_unix_times_naive_ones_as_utc() -> None:
    rec = Item.model_validate(
        item(published_at="2026-01-01T10:00:00", expires_at="2026-01-02T10:00:00+00:00")
    ).to_record()
    assert rec["published_at"] == 1_767_261_600.0
    assert rec["expires_at"] == 1_767_261_600.0 + 86400
    assert rec["categories"] == [] and rec["attributes"] == {}
    assert Item.model_validate(item()).to_record()["published_at"] is None


def test_user_limits() -> None:
    assert User.model_validate({"user_id": "u1"}).attributes == {}
    User.model_validate({"user_id": "u" * 256, "attributes": {f"k{i}": i for i in range(50)}})
    for bad in (
        {"user_id": ""},
        {"user_id": "u" * 257},
        {"user_id": "u1", "attributes": {f"k{i}": i for i in range(51)}},
        {"user_id": "u1", "attributes": {"bio": "x" * 1025}},
        {"user_id": "u1", "attributes": {"score": math.inf}},
        {"user_id": "u1", "plan": "pro"},
    ):
        with pytest.raises(ValidationError):
            User.model_validate(bad)
