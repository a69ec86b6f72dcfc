"""The FastAPI app factory."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware

from clickrec import __version__
from clickrec.api import aws, dashboard, docs, errors, site
from clickrec.api.limits import Rate, RateLimiter, SharedBuckets
from clickrec.api.middleware.auth import AuthenticationMiddleware
from clickrec.api.middleware.context import ContextMiddleware
from clickrec.api.middleware.headers import Cors, SecurityHeadersMiddleware
from clickrec.api.middleware.limits import (
    BodyLimitMiddleware,
    HeaderLimitMiddleware,
    RateLimitMiddleware,
)
from clickrec.api.middleware.observability import ObservabilityMiddleware
from clickrec.api.middleware.raw_routes import RawRoutesMiddleware
from clickrec.api.raw import RawRoute, RawRoutes
from clickrec.api.routes import ingest_events, router
from clickrec.engine import ServingEngine
from clickrec.observability.metrics import create_metrics
from clickrec.observability.series import Sample, Series, read_counters


def create_app(engine: ServingEngine) -> FastAPI:
    # The schema and its interactive page are served by api/docs.py from the package's files.
    app = FastAPI(
        title="clickrec", version=__version__, openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.engine = engine
    app.state.metrics = create_metrics()
    errors.install(app)
    app.include_router(router)
    app.include_router(aws.router)  # Amazon Personalize's API, for boto3 (docs/personalize.md)
    app.include_router(dashboard.router)  # GET /dashboard: the built-in operations page
    app.include_router(docs.router)  # GET /docs and /openapi.json: the API reference
    app.include_router(site.router)  # GET /tracker.js: the page tracker (docs/tracker.md)
    metrics = app.state.metrics
    app.state.series = Series(Sample(engine.clock.now(), read_counters(metrics)))
    engine.recommender.on_fresh = lambda path, s: metrics.freshness.labels(path).observe(s)
    engine.recommender.on_behind = metrics.answers_behind.inc
    raw = RawRoutes(
        engine.keys,
        [
            RawRoute(
                "POST", "/v1/events", "events", lambda body: ingest_events(engine, metrics, body)
            )
        ],
    )
    limits = engine.settings.limits
    burst = limits.burst_seconds
    limiter = RateLimiter(
        Rate(limits.per_address_rps, limits.per_address_rps * burst),
        {
            scope: Rate(rps, rps * burst)
            for scope, rps in (
                ("ingest", limits.ingest_rps),
                ("read", limits.read_rps),
                ("admin", limits.admin_rps),
                ("tracker", limits.tracker_rps),
            )
        },
        {"tracker": Rate(limits.tracker_per_address_rps, limits.tracker_per_address_rps * burst)},
        SharedBuckets(engine.shared_limits) if engine.shared_limits is not None else None,
    )
    # Outermost first; api/middleware/__init__.py says why in this order.
    stack = [
        Middleware(ContextMiddleware),
        Middleware(ObservabilityMiddleware, metrics=metrics, audit=engine.catalog.audit),
        Middleware(
            SecurityHeadersMiddleware,
            cors=Cors(engine.keys, {"/v1/events"}, engine.settings.server.cors_origins),
        ),
        Middleware(HeaderLimitMiddleware, max_bytes=limits.max_header_bytes),
        Middleware(AuthenticationMiddleware, keys=engine.keys),
        Middleware(RateLimitMiddleware, limiter=limiter),
        Middleware(
            BodyLimitMiddleware,
            max_body=engine.settings.server.max_body_bytes,
            body_timeout=limits.body_timeout_seconds,
        ),
        Middleware(RawRoutesMiddleware, routes=raw),
    ]
    for layer in reversed(stack):  # add_middleware wraps what was added before
        app.add_middleware(layer.cls, *layer.args, **layer.kwargs)
    return app
