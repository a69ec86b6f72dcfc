"""What an operator sees of each request, once it is answered: the request span (named by
its route), one access log line, the latency metric, and an audit entry for each change an
admin key makes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from clickrec.api.middleware.context import RequestContext, context_of
from clickrec.observability import tracing
from clickrec.observability.metrics import Metrics

# Routes an admin key may call at volume that change no configuration: not audited. The
# AWS-compatible ones (api/aws.py) are POSTs that send events or read recommendations.
DATA_PLANE = {
    "/v1/events",
    "/v1/rankings",
    "/v1/batch-jobs",
    "/events",
    "/recommendations",
    "/personalize-ranking",
}
# Routes whose path names a reader: their audit entries keep the route, not the id.
_PRIVATE_ROUTES = {"/v1/users/{user_id:path}"}

access_log = logging.getLogger("clickrec.access")


@dataclass(frozen=True)
class Unrouted:
    """``scope["route"]`` of an answer a middleware gives before any routing (a CORS
    preflight): its name in the log line and the span; it is not counted in the metric."""

    path: str


class ObservabilityMiddleware:
    """After each HTTP request: its span named and closed, its log line, its latency, its
    audit entry. Needs ContextMiddleware outside it (the request id and the status)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics | None = None,
        audit: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.app = app
        self.audit = audit
        self.latency = metrics.requests if metrics is not None else None
        # labels() takes a lock and checks its arguments: one lookup here instead.
        self._series: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A shared no-op unless tracing is on: then the request's server span.
        with tracing.request_span(scope["method"], scope.get("headers", [])):
            try:
                await self.app(scope, receive, send)
            finally:
                self._record(scope)

    def _record(self, scope: Scope) -> None:
        """The answered request's metric, span name, log line and audit entry."""
        context = context_of(scope)
        elapsed = time.perf_counter() - context.started
        routed = scope.get("route")
        route = getattr(routed, "path", None) or "unmatched"
        if self.latency is not None and not isinstance(routed, Unrouted):
            self._observe(scope["method"], route, context.status, elapsed)
        tracing.finish_request(scope["method"], route, context.status, context.request_id)
        _log_request(scope, route, context, elapsed)
        self._audit(scope, route, context)

    def _observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            assert self.latency is not None
            series = self._series[key] = self.latency.labels(method, route, str(status))
        series.observe(elapsed)

    def _audit(self, scope: Scope, route: str, context: RequestContext) -> None:
        """Every change an admin key makes (not the data plane: events, reads), stored."""
        principal = scope.get("state", {}).get("principal")
        if (
            self.audit is None
            or getattr(principal, "scope", None) != "admin"
            or scope["method"] in ("GET", "HEAD", "OPTIONS")
            or route in DATA_PLANE
        ):
            return
        client = scope.get("client")
        try:
            self.audit(
                {
                    "at": time.time(),
                    "actor": f"{principal.name} ({principal.key_id})",
                    "action": f"{scope['method']} {route}",
                    "target": _audit_target(scope, route),
                    "source": client[0] if client else None,
                    "status": context.status,
                    "request_id": context.request_id,
                }
            )
        except Exception:  # noqa: BLE001 - the answer is sent; say loudly it was not audited
            access_log.exception("could not write the audit log entry of %s", context.request_id)


def _log_request(scope: Scope, route: str, context: RequestContext, elapsed: float) -> None:
    """One JSON line per request: never the key, never the body, never the query."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    principal = scope.get("state", {}).get("principal")
    access_log.info(
        {
            "request_id": context.request_id,
            "method": scope["method"],
            "route": route,
            "status": context.status,
            "ms": round(elapsed * 1000, 2),
            "key": getattr(principal, "name", None),
            **tracing.log_ids(),
        }
    )


def _audit_target(scope: Scope, route: str) -> str:
    """What an audit entry names: the handler's choice, else the path (the route for
    paths that name a reader, so that erasing them leaves no trace in the audit log)."""
    chosen = scope.get("state", {}).get("audit_target")
    if chosen:
        return str(chosen)[:300]
    return route if route in _PRIVATE_ROUTES else str(scope["path"])[:300]
