"""Routes served straight from the ASGI scope, below the framework: the event firehose.

``POST /v1/events`` is the one route a site calls for every page view, so its fixed cost
per request matters most. It is still declared in ``routes`` (for the OpenAPI schema) and
shares its code with it, but ``middleware/raw_routes.py`` hands it the body directly: no
routing table, no dependency solving, no request object. Authentication, error bodies, logs
and metrics are the same as on every other route.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import Scope

from clickrec.api import errors
from clickrec.api.middleware.auth import caller_of
from clickrec.core.errors import ClickrecError
from clickrec.keys import KeyRing

log = logging.getLogger("clickrec.api")


@dataclass(frozen=True)
class RawRoute:
    method: str
    path: str  # also the route label in logs and metrics, like a framework route's
    key_scope: str
    handle: Callable[[bytes], Awaitable[Response]]


class RawRoutes:
    def __init__(self, keys: KeyRing, routes: list[RawRoute]) -> None:
        self.keys = keys
        self.routes = {(r.method, r.path): r for r in routes}

    def match(self, scope: Scope) -> RawRoute | None:
        return self.routes.get((scope["method"], scope["path"])) if self.routes else None

    async def serve(self, route: RawRoute, scope: Scope, body: bytes) -> Response:
        scope["route"] = route
        try:
            principal = caller_of(scope, self.keys).require(route.key_scope)
            origin = next((v for k, v in scope["headers"] if k == b"origin"), None)
            principal.require_origin(origin.decode("latin-1") if origin is not None else None)
            scope.setdefault("state", {})["principal"] = principal
            return await route.handle(body)
        except ClickrecError as exc:
            return errors.engine_error_response(exc)
        except Exception:
            log.exception("unexpected error on %s %s", route.method, route.path)
            return errors.JSON(errors.error_body("internal error"), status_code=500)
