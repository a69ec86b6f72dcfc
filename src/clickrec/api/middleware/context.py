"""Each request's context: its id, when it arrived and the status it was answered with."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTEXT = "clickrec.context"  # the scope key of the request's RequestContext


@dataclass(slots=True)
class RequestContext:
    request_id: str  # 16 hex digits, sent back as x-request-id
    started: float  # time.perf_counter() when the request arrived
    status: int = 0  # the status sent; 0 until the response starts (or if none was sent)


def context_of(scope: Scope) -> RequestContext:
    """The request's context; ContextMiddleware must be outside the caller."""
    context: RequestContext = scope[CONTEXT]
    return context


class ContextMiddleware:
    """Gives each HTTP request a context (``scope["clickrec.context"]``), notes the status
    it is answered with, and sends the request id back as ``x-request-id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = RequestContext(secrets.token_hex(8), time.perf_counter())
        scope[CONTEXT] = context
        header = (b"x-request-id", context.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, send_with_id)
