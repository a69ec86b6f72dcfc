"""The built-in operations dashboard: a static page (GET /dashboard, no key needed to load
it) whose own script asks for an admin key and polls GET /v1/dashboard/data."""

from __future__ import annotations

import math
from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request, Response

from clickrec.api.routes import Admin, Eng
from clickrec.api.schemas import DashboardData
from clickrec.app import operate
from clickrec.core.errors import NotFound
from clickrec.engine import ServingEngine
from clickrec.observability.metrics import Metrics
from clickrec.observability.series import Sample, Series, read_counters
from clickrec.serving.service import Extras

router = APIRouter()
STATIC = resources.files("clickrec.api") / "static" / "dashboard"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
TRENDING = 10
MODELS = 20


def _static(name: str, media_type: str) -> Response:
    return Response(STATIC.joinpath(name).read_bytes(), media_type=media_type)


@router.get("/dashboard", include_in_schema=False)
async def page() -> Response:
    return _static("index.html", "text/html; charset=utf-8")


@router.get("/dashboard/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no dashboard file {name}")
    return _static(name, ASSETS[name])


@router.get("/v1/dashboard/data", response_model=DashboardData, tags=["operations"])
def data(request: Request, engine: Eng, _: Admin) -> dict[str, Any]:
    """The dashboard's figures: recent rates and gauges (sampled on demand, at most every
    few seconds), the online click-through rate, model versions and trending items."""
    metrics: Metrics = request.app.state.metrics
    series: Series = request.app.state.series
    now = engine.clock.now()
    series.sample(now, lambda at: take_sample(engine, metrics, at))
    counters = series.latest.counters
    return {
        "at": now,
        "started_at": series.started_at,
        "sample_seconds": series.every,
        "events_per_minute": asdict(series.events_per_minute()),
        "latency_ms": [asdict(line) for line in series.latency_ms()],
        "consumer_lag": [asdict(line) for line in series.consumer_lag()],
        "dead_letters": asdict(series.dead_letters()),
        "ctr": asdict(series.ctr()),
        "totals": {
            "events": counters.events,
            "served": counters.served,
            "clicks": counters.clicks,
            "ctr": counters.clicks / counters.served if counters.served else None,
        },
        "models": _models(engine),
        "trending": _trending(engine),
    }


def take_sample(engine: ServingEngine, metrics: Metrics, at: float) -> Sample:
    """The counters and the stores' gauges now (the same figures /metrics reports)."""
    now = operate.gauges(engine)
    lag = {"archive": now.archive_lag}
    if now.serving_lag is not None:
        lag["online state"] = now.serving_lag
    return Sample(at, read_counters(metrics), lag, now.dead_letters)


def _models(engine: ServingEngine) -> list[dict[str, Any]]:
    served = engine.recommender.model_version
    return [
        {
            "version": row["version"],
            "created_at": row["created_at"],
            "recipe": row["recipe"],
            "live": bool(row["live"]),
            "served": row["version"] == served,
            "metrics": _numbers(_figures(row.get("metrics") or {})),
        }
        for row in engine.catalog.list_models(MODELS)
    ]


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def _trending(engine: ServingEngine) -> list[dict[str, Any]]:
    """What readers read most now, as the recommender ranks it (not counted as served)."""
    ranked = engine.recommender.trending(TRENDING, extras=Extras(("title",)))
    return [
        {
            "item_id": item["item_id"],
            "title": _title((item.get("metadata") or {}).get("title")),
            "score": item["score"],
        }
        for item in ranked.items
        if math.isfinite(item["score"])
    ]


def _title(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """A model's offline figures: its replay's, or the holdout's of a model trained before."""
    return dict(metrics.get("replay") or metrics.get("holdout") or {})
