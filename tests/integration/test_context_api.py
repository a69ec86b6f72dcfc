"""The context of events and requests over HTTP: a phone reader's list leans to what phone
readers read now, the moment they read it, and after a restart (rebuilt from the log)."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.engine import Engine, ServingEngine

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]
PHONE = quote(json.dumps({"device": "phone"}))


def _reads(client: TestClient, keys: H) -> None:
    """post-a is read on phones, post-b (more read overall) on desktops."""
    now = time.time() - 60
    events = [
        {"session_id": f"p{k}", "item_id": "post-a", "timestamp": now + k,
         "context": {"device": "phone"}}
        for k in range(10)
    ] + [
        {"session_id": f"d{k}", "item_id": "post-b", "timestamp": now + k,
         "context": {"device": "desktop", "referrer": "newsletter"}}
        for k in range(20)
    ]  # fmt: skip
    r = client.post("/v1/events", json={"events": events}, headers=keys["ingest"])
    assert r.status_code == 202, r.text


def _top(client: TestClient, keys: H, path: str) -> str:
    r = client.get(path, headers=keys["read"])
    assert r.status_code == 200, r.text
    return str(r.json()["items"][0]["item_id"])


def test_a_request_context_leans_toward_what_trends_in_that_context(
    client: TestClient, keys: H, engine: Engine
) -> None:
    _reads(client, keys)
    assert _top(client, keys, "/v1/trending") == "post-b"
    assert _top(client, keys, f"/v1/trending?context={PHONE}") == "post-a"
    assert _top(client, keys, "/v1/recommendations?user_id=new") == "post-b"
    assert _top(client, keys, f"/v1/recommendations?user_id=new&context={PHONE}") == "post-a"
    body = {"user_id": "new", "item_ids": ["post-b", "post-a"], "context": {"device": "phone"}}
    ranked = client.post("/v1/rankings", json=body, headers=keys["read"]).json()
    assert [i["item_id"] for i in ranked["items"]] == ["post-a", "post-b"]

    # After a restart the context counts are rebuilt from the log.
    restarted = ServingEngine(engine.settings)
    try:
        with TestClient(create_app(restarted)) as again:
            assert _top(again, keys, f"/v1/trending?context={PHONE}") == "post-a"
    finally:
        restarted.close()


@pytest.mark.parametrize(
    ("context", "problem"),
    [
        ("not json", "context"),
        (quote(json.dumps({"device": 3})), "context.device"),
        (quote(json.dumps({f"k{i}": "v" for i in range(21)})), "at most 20 keys"),
        (quote(json.dumps(["device", "phone"])), "context"),
    ],
)
def test_a_bad_context_is_a_422_naming_it(
    client: TestClient, keys: H, context: str, problem: str
) -> None:
    r = client.get(f"/v1/trending?context={context}", headers=keys["read"])
    assert r.status_code == 422 and problem in r.text, r.text
