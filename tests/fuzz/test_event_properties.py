"""Property tests of event validation (core.types Event/EventBatch, ingestion.validation).

Through the real HTTP path (POST /v1/events on an engine of its own) where the property is
about what the API answers or stores, and on ``to_records`` directly where it is about
the stored form.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import assume, given
from hypothesis import strategies as st

from clickrec.api.app import create_app
from clickrec.core.errors import InvalidInput
from clickrec.core.types import MAX_FUTURE_SECONDS, Event, EventBatch
from clickrec.engine import Engine
from clickrec.ingestion.validation import to_records

from ._support import auth_header, fuzz_settings, make_engine

CONTROL = "".join(map(chr, range(0x20))) + "\x7f"
NOW = time.time()  # the newest valid time the strategies draw (tests run after it)
FIRST_DAY = datetime(1970, 1, 2)
LAST_DAY = datetime.fromtimestamp(NOW, UTC).replace(tzinfo=None) - timedelta(days=2)
MS_THRESHOLD = 2e10  # numbers above this are read as Unix milliseconds (like imports)
_UNIQUE = itertools.count()
Drawn = tuple[dict[str, Any], float | None]  # an event as sent, and its time in Unix seconds


class Api:
    def __init__(self, engine: Engine, client: TestClient) -> None:
        self.engine = engine
        self.client = client
        self.headers = auth_header(engine, "ingest")

    def post(self, body: bytes) -> Any:
        headers = {**self.headers, "content-type": "application/json"}
        return self.client.post("/v1/events", content=body, headers=headers)

    def post_events(self, events: list[dict[str, Any]]) -> Any:
        return self.post(json.dumps({"events": events}).encode())

    def stored_after(self, seq: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.engine.log.read(seq, 10_000).to_pylist()
        return rows


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    engine = make_engine(tmp_path_factory.mktemp("events") / "home")
    with TestClient(create_app(engine)) as client:
        yield Api(engine, client)
    engine.close()


# -- strategies --------------------------------------------------------------------------
# Ids: any unicode a JSON body can carry (no lone surrogates) except control characters.
id_chars = st.characters(codec="utf-8", exclude_characters=CONTROL)
ids = st.text(id_chars, min_size=1, max_size=256)
no_nul = st.characters(codec="utf-8", exclude_characters="\x00")
free_text = st.text(no_nul, max_size=256)
event_types = st.from_regex(r"[A-Za-z0-9_.:\-]{1,64}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
int64 = st.integers(-(2**63), 2**63 - 1)
map_keys = st.text(st.characters(codec="utf-8"), min_size=1, max_size=64)
scalars = st.one_of(st.none(), st.booleans(), int64, finite, st.text(no_nul, max_size=64))
offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))


@st.composite
def past_times(draw: st.DrawFn) -> tuple[Any, float]:
    """A valid (not future) event time as sent, and the Unix seconds it means."""
    kind = draw(st.sampled_from(["seconds", "int", "ms", "iso", "iso-naive"]))
    if kind == "seconds":
        t = draw(st.floats(0, NOW - 1))
        return t, t
    if kind == "int":
        s = draw(st.integers(0, int(NOW) - 1))
        return s, float(s)
    if kind == "ms":
        ms = draw(st.integers(int(MS_THRESHOLD) + 1, int(NOW * 1000) - 1000))
        return ms, ms / 1000
    dt = draw(st.datetimes(FIRST_DAY, LAST_DAY))
    if kind == "iso-naive":
        return dt.isoformat(), dt.replace(tzinfo=UTC).timestamp()
    aware = dt.replace(tzinfo=draw(offsets))
    return aware.isoformat(), aware.timestamp()


@st.composite
def future_times(draw: st.DrawFn) -> Any:
    """A time more than MAX_FUTURE_SECONDS ahead of the server's clock, in any accepted form."""
    # Fixed (strategies may not read the clock), with hours of slack for a long test run;
    # the boundary itself is tested without hypothesis below.
    horizon = NOW + 6 * 3600
    kind = draw(st.sampled_from(["seconds", "ms", "iso", "iso-naive"]))
    if kind == "seconds":
        return draw(st.floats(horizon, MS_THRESHOLD - 1))
    if kind == "ms":
        return draw(st.integers(int(horizon * 1000), 253_402_300_799_000))
    dt = draw(
        st.datetimes(
            datetime.fromtimestamp(horizon + 86_400, UTC).replace(tzinfo=None),
            datetime(9999, 12, 30),
        )
    )
    return (dt if kind == "iso-naive" else dt.replace(tzinfo=draw(offsets))).isoformat()


@st.composite
def valid_events(draw: st.DrawFn, with_id: bool | None = None) -> Drawn:
    """A valid event (as JSON) and the Unix seconds of its time (None: server's time)."""
    event: dict[str, Any] = {"session_id": draw(ids), "item_id": draw(ids)}
    if with_id if with_id is not None else draw(st.booleans()):
        # Unique per example: the log drops an id it has seen (a duplicate), by design.
        event["event_id"] = f"{next(_UNIQUE)}|{draw(st.text(id_chars, max_size=100))}"
    optional = {
        "user_id": ids,
        "event_type": event_types,
        "event_value": finite | st.integers(-(10**15), 10**15),
        "recommendation_id": st.text(no_nul, max_size=128),
        "impression": st.lists(ids, max_size=5),
        "context": st.dictionaries(map_keys, free_text, max_size=5),
        "properties": st.dictionaries(map_keys, scalars, max_size=6),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):  # null means "not given", except for event_type
            event[name] = draw(strategy if name == "event_type" else st.none() | strategy)
    when: float | None = None
    if draw(st.booleans()):
        event["timestamp"], when = draw(past_times())
    return event, when


# Any JSON, strings included with lone surrogates (json.dumps writes them as \\ud800 escapes).
any_text = st.text(max_size=20) | st.text(st.characters(exclude_categories=()), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=16,
)
EVENT_FIELDS = [*Event.model_fields, "colour"]


@st.composite
def near_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with some fields replaced by arbitrary JSON (reaches deep validation)."""
    event, _ = draw(valid_events())
    for name in draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=3)):
        event[name] = draw(json_values)
    return event


bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"events": json_values}),
    st.fixed_dictionaries({"events": st.lists(near_events(), min_size=1, max_size=4)}),
)


# -- properties --------------------------------------------------------------------------
def assert_clean_4xx(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body


@fuzz_settings(150)
@given(body=bodies)
def test_any_json_body_is_accepted_or_refused_never_a_5xx(api: Api, body: Any) -> None:
    response = api.post(json.dumps(body).encode())
    if response.status_code == 202:
        accepted = response.json()
        assert accepted["accepted"] + accepted["duplicates"] == len(body["events"])
    else:
        assert_clean_4xx(response)


@fuzz_settings(60)
@given(raw=st.binary(max_size=200))
def test_any_bytes_are_refused_cleanly(api: Api, raw: bytes) -> None:
    response = api.post(raw)
    assert response.status_code in (202, 400, 422), response.text
    if response.status_code != 202:
        assert_clean_4xx(response)


INVALID: list[tuple[str, Any]] = [
    ("item_id", ""),
    ("session_id", "a\x00b"),
    ("user_id", "x" * 257),
    ("event_type", "has space"),
    ("event_value", "NaN"),
    ("timestamp", "1969-12-31T23:59:59Z"),
    ("timestamp", NOW + 365 * 86_400),
    ("impression", ["i"] * 501),
    ("context", {"k": 1}),
    ("properties", {"k" * 65: 1}),
    ("properties", {"big": 2**64}),
    ("colour", "red"),
    ("session_id", None),
]


@fuzz_settings(60)
@given(
    batch=st.lists(valid_events(with_id=False), min_size=1, max_size=8),
    data=st.data(),
    bad=st.sampled_from(INVALID),
)
def test_one_invalid_event_fails_the_whole_batch_and_is_named(
    api: Api, batch: list[Drawn], data: st.DataObject, bad: tuple[str, Any]
) -> None:
    events = [e for e, _ in batch]
    index = data.draw(st.integers(0, len(events)), label="index")
    field, value = bad
    invalid = dict(data.draw(valid_events(with_id=False))[0])
    invalid[field] = value
    events.insert(index, invalid)
    before = api.engine.log.last_seq()
    response = api.post_events(events)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors and {e["index"] for e in errors} == {index}, errors
    assert {e["field"].split(".")[0] for e in errors} == {field}, errors
    assert api.engine.log.last_seq() == before


def assert_stored_as_sent(row: dict[str, Any], sent: dict[str, Any], when: float | None) -> None:
    for name in ("user_id", "session_id", "item_id", "recommendation_id"):
        assert row[name] == sent.get(name)
    if "event_id" in sent:
        assert row["event_id"] == sent["event_id"]
    assert row["event_type"] == (sent.get("event_type") or "click")
    value = sent.get("event_value")
    assert row["event_value"] == (None if value is None else float(value))
    for name in ("impression", "context", "properties"):
        if sent.get(name) is None:
            assert row[name] is None
        else:  # the same JSON: types kept (1 stays 1, 1.0 stays 1.0, true stays true)
            assert orjson.dumps(orjson.loads(row[name])) == orjson.dumps(sent[name])
    if when is None:
        assert row["timestamp"] == row["received_at"]
    else:
        assert abs(row["timestamp"] - when) <= 1e-6, (row["timestamp"], when, sent["timestamp"])


@fuzz_settings(80)
@given(batch=st.lists(valid_events(), min_size=1, max_size=6))
def test_valid_events_round_trip(api: Api, batch: list[Drawn]) -> None:
    before = api.engine.log.last_seq()
    response = api.post_events([e for e, _ in batch])
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": len(batch), "duplicates": 0}
    rows = api.stored_after(before)
    assert len(rows) == len(batch)
    for row, (sent, when) in zip(rows, batch, strict=True):
        assert_stored_as_sent(row, sent, when)


@fuzz_settings(80)
@given(user=ids, session=ids, item=ids, event_id=st.text(id_chars, min_size=1, max_size=100))
def test_unicode_ids_are_accepted_and_stored_byte_exact(
    api: Api, user: str, session: str, item: str, event_id: str
) -> None:
    unique = f"{next(_UNIQUE)}|{event_id}"
    event = {"event_id": unique, "user_id": user, "session_id": session, "item_id": item}
    before = api.engine.log.last_seq()
    # As UTF-8 on the wire (not \u escapes): the bytes a browser would send.
    body = json.dumps({"events": [event]}, ensure_ascii=False).encode()
    response = api.post(body)
    assert response.status_code == 202, response.text
    (row,) = api.stored_after(before)
    for name, sent in event.items():
        assert row[name].encode() == sent.encode(), name


@fuzz_settings(40)
@given(
    name=st.sampled_from(["user_id", "session_id", "item_id", "event_id"]),
    head=st.text(id_chars, max_size=10),
    control=st.sampled_from(CONTROL),
    tail=st.text(id_chars, max_size=10),
)
def test_ids_with_a_control_character_are_refused(
    api: Api, name: str, head: str, control: str, tail: str
) -> None:
    event = {"session_id": "s", "item_id": "i", name: head + control + tail}
    before = api.engine.log.last_seq()
    response = api.post_events([event])
    assert response.status_code == 422, response.text
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(0, name)]
    assert api.engine.log.last_seq() == before


@fuzz_settings(60)
@given(batch=st.lists(valid_events(with_id=False), min_size=1, max_size=6), data=st.data())
def test_times_more_than_300_s_ahead_are_refused(
    api: Api, batch: list[Drawn], data: st.DataObject
) -> None:
    events = [e for e, _ in batch]
    late = data.draw(st.sets(st.integers(0, len(events) - 1), min_size=1), label="late")
    for i in late:
        events[i] = {**events[i], "timestamp": data.draw(future_times(), label=f"t{i}")}
    before = api.engine.log.last_seq()
    response = api.post_events(events)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    named = sorted((e["index"], e["field"]) for e in errors)
    assert named == [(i, "timestamp") for i in sorted(late)]
    assert api.engine.log.last_seq() == before


def test_the_limit_is_300_s(api: Api) -> None:
    inside = time.time() + MAX_FUTURE_SECONDS - 30
    response = api.post_events([{"session_id": "s", "item_id": "i", "timestamp": inside}])
    assert response.status_code == 202, response.text
    before = api.engine.log.last_seq()
    outside = time.time() + MAX_FUTURE_SECONDS + 30
    response = api.post_events([{"session_id": "s", "item_id": "i", "timestamp": outside}])
    assert response.status_code == 422, response.text
    assert api.engine.log.last_seq() == before


# -- the stored form, without HTTP --------------------------------------------------------
@fuzz_settings(150)
@given(batch=st.lists(valid_events(), min_size=1, max_size=6), skew=st.floats(-2e9, 1e6))
def test_to_records_keeps_every_field_and_checks_times(batch: list[Drawn], skew: float) -> None:
    """With the server's clock at ``now``: refused, naming exactly the events dated more
    than 300 s after it (offset by ``first_index``), or stored field for field."""
    parsed = EventBatch.model_validate({"events": [e for e, _ in batch]}).events
    now = NOW + skew
    limit = now + MAX_FUTURE_SECONDS
    assume(all(when is None or abs(when - limit) > 1e-3 for _, when in batch))
    late = [7 + i for i, (_, when) in enumerate(batch) if when is not None and when > limit]
    if late:
        with pytest.raises(InvalidInput) as refused:
            to_records(parsed, now, first_index=7)
        named = [(e.index, e.field) for e in refused.value.errors]
        assert named == [(i, "timestamp") for i in late]
        return
    records = to_records(parsed, now, first_index=7)
    assert len({r["event_id"] for r in records}) == len(records)
    for record, (sent, when) in zip(records, batch, strict=True):
        assert record["_fresh_id"] == ("event_id" not in sent)
        assert record["received_at"] == now
        assert_stored_as_sent(record, sent, when)  # no time given: the server's ``now``
