"""The raw routes: POST /v1/events answered below the framework, from the key verified once
by the authentication middleware; every other request goes on to the app."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from clickrec.api.errors import JSON
from clickrec.api.middleware.auth import AuthenticationMiddleware
from clickrec.api.middleware.raw_routes import RawRoutesMiddleware
from clickrec.api.raw import RawRoute, RawRoutes
from tests import asgi
from tests.asgi import Inner, bearer, call, http_scope

SITE = "https://news.example.com"  # the tracker key's origin (tests/asgi.py)


def _served(keys: asgi.CountingKeys, inner: Inner, received: list[bytes]) -> Any:
    async def ingest(body: bytes) -> Response:
        received.append(body)
        return JSON({"accepted": len(orjson.loads(body)["events"])}, status_code=202)

    routes = RawRoutes(keys, [RawRoute("POST", "/v1/events", "events", ingest)])  # type: ignore[arg-type]
    return AuthenticationMiddleware(RawRoutesMiddleware(inner, routes), keys)  # type: ignore[arg-type]


def test_events_are_served_without_the_app_and_the_key_verified_once() -> None:
    keys, inner, received = asgi.keys(), Inner(), []
    scope = http_scope("POST", "/v1/events", bearer("ck_ingest"))
    answer = call(_served(keys, inner, received), scope, [b'{"events": [{}, ', b"{}]}"])
    assert answer.status == 202 and answer.json() == {"accepted": 2}
    assert received == [b'{"events": [{}, {}]}'] and inner.called == 0
    assert keys.verified == ["ck_ingest"]
    assert scope["route"].path == "/v1/events"  # the label of its log line and metric
    assert scope["state"]["principal"].name == "site"  # named in the log line


def test_a_refused_key_gets_the_usual_error_answers() -> None:
    keys, inner, received = asgi.keys(), Inner(), []
    app = _served(keys, inner, received)
    body = b'{"events": []}'
    invalid = call(app, http_scope("POST", "/v1/events", bearer("ck_nope")), body)
    assert invalid.status == 401 and invalid.json() == {"error": "invalid API key"}
    assert invalid.header("www-authenticate") == "Bearer"
    missing = call(app, http_scope("POST", "/v1/events"), body)
    assert missing.status == 401 and "missing API key" in missing.json()["error"]
    reader = call(app, http_scope("POST", "/v1/events", bearer("ck_read")), body)
    assert reader.status == 403
    away = call(app, http_scope("POST", "/v1/events", bearer("ck_tracker")), body)
    assert away.status == 403 and "origin" in away.json()["error"]
    home = call(app, http_scope("POST", "/v1/events", bearer("ck_tracker", origin=SITE)), body)
    assert home.status == 202
    assert received == [body] and inner.called == 0
    assert keys.verified == ["ck_nope", "ck_read", "ck_tracker", "ck_tracker"]


def test_other_requests_go_on_to_the_app() -> None:
    keys, inner, received = asgi.keys(), Inner(), []
    app = _served(keys, inner, received)
    assert call(app, http_scope("GET", "/v1/events", bearer("ck_ingest"))).status == 200
    assert call(app, http_scope("POST", "/v1/items", bearer("ck_ingest")), b"{}").status == 200
    assert inner.called == 2 and inner.bodies == [b"", b"{}"] and received == []
