"""Limits applied before any handler runs (the WAF's job): header and body sizes, slow
bodies, rate limits per address and per key; and security headers on every response."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickrec.api.limits import RateLimiter, retry_after
from clickrec.api.raw import RawRoutes
from clickrec.core.errors import ClickrecError
from clickrec.keys import KeyRing
from clickrec.observability import tracing
from clickrec.observability.metrics import Metrics

# Routes an admin key may call at volume that change no configuration: not audited. The
# AWS-compatible ones (api/aws.py) are POSTs that send events or read recommendations.
DATA_PLANE = {
    "/v1/events",
    "/v1/rankings",
    "/v1/batch-jobs",
    "/events",
    "/recommendations",
    "/personalize-ranking",
}
HSTS = [(b"strict-transport-security", b"max-age=31536000; includeSubDomains")]
# Every response but the dashboard page (PAGES) is JSON or a static file: none may be
# framed or run a script. A strict policy costs nothing and protects any new page by default.
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
]
# The one HTML page, the built-in dashboard (api/dashboard.py), runs its own script and
# style files and fetches its data: from this origin only, still no inline code.
PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The API reference (api/docs.py): Swagger UI sets inline styles and draws icons from
# data: URLs; its scripts still come from this origin only.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'"
)


def _with_csp(csp: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, csp if k == b"content-security-policy" else v) for k, v in SECURITY_HEADERS]


PAGES = {"/dashboard": _with_csp(PAGE_CSP), "/docs": _with_csp(DOCS_CSP)}


access_log = logging.getLogger("clickrec.access")


def _log_request(scope: Scope, route: str, status: int, elapsed: float, request_id: str) -> None:
    """One JSON line per request: never the key, never the body, never the query."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    principal = scope.get("state", {}).get("principal")
    access_log.info(
        {
            "request_id": request_id,
            "method": scope["method"],
            "route": route,
            "status": status,
            "ms": round(elapsed * 1000, 2),
            "key": getattr(principal, "name", None),
            **tracing.log_ids(),
        }
    )


# Routes whose path names a reader: their audit entries keep the route, not the id.
_PRIVATE_ROUTES = {"/v1/users/{user_id:path}"}


def _audit_target(scope: Scope, route: str) -> str:
    """What an audit entry names: the handler's choice, else the path (the route for
    paths that name a reader, so that erasing them leaves no trace in the audit log)."""
    chosen = scope.get("state", {}).get("audit_target")
    if chosen:
        return str(chosen)[:300]
    return route if route in _PRIVATE_ROUTES else str(scope["path"])[:300]


class Cors:
    """Browser access to the routes a page may call (POST /v1/events): from the origins of
    live tracker keys and the configured ones. Preflights are answered here, never by a
    handler; other routes get no CORS headers, so browsers refuse them."""

    MAX_AGE = b"600"

    def __init__(self, keys: KeyRing, paths: set[str], extra: list[str]) -> None:
        self.keys = keys
        self.paths = paths
        self.extra = frozenset(o.rstrip("/").lower() for o in extra)

    def origin(self, scope: Scope) -> str | None:
        """The request's Origin when this path allows it from there, else None."""
        if scope["path"] not in self.paths:
            return None
        raw = next((v for k, v in scope.get("headers", []) if k == b"origin"), None)
        if raw is None:
            return None
        origin = raw.decode("latin-1")
        if origin in self.extra or origin in self.keys.tracker_origins():
            return origin
        return None

    def is_preflight(self, scope: Scope) -> bool:
        return scope["method"] == "OPTIONS" and any(
            k == b"access-control-request-method" for k, _ in scope.get("headers", [])
        )

    def preflight_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", b"POST"),
            (b"access-control-allow-headers", b"authorization, content-type"),
            (b"access-control-max-age", self.MAX_AGE),
            (b"vary", b"Origin"),
        ]


class Guard:
    """431 for oversized headers, 429 (with Retry-After) over a rate limit, 413 for bodies
    over ``max_body`` bytes, 408 for bodies that do not arrive in time; security headers
    and the request id on every response; one access log line and metric per request."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int,
        metrics: Metrics | None = None,
        raw: RawRoutes | None = None,
        limiter: RateLimiter | None = None,
        keys: KeyRing | None = None,
        max_header_bytes: int = 16_384,
        body_timeout: float = 10.0,
        cors: Cors | None = None,
        audit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.raw = raw
        self.limiter = limiter
        self.keys = keys
        self.max_header_bytes = max_header_bytes
        self.body_timeout = body_timeout
        self.cors = cors
        self.audit = audit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif not tracing.enabled():
            await self._serve(scope, receive, send)
        else:
            with tracing.request_span(scope["method"], scope.get("headers", [])):
                await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = secrets.token_hex(8)
        status = 0
        cors_origin = self.cors.origin(scope) if self.cors is not None else None
        cors_headers = (
            [(b"access-control-allow-origin", cors_origin.encode("latin-1")), (b"vary", b"Origin")]
            if cors_origin is not None
            else []
        )

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    *PAGES.get(scope["path"], SECURITY_HEADERS),
                    *(HSTS if scope.get("scheme") == "https" else ()),
                    *cors_headers,
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        if self.cors is not None and self.cors.is_preflight(scope):
            if cors_origin is None:
                await self._refuse(send_with_headers, 403, "this origin may not call this path")
            else:
                cors_headers = self.cors.preflight_headers(cors_origin)
                await send_with_headers({"type": "http.response.start", "status": 204})
                await send_with_headers({"type": "http.response.body", "body": b""})
            elapsed = time.perf_counter() - started
            tracing.finish_request(scope["method"], "preflight", status, request_id)
            _log_request(scope, "preflight", status, elapsed, request_id)
            return

        try:
            await self._guarded(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if self.metrics is not None:
                self.metrics.requests.labels(scope["method"], route, str(status)).observe(elapsed)
            tracing.finish_request(scope["method"], route, status, request_id)
            _log_request(scope, route, status, elapsed, request_id)
            self._audit(scope, route, status, request_id)

    async def _guarded(self, scope: Scope, receive: Receive, send_with_headers: Any) -> None:
        headers = scope.get("headers", [])
        size = sum(len(k) + len(v) for k, v in headers)
        if size > self.max_header_bytes:
            big = f"request headers are larger than {self.max_header_bytes} bytes"
            await self._refuse(send_with_headers, 431, big)
            return
        if self.limiter is not None:
            wait = self._rate_wait(scope, headers)
            if wait:
                await self._refuse(
                    send_with_headers,
                    429,
                    "rate limit exceeded: slow down and retry after the Retry-After seconds",
                    [(b"retry-after", retry_after(wait).encode())],
                )
                return
        length = dict(headers).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            if length.isdigit():
                await self._refuse(send_with_headers, 413, self._too_large)
            else:
                await self._refuse(send_with_headers, 400, "bad content-length header")
            return
        body = bytearray()
        more = scope["method"] in ("POST", "PUT", "PATCH")
        # One deadline for the whole body: a client trickling a byte at a time cannot reset it.
        deadline = time.monotonic() + self.body_timeout
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                late = f"request body not received within {self.body_timeout:g} seconds"
                await self._refuse(send_with_headers, 408, late)
                return
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if len(body) > self.max_body:
                await self._refuse(send_with_headers, 413, self._too_large)
                return
            more = message.get("more_body", False)
        route = self.raw.match(scope) if self.raw is not None else None
        if route is not None and self.raw is not None:
            response = await self.raw.serve(route, scope, bytes(body))
            await response(scope, receive, send_with_headers)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send_with_headers)

    def _audit(self, scope: Scope, route: str, status: int, request_id: str) -> None:
        """Every change an admin key makes (not the data plane: events, reads), stored."""
        principal = scope.get("state", {}).get("principal")
        if (
            self.audit is None
            or getattr(principal, "scope", None) != "admin"
            or scope["method"] in ("GET", "HEAD", "OPTIONS")
            or route in DATA_PLANE
        ):
            return
        client = scope.get("client")
        try:
            self.audit(
                {
                    "at": time.time(),
                    "actor": f"{principal.name} ({principal.key_id})",
                    "action": f"{scope['method']} {route}",
                    "target": _audit_target(scope, route),
                    "source": client[0] if client else None,
                    "status": status,
                    "request_id": request_id,
                }
            )
        except Exception:  # noqa: BLE001 - the answer is sent; say loudly it was not audited
            access_log.exception("could not write the audit log entry of %s", request_id)

    @property
    def _too_large(self) -> str:
        return f"request body is larger than {self.max_body} bytes"

    def _rate_wait(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> float:
        """Seconds this request must wait (0: go on). Keys are told apart only once
        verified, so made-up keys share their address's bucket."""
        assert self.limiter is not None
        client = scope.get("client")
        address = client[0] if client else None
        key_id = key_scope = None
        if self.keys is not None:
            header = next((v for k, v in headers if k == b"authorization"), b"")
            kind, _, token = header.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                try:
                    principal = self.keys.verify(token.strip())
                    key_id, key_scope = principal.key_id, principal.scope
                except ClickrecError:
                    pass  # the handler answers 401
        return self.limiter.check(address, key_id, key_scope)

    async def _refuse(
        self,
        send: Any,
        status: int,
        message: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        payload = orjson.dumps({"error": message})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    *(extra or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
