"""Dependencies of the routes, in one place: the engine and the caller's key.

They are coroutines on purpose: they never block for long, and a plain function would
cost every request a hop through the thread pool.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request

from clickrec.api.middleware.auth import caller_of
from clickrec.engine import ServingEngine
from clickrec.keys import Principal


async def engine(request: Request) -> ServingEngine:
    return _engine(request)


def _engine(request: Request) -> ServingEngine:
    eng: ServingEngine = request.app.state.engine
    return eng


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency that admits a bearer key with ``scope`` (or admin), else 401/403; the
    key was verified once, before the body (``middleware/auth.py``)."""

    async def check(request: Request) -> Principal:
        principal = caller_of(request.scope, _engine(request).keys).require(scope)
        request.state.principal = principal
        return principal

    return check
