"""Limits applied before any handler runs: body size, security headers (the WAF's job)."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickrec.api.raw import RawRoutes
from clickrec.observability.metrics import Metrics

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


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
        }
    )


class Guard:
    """Refuse bodies over ``max_body`` bytes with 413 and add security headers."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int,
        metrics: Metrics | None = None,
        raw: RawRoutes | None = None,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.raw = raw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        request_id = secrets.token_hex(8)
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    *SECURITY_HEADERS,
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self._guarded(scope, receive, send_with_headers)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if self.metrics is not None:
                self.metrics.requests.labels(scope["method"], route, str(status)).observe(elapsed)
            _log_request(scope, route, status, elapsed, request_id)

    async def _guarded(self, scope: Scope, receive: Receive, send_with_headers: Any) -> None:

        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._refuse(send_with_headers, 413 if length.isdigit() else 400)
            return
        body = bytearray()
        more = scope["method"] in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if len(body) > self.max_body:
                await self._refuse(send_with_headers, 413)
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

    async def _refuse(self, send: Any, status: int) -> None:
        message = (
            f"request body is larger than {self.max_body} bytes"
            if status == 413
            else "bad content-length header"
        )
        payload = orjson.dumps({"error": message})
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
