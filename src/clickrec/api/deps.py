"""Dependencies of the routes, in one place: the engine and the caller's key."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from clickrec.core.errors import StoreUnavailable, Unauthorized
from clickrec.engine import Engine
from clickrec.keys import Principal
from clickrec.serving.service import Recommender


def engine(request: Request) -> Engine:
    eng: Engine = request.app.state.engine
    return eng


def recommender(request: Request) -> Recommender:
    rec = engine(request).recommender
    if rec is None:
        raise StoreUnavailable("this process does not serve recommendations")
    return rec


def require(scope: str) -> Callable[[Request], Principal]:
    """A dependency that admits a bearer key with ``scope`` (or admin), else 401/403."""

    def check(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        principal = engine(request).keys.verify(token.strip())
        principal.require(scope)
        request.state.principal = principal
        return principal

    return check
