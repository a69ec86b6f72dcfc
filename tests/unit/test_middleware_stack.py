"""The middlewares as api/app.py stacks them: what their order means for a client, and one
key verification per request, whichever route asks for the key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.config import load_settings
from clickrec.engine import Engine, ServingEngine

pytestmark = pytest.mark.integration
LIMITS = {  # one request of burst per address: the second is over the limit
    "CLICKREC_LIMITS__PER_ADDRESS_RPS": "0.01",
    "CLICKREC_LIMITS__BURST_SECONDS": "100",
    "CLICKREC_LIMITS__MAX_HEADER_BYTES": "2000",
}


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[Engine, TestClient, list[str]]]:
    """An app with tight limits, its engine, and every key its key ring verified."""
    engine = ServingEngine(load_settings(tmp_path / "home", environ=LIMITS))
    verified: list[str] = []
    verify = engine.keys.verify

    def counting(presented: str) -> Any:
        verified.append(presented)
        return verify(presented)

    engine.keys.verify = counting  # type: ignore[method-assign]
    try:
        with TestClient(create_app(engine)) as client:
            yield engine, client, verified
    finally:
        engine.close()


def _bearer(engine: Engine, scope: str) -> dict[str, str]:
    key, _ = engine.keys.create(scope, None, engine.clock.now())
    return {"Authorization": f"Bearer {key}"}


def test_each_request_verifies_its_key_once(
    limited: tuple[Engine, TestClient, list[str]],
) -> None:
    engine, client, verified = limited
    ingest = _bearer(engine, "ingest")
    sent = client.post(
        "/v1/events", json={"events": [{"session_id": "s", "item_id": "i"}]}, headers=ingest
    )
    assert sent.status_code == 202
    assert verified == [ingest["Authorization"].removeprefix("Bearer ")]


def test_a_framework_route_verifies_its_key_once(
    limited: tuple[Engine, TestClient, list[str]],
) -> None:
    engine, client, verified = limited
    admin = _bearer(engine, "admin")
    assert client.get("/v1/models", headers=admin).status_code == 200
    assert len(verified) == 1


def test_oversized_headers_are_refused_before_the_key_is_looked_at(
    limited: tuple[Engine, TestClient, list[str]],
) -> None:
    engine, client, verified = limited
    headers = {**_bearer(engine, "read"), "x-padding": "a" * 2000}
    answer = client.get("/v1/trending", headers=headers)
    assert answer.status_code == 431 and verified == []
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert len(answer.headers["x-request-id"]) == 16


def test_over_the_rate_a_request_is_refused_before_its_body_is_weighed(
    limited: tuple[Engine, TestClient, list[str]],
) -> None:
    engine, client, _ = limited
    assert client.get("/healthz").status_code == 200  # the address's one request of burst
    too_big = b"x" * (engine.settings.server.max_body_bytes + 1)
    answer = client.post("/v1/events", content=too_big, headers=_bearer(engine, "ingest"))
    assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1
    assert answer.headers["cache-control"] == "no-store"


def test_a_preflight_is_answered_whatever_the_rate(
    limited: tuple[Engine, TestClient, list[str]],
) -> None:
    engine, client, _ = limited
    origin = "https://news.example.com"
    engine.keys.create_key("tracker", None, engine.clock.now(), [origin])
    asks = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    answers = [client.options("/v1/events", headers=asks) for _ in range(3)]
    assert [a.status_code for a in answers] == [204, 204, 204]
    assert answers[0].headers["access-control-allow-origin"] == origin
