"""Limits checked before any handler runs (the WAF's job): the header block's size, the
rate per address and per key, the body's size and the time it may take to arrive."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clickrec.api.limits import RateLimiter, retry_after
from clickrec.api.middleware.auth import CALLER, NOBODY, Caller
from clickrec.api.middleware.refusal import refuse

_BODIED = ("POST", "PUT", "PATCH")


class HeaderLimitMiddleware:
    """431 for a request whose header names and values add up to over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int = 16_384) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) for k, v in scope.get("headers", []))
            if size > self.max_bytes:
                big = f"request headers are larger than {self.max_bytes} bytes"
                await refuse(send, 431, big)
                return
        await self.app(scope, receive, send)


class RateLimitMiddleware:
    """429 with Retry-After over a rate limit: per client address, then per key. Keys are
    told apart only once verified (the Caller AuthenticationMiddleware, outside, puts in
    the scope), so made-up keys share their address's bucket."""

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            caller: Caller = scope.get(CALLER, NOBODY)
            key = caller.principal
            wait = self.limiter.check(
                client[0] if client else None,
                key.key_id if key is not None else None,
                key.scope if key is not None else None,
            )
            if wait:
                await refuse(
                    send,
                    429,
                    "rate limit exceeded: slow down and retry after the Retry-After seconds",
                    [(b"retry-after", retry_after(wait).encode())],
                )
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for a body over ``max_body`` bytes (by its content-length, or as it arrives),
    400 for a content-length that is not a number, 408 for a body not all in within
    ``body_timeout`` seconds; the app then gets the whole body in one message."""

    def __init__(self, app: ASGIApp, max_body: int, body_timeout: float = 10.0) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            if length.isdigit():
                await refuse(send, 413, self._too_large)
            else:
                await refuse(send, 400, "bad content-length header")
            return
        body: bytes | None = b""
        if scope["method"] in _BODIED:
            try:
                # One deadline for the whole body: a client trickling a byte at a time
                # cannot reset it (one timer per request, not a task per message).
                async with asyncio.timeout(self.body_timeout):
                    body = await self._read(receive)
            except TimeoutError:
                late = f"request body not received within {self.body_timeout:g} seconds"
                # The rest of the body may still come: the connection cannot carry another
                # request, so it is closed (a slow client gets one deadline, not two).
                await refuse(send, 408, late, [(b"connection", b"close")])
                return
            if body is None:
                return  # the client left
            if len(body) > self.max_body:
                await refuse(send, 413, self._too_large)
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The body, or as much as shows it is over ``max_body``; None if the client left."""
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body.extend(message.get("body", b""))
            if len(body) > self.max_body:
                break
            more = message.get("more_body", False)
        return bytes(body)

    @property
    def _too_large(self) -> str:
        return f"request body is larger than {self.max_body} bytes"
