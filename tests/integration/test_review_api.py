"""Regression tests for review findings on the HTTP API and the stores behind it (all fixed)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
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
    assert response.status_code == 422  # is 500: orjson cannot dump it in to_record


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
    assert response.status_code == 200  # is 404 "Not Found" (no route matches)


def test_an_id_with_a_nul_character_is_stored_as_sent_or_refused(
    client: TestClient, keys: H, engine: Engine
) -> None:
    response = client.post("/v1/events", json={"events": [event("x\x00y")]}, headers=keys["ingest"])
    if response.status_code == 202:
        stored = engine.log.read(0, 10, ["item_id"]).column("item_id").to_pylist()
        assert stored == ["x\x00y"]  # is ["x"]: the live state and the log disagree
    else:
        assert response.status_code == 422


def test_an_accepted_event_can_be_archived(client: TestClient, keys: H, engine: Engine) -> None:
    # A year-1 event used to be accepted and then jam the archive on every pass.
    body = {"events": [event("a", timestamp="0001-01-01T00:00:00+01:00"), event("b")]}
    refused = client.post("/v1/events", json=body, headers=keys["ingest"])
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "timestamp"
    body = {"events": [event("a", timestamp="1970-01-02T00:00:00Z"), event("b")]}
    assert client.post("/v1/events", json=body, headers=keys["ingest"]).status_code == 202
    assert engine.archive.run_once() == 2


def test_a_slow_background_catalog_refresh_cannot_undo_a_deletion(
    client: TestClient, keys: H, engine: Engine
) -> None:
    rec = engine.recommender
    assert rec is not None
    body = {"items": [{"item_id": "p1"}, {"item_id": "p2"}]}
    assert client.put("/v1/items", json=body, headers=keys["ingest"]).status_code == 200
    catalog = engine.catalog
    real = catalog.items_changed_since
    fetched, release = threading.Event(), threading.Event()

    def slow_for_background(change_seq: int, limit: int = 10_000) -> list:
        rows = real(change_seq, limit)
        if threading.current_thread().name == "stale-refresher":
            fetched.set()
            release.wait(5)
        return rows

    # The background refresher read the catalog just before the deletion committed …
    rec._catalog_seq = 0
    catalog.items_changed_since = slow_for_background  # type: ignore[method-assign]
    background = threading.Thread(target=rec.refresh_catalog, name="stale-refresher")
    background.start()
    assert fetched.wait(5)
    # … a request deletes p1 and applies the deletion itself …
    assert client.delete("/v1/items/p1", headers=keys["ingest"]).status_code == 200
    assert rec.state.deleted[rec.state.item_index["p1"]]
    # … then the background pass applies the rows it read before the deletion.
    release.set()
    background.join(5)
    catalog.items_changed_since = real  # type: ignore[method-assign]
    rec.refresh_catalog()
    assert rec.state.deleted[rec.state.item_index["p1"]]  # p1 is served again, for good
    ids = [i["item_id"] for i in client.get("/v1/trending", headers=keys["read"]).json()["items"]]
    assert "p1" not in ids


def test_concurrent_catalog_writes_get_distinct_change_seqs(engine: Engine) -> None:
    catalog = engine.catalog
    catalog.upsert_items([{"item_id": "old"}], 1.0)
    barrier = threading.Barrier(2, timeout=5)

    def after_execute(conn, cursor, statement, params, context, executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "max(" in statement.lower():
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()  # both writers have read the same max(change_seq)

    sa.event.listen(catalog.engine, "after_cursor_execute", after_execute)
    try:
        writers = [
            threading.Thread(target=lambda: catalog.upsert_items([{"item_id": "new"}], 2.0)),
            threading.Thread(target=lambda: catalog.delete_item("old", 2.0)),
        ]
        for t in writers:
            t.start()
        for t in writers:
            t.join(30)
    finally:
        sa.event.remove(catalog.engine, "after_cursor_execute", after_execute)
    rows = {r["item_id"]: r["change_seq"] for r in catalog.items_changed_since(1)}
    assert set(rows) == {"old", "new"}
    # Both are 2: a refresher that read one of them at seq 2 never sees the other.
    assert rows["old"] != rows["new"]


def test_malformed_event_body_message(client: TestClient, keys: H) -> None:
    response = client.post("/v1/events", content=b"{not json", headers=keys["ingest"])
    assert response.status_code == 400
    assert response.json() == {"error": "request body is not valid JSON"}  # is ": request …"
