"""Dependencies of the routes, in one place: the engine and the caller's key.

They are coroutines on purpose: they never block for long, and a plain function would
cost every request a hop through the thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from clickrec.core.errors import StoreUnavailable, Unauthorized
from clickrec.engine import Engine
from clickrec.keys import KeyRing, Principal
from clickrec.serving.service import Recommender


async def engine(request: Request) -> Engine:
    return _engine(request)


async def recommender(request: Request) -> Recommender:
    rec = _engine(request).recommender
    if rec is None:
        raise StoreUnavailable("this process does not serve recommendations")
    return rec


def _engine(request: Request) -> Engine:
    eng: Engine = request.app.state.engine
    return eng


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that admits a bearer key with ``scope`` (or admin), else 401/403."""

    async def check(request: Request) -> Principal:
        principal = authenticate(
            _engine(request).keys, request.headers.get("authorization", ""), scope
        )
        request.state.principal = principal
        return principal

    return check


def authenticate(keys: KeyRing, header: str, scope: str) -> Principal:
    """The principal of an ``Authorization: Bearer <key>`` header with ``scope`` (or
    admin); Unauthorized or Forbidden otherwise."""
    kind, _, token = header.partition(" ")
    if kind.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    principal = keys.verify(token.strip())
    principal.require(scope)
    return principal
