"""The answer a middleware gives instead of calling the app: JSON ``{"error": ...}``."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from starlette.types import Send


async def refuse(
    send: Send, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    payload = orjson.dumps({"error": message})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
