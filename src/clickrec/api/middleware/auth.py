"""Who is calling: the request's bearer key, verified once, handed on in the scope."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from clickrec.core.errors import ClickrecError, Unauthorized
from clickrec.keys import KeyRing, Principal

CALLER = "clickrec.caller"  # the scope key of the request's Caller
MISSING = "missing API key: send Authorization: Bearer <key>"


@dataclass(frozen=True, slots=True)
class Caller:
    """What the request's ``Authorization: Bearer`` key says: its principal, or why it has
    none (the key's refusal; neither: no bearer key was sent)."""

    principal: Principal | None = None
    refusal: ClickrecError | None = None

    def require(self, scope: str) -> Principal:
        """The principal when its key grants ``scope`` (admin grants all); Unauthorized
        (401) or Forbidden (403) otherwise."""
        if self.principal is None:
            raise self.refusal or Unauthorized(MISSING)
        self.principal.require(scope)
        return self.principal


NOBODY = Caller()


def identify(keys: KeyRing, scope: Scope) -> Caller:
    """The Caller of a request, by its first Authorization header."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            break
    else:
        return NOBODY
    if not token or kind.lower() != "bearer":
        return NOBODY
    try:
        return Caller(keys.verify(token))
    except ClickrecError as refusal:
        return Caller(refusal=refusal)


def caller_of(scope: Scope, keys: KeyRing) -> Caller:
    """The request's Caller as AuthenticationMiddleware found it; identified here (once)
    where that middleware did not run, so a route is never open for want of it."""
    caller: Caller | None = scope.get(CALLER)
    if caller is None:
        caller = scope[CALLER] = identify(keys, scope)
    return caller


class AuthenticationMiddleware:
    """Verifies each HTTP request's bearer key, once, and hands the outcome on as
    ``scope["clickrec.caller"]``; refuses nothing itself: the route decides what it needs
    (``api/deps.require``), and the rate limit tells keys apart by it."""

    def __init__(self, app: ASGIApp, keys: KeyRing) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[CALLER] = identify(self.keys, scope)
        await self.app(scope, receive, send)
