"""Each request gets an id, sent back as x-request-id, and its answer's status is noted for
the log and the audit."""

from __future__ import annotations

import re
from typing import Any

from clickrec.api.middleware.context import ContextMiddleware, context_of
from tests.asgi import Inner, call, http_scope


def test_every_answer_carries_its_own_request_id_after_the_apps_headers() -> None:
    inner = Inner(status=201)
    first, second = (call(ContextMiddleware(inner), http_scope()) for _ in range(2))
    assert first.status == 201
    ids = [first.header("x-request-id"), second.header("x-request-id")]
    assert all(i is not None and re.fullmatch("[0-9a-f]{16}", i) for i in ids)
    assert ids[0] != ids[1]
    assert first.raw_headers[0] == (b"content-type", b"application/json")
    assert first.raw_headers[-1][0] == b"x-request-id"


def test_the_context_tells_the_layers_inside_the_id_and_the_status_sent() -> None:
    inner = Inner(status=418)
    scope = http_scope()
    answer = call(ContextMiddleware(inner), scope)
    context = context_of(scope)
    assert context.request_id == answer.header("x-request-id")
    assert context.status == 418


def test_other_scopes_pass_through() -> None:
    import asyncio

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    asyncio.run(ContextMiddleware(app)({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == [{"type": "lifespan"}]
