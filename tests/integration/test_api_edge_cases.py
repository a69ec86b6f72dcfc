"""Odd but possible input to the HTTP API: numbers JSON allows and the stores cannot hold,
repeated ids in one batch, ids with a slash or a NUL, a year-1 timestamp, a body that is
not JSON. Each gets a 4xx with a clear message or is stored as sent, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.engine import Engine

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


@pytest.fixture
def lenient(engine: Engine) -> Iterator[TestClient]:
    """A client that returns 500s as responses instead of raising them in the test."""
    with TestClient(create_app(engine), raise_server_exceptions=False) as c:
        yield c


def event(item: str, session: str = "s1", **extra: object) -> dict:
    return {"session_id": session, "item_id": item, **extra}


def test_huge_integer_in_event_properties_is_a_4xx(lenient: TestClient, keys: H) -> None:
    body = {"events": [event("a", properties={"n": 10**30})]}
    response = lenient.post("/v1/events", json=body, headers=keys["ingest"])
    assert response.status_code == 422  # orjson cannot store it: refused, not a 500


def test_huge_integer_in_item_attributes_is_a_4xx(lenient: TestClient, keys: H) -> None:
    body = {"items": [{"item_id": "i1", "attributes": {"n": -(10**20)}}]}
    response = lenient.put("/v1/items", json=body, headers=keys["ingest"])
    assert response.status_code == 422


def test_item_batch_with_a_repeated_id_is_not_a_500(lenient: TestClient, keys: H) -> None:
    body = {"items": [{"item_id": "i1", "title": "old"}, {"item_id": "i1", "title": "new"}]}
    response = lenient.put("/v1/items", json=body, headers=keys["ingest"])
    assert response.status_code < 500


def test_user_batch_with_a_repeated_id_is_not_a_500(lenient: TestClient, keys: H) -> None:
    body = {"users": [{"user_id": "u1"}, {"user_id": "u1"}]}
    response = lenient.put("/v1/users", json=body, headers=keys["ingest"])
    assert response.status_code < 500


def test_an_item_id_with_a_slash_can_be_read_back(client: TestClient, keys: H) -> None:
    item = "2024/05/my-post"
    body = {"items": [{"item_id": item, "categories": ["news"]}]}
    assert client.put("/v1/items", json=body, headers=keys["ingest"]).status_code == 200
    response = client.get("/v1/items/2024%2F05%2Fmy-post", headers=keys["read"])
    assert response.status_code == 200  # the encoded slash stays in the id, not the route


def test_an_id_with_a_nul_character_is_stored_as_sent_or_refused(
    client: TestClient, keys: H, engine: Engine
) -> None:
    response = client.post("/v1/events", json={"events": [event("x\x00y")]}, headers=keys["ingest"])
    if response.status_code == 202:
        stored = engine.log.read(0, 10, ["item_id"]).column("item_id").to_pylist()
        assert stored == ["x\x00y"]  # not cut at the NUL, or the live state and log disagree
    else:
        assert response.status_code == 422


def test_an_accepted_event_can_be_archived(client: TestClient, keys: H, engine: Engine) -> None:
    # A year-1 event would jam the archive on every pass: refused at the door instead.
    body = {"events": [event("a", timestamp="0001-01-01T00:00:00+01:00"), event("b")]}
    refused = client.post("/v1/events", json=body, headers=keys["ingest"])
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "timestamp"
    body = {"events": [event("a", timestamp="1970-01-02T00:00:00Z"), event("b")]}
    assert client.post("/v1/events", json=body, headers=keys["ingest"]).status_code == 202
    assert engine.archive.run_once() == 2


def test_malformed_event_body_message(client: TestClient, keys: H) -> None:
    response = client.post("/v1/events", content=b"{not json", headers=keys["ingest"])
    assert response.status_code == 400
    assert response.json() == {"error": "request body is not valid JSON"}
