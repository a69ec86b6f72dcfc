"""Browser-safe tracker keys: events only, only from their origins, with CORS done right."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from clickrec.core.errors import InvalidInput
from clickrec.engine import Engine, ServingEngine

pytestmark = pytest.mark.integration
SITE = "https://www.example.com"
EVENTS = {"events": [{"session_id": "browser-1", "item_id": "p1"}]}


@pytest.fixture
def tracker(engine: Engine) -> dict[str, str]:
    key, _ = engine.keys.create("tracker", "site", engine.clock.now(), [SITE + "/"])
    return {"Authorization": f"Bearer {key}"}


def test_a_tracker_key_sends_events_from_its_site(client: TestClient, tracker: dict) -> None:
    r = client.post("/v1/events", json=EVENTS, headers={**tracker, "Origin": SITE})
    assert r.status_code == 202, r.text
    assert r.headers["access-control-allow-origin"] == SITE
    assert r.headers["vary"] == "Origin"


def test_a_tracker_key_works_nowhere_else(client: TestClient, tracker: dict) -> None:
    elsewhere = client.post(
        "/v1/events", json=EVENTS, headers={**tracker, "Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403 and "origin" in elsewhere.json()["error"]
    assert "access-control-allow-origin" not in elsewhere.headers
    no_origin = client.post("/v1/events", json=EVENTS, headers=tracker)  # a script, not a page
    assert no_origin.status_code == 403
    for method, path in [("GET", "/v1/trending"), ("PUT", "/v1/items"), ("GET", "/v1/models")]:
        r = client.request(method, path, headers={**tracker, "Origin": SITE}, json={"items": []})
        assert r.status_code == 403, (method, path)
        assert "access-control-allow-origin" not in r.headers


def test_preflights_are_answered_before_any_handler(client: TestClient, tracker: dict) -> None:
    asked = {
        "Origin": SITE,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    ok = client.options("/v1/events", headers=asked)
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == SITE
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "authorization" in ok.headers["access-control-allow-headers"]
    refused = client.options("/v1/events", headers={**asked, "Origin": "https://evil.example"})
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers
    other = client.options("/v1/trending", headers=asked)  # only the events route is open
    assert other.status_code == 403


def test_tracker_keys_need_origins_and_others_take_none(engine: Engine) -> None:
    with pytest.raises(InvalidInput, match="needs at least one origin"):
        engine.keys.create("tracker", None, 0.0)
    with pytest.raises(InvalidInput, match="only tracker keys"):
        engine.keys.create("read", None, 0.0, [SITE])
    with pytest.raises(InvalidInput, match="not an origin"):
        engine.keys.create("tracker", None, 0.0, ["https://www.example.com/page"])


def test_one_browser_cannot_flood_with_the_site_key(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from clickrec.api.app import create_app
    from clickrec.config import load_settings

    env = {"CLICKREC_LIMITS__TRACKER_PER_ADDRESS_RPS": "2", "CLICKREC_LIMITS__BURST_SECONDS": "1"}
    engine = ServingEngine(load_settings(tmp_path / "home", environ=env))
    try:
        key, _ = engine.keys.create("tracker", None, 0.0, [SITE])
        h = {"Authorization": f"Bearer {key}", "Origin": SITE}
        with TestClient(create_app(engine)) as client:
            codes = [
                client.post("/v1/events", json=EVENTS, headers=h).status_code for _ in range(4)
            ]
        assert codes == [202, 202, 429, 429]
    finally:
        engine.close()
