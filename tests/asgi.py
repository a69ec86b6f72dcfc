"""A fake ASGI server for the middleware tests: one HTTP request in, what a client would
get back out; an inner app that records what reached it; a key ring that counts checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from clickrec.core.errors import Unauthorized
from clickrec.keys import Principal

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]
CLIENT = ("203.0.113.7", 51000)


@dataclass
class Answer:
    """What the client got: ``None`` status when nothing was sent."""

    status: int | None
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header, by its name in lower case."""
        key = name.encode()
        return next((v.decode("latin-1") for k, v in self.raw_headers if k == key), None)

    def all(self, name: str) -> list[str]:
        key = name.encode()
        return [v.decode("latin-1") for k, v in self.raw_headers if k == key]

    def json(self) -> Any:
        return orjson.loads(self.body)


def http_scope(
    method: str = "GET",
    path: str = "/",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
    scheme: str = "http",
    client: tuple[str, int] | None = CLIENT,
) -> Scope:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {
        "type": "http",
        "method": method,
        "path": path,
        "scheme": scheme,
        "client": client,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in pairs],
    }


class Body:
    """A ``receive`` that gives the body in these chunks, then says the client left;
    ``read`` counts the messages the middleware took."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.messages: list[Message] = [
            {"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks
        ] or [{"type": "http.request", "body": b"", "more_body": True}]
        self.messages[-1]["more_body"] = False
        self.read = 0

    async def __call__(self) -> Message:
        if self.read < len(self.messages):
            self.read += 1
            return self.messages[self.read - 1]
        return {"type": "http.disconnect"}


def call(
    app: App,
    scope: Scope,
    body: bytes | list[bytes] = b"",
    receive: Callable[[], Awaitable[Message]] | None = None,
) -> Answer:
    """Serve one request through ``app``, as a server would; the answer as a client sees it."""
    if receive is None:
        receive = Body([body] if isinstance(body, bytes) else body)
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        return Answer(None, [], b"")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], list(start.get("headers", [])), payload)


@dataclass
class Inner:
    """The app inside the middleware under test: reads the whole body, records the scope
    and the body, and answers ``status`` with its own headers and JSON body."""

    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(
        default_factory=lambda: [(b"content-type", b"application/json")]
    )
    scopes: list[Scope] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    body_messages: list[int] = field(default_factory=list)
    on_call: Callable[[Scope], Any] | None = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        body, count, more = b"", 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body += message.get("body", b"")
            count += 1
            more = message.get("more_body", False)
        self.bodies.append(body)
        self.body_messages.append(count)
        if self.on_call is not None:
            self.on_call(scope)
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})

    @property
    def called(self) -> int:
        return len(self.scopes)


class CountingKeys:
    """A key ring that knows ``principals`` by their key and counts every verification."""

    def __init__(
        self, principals: Mapping[str, Principal], tracker_origins: Iterable[str] = ()
    ) -> None:
        self.principals = dict(principals)
        self.origins = frozenset(tracker_origins)
        self.verified: list[str] = []
        self.fail_with: Exception | None = None  # what every verification raises, when set

    def verify(self, presented: str) -> Principal:
        self.verified.append(presented)
        if self.fail_with is not None:
            raise self.fail_with
        if presented not in self.principals:
            raise Unauthorized("invalid API key")
        return self.principals[presented]

    def tracker_origins(self) -> frozenset[str]:
        return self.origins


ADMIN = Principal("k1", "ops", "admin")
READ = Principal("k2", "reader", "read")
INGEST = Principal("k3", "site", "ingest")
TRACKER = Principal("k4", "web", "tracker", ("https://news.example.com",))


def keys() -> CountingKeys:
    """Four keys, one per scope: ``ck_admin``, ``ck_read``, ``ck_ingest``, ``ck_tracker``."""
    return CountingKeys(
        {"ck_admin": ADMIN, "ck_read": READ, "ck_ingest": INGEST, "ck_tracker": TRACKER},
        ["https://news.example.com"],
    )


def bearer(token: str, **more: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", **more}
