"""Authentication: each request's bearer key is verified once, before anything needs it,
and the route's own check (api/deps.py) uses that verdict instead of verifying again."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from clickrec.api import deps
from clickrec.api.middleware.auth import AuthenticationMiddleware, caller_of
from clickrec.core.errors import Forbidden, StoreUnavailable, Unauthorized
from tests import asgi
from tests.asgi import ADMIN, READ, Inner, bearer, call, http_scope


def _route_check(scope: dict[str, Any], keys: asgi.CountingKeys, needs: str) -> Any:
    """What ``deps.require(needs)`` answers for this scope: a principal, or the error."""
    scope["app"] = SimpleNamespace(state=SimpleNamespace(engine=SimpleNamespace(keys=keys)))
    try:
        return asyncio.run(deps.require(needs)(Request(scope)))
    except (Unauthorized, Forbidden) as exc:
        return exc


def test_the_principal_arrives_in_the_scope_and_the_key_is_verified_once() -> None:
    keys, inner = asgi.keys(), Inner()
    scope = http_scope("PUT", "/v1/filters/f", bearer("ck_admin"))
    answer = call(AuthenticationMiddleware(inner, keys), scope)
    assert answer.status == 200 and inner.called == 1
    assert caller_of(inner.scopes[0], keys).principal == ADMIN
    # The route's dependency, and the raw routes, ask again: nobody verifies again.
    assert _route_check(inner.scopes[0], keys, "admin") == ADMIN
    assert caller_of(inner.scopes[0], keys).require("ingest") == ADMIN
    assert keys.verified == ["ck_admin"]


def test_the_route_check_refuses_with_the_key_rings_own_answer() -> None:
    keys, inner = asgi.keys(), Inner()
    middleware = AuthenticationMiddleware(inner, keys)
    for headers in ({}, bearer("ck_nope"), bearer("ck_read"), {"authorization": "Basic eA=="}):
        call(middleware, http_scope("GET", "/v1/models", headers))
    missing, invalid, read, basic = (_route_check(s, keys, "admin") for s in inner.scopes)
    assert isinstance(missing, Unauthorized) and "missing API key" in str(missing)
    assert isinstance(invalid, Unauthorized) and str(invalid) == "invalid API key"
    assert isinstance(read, Forbidden) and "needs 'admin'" in str(read)
    assert isinstance(basic, Unauthorized) and "missing API key" in str(basic)
    # Only the two bearer keys were looked at, each once; the middleware refused nothing.
    assert keys.verified == ["ck_nope", "ck_read"] and inner.called == 4


def test_a_refused_key_is_not_refused_before_the_route_says_so() -> None:
    """A public route (/healthz) answers whatever key comes with it."""
    inner = Inner()
    answer = call(AuthenticationMiddleware(inner, asgi.keys()), http_scope(headers=bearer("x")))
    assert answer.status == 200 and inner.called == 1


def test_a_store_failure_while_verifying_reaches_the_route_as_it_was() -> None:
    keys, inner = asgi.keys(), Inner()
    keys.fail_with = StoreUnavailable("catalog unreachable")
    call(AuthenticationMiddleware(inner, keys), http_scope(headers=bearer("ck_read")))
    with pytest.raises(StoreUnavailable, match="catalog unreachable"):
        caller_of(inner.scopes[0], keys).require("read")
    assert keys.verified == ["ck_read"]


def test_sigv4_requests_are_left_to_their_own_check() -> None:
    keys, inner = asgi.keys(), Inner()
    signed = {"authorization": "AWS4-HMAC-SHA256 Credential=CKK1/x, Signature=ab"}
    call(AuthenticationMiddleware(inner, keys), http_scope("POST", "/events", signed))
    assert keys.verified == [] and inner.called == 1


def test_without_the_middleware_the_route_still_verifies_once() -> None:
    """A route is never open for want of the middleware."""
    keys = asgi.keys()
    scope = http_scope("GET", "/v1/trending", bearer("ck_read"))
    assert _route_check(scope, keys, "read") == READ
    assert isinstance(_route_check(http_scope(), keys, "read"), Unauthorized)
    assert caller_of(scope, keys).principal == READ
    assert keys.verified == ["ck_read"]


def test_other_scopes_pass_through() -> None:
    keys, seen = asgi.keys(), []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    asyncio.run(AuthenticationMiddleware(app, keys)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == [{"type": "lifespan"}] and keys.verified == []
