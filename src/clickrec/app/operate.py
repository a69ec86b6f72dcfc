"""Operating the engine: the stores' gauges (computed here once for /readyz, /metrics, the
dashboard and ``clickrec status``), readiness, the status report, and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clickrec.engine import Engine, ServingEngine
from clickrec.lake.reader import lake_stats
from clickrec.observability.metrics import Metrics

ARCHIVE = "archive"


@dataclass(frozen=True)
class Gauges:
    """Where the log and its consumers stand now."""

    last_seq: int
    """The event log's head."""
    archive_lag: int
    """Log events not yet in the lake."""
    serving_lag: int | None
    """Log events not yet in this server's online state (None: this process serves none)."""
    dead_letters: int
    """Events parked (or waiting for a replay) by the archive."""


def gauges(engine: Engine) -> Gauges:
    last = engine.log.last_seq()
    return Gauges(
        last_seq=last,
        archive_lag=last - engine.log.get_offset(ARCHIVE),
        serving_lag=engine.online_lag(last),
        dead_letters=engine.log.count_dead_letters(ARCHIVE),
    )


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, Any]
    reasons: list[str]


def readiness(engine: ServingEngine) -> Readiness:
    """Ready to serve: stores reachable, a model or the fallback loaded, and the consumers
    within their lag bounds; the reasons when not. Never raises."""
    checks: dict[str, Any] = {}
    reasons: list[str] = []
    limits = engine.settings.limits
    try:
        engine.catalog.ping()
        checks["catalog"] = "ok"
        last = checks["event_log_last_seq"] = engine.log.last_seq()
        lag = checks["archive_lag"] = last - engine.log.get_offset(ARCHIVE)
        if lag > limits.max_archive_lag:
            reasons.append(f"archive lag {lag} events is over {limits.max_archive_lag}")
        behind = checks["serving_lag"] = engine.recommender.lag(last)
        if behind > limits.max_serving_lag:
            reasons.append(f"serving lag {behind} events is over {limits.max_serving_lag}")
    except Exception as exc:  # noqa: BLE001 - readiness reports, never raises
        checks["stores"] = f"unreachable: {type(exc).__name__}"
        reasons.append(f"stores unreachable: {type(exc).__name__}")
    checks["model"] = engine.recommender.model_version or "fallback: trending"
    return Readiness(not reasons, checks, reasons)


def refresh_metrics(engine: ServingEngine, m: Metrics) -> None:
    """Set the scrape-time gauges of /metrics."""
    now = gauges(engine)
    m.consumer_lag.labels(ARCHIVE).set(now.archive_lag)
    m.dead_letters.labels(ARCHIVE).set(now.dead_letters)
    live = engine.catalog.live_model()
    m.model_age.set(engine.clock.now() - live["created_at"] if live else 0.0)
    m.model_metric.clear()
    figures = (live or {}).get("metrics", {})
    for name, value in (figures.get("replay") or figures.get("holdout") or {}).items():
        if isinstance(value, int | float):
            m.model_metric.labels(name).set(value)
    m.training_seconds.clear()
    for run in engine.catalog.list_runs(("succeeded", "failed"), limit=1):
        if run["started_at"] and run["finished_at"]:
            m.training_seconds.labels(run["state"]).set(run["finished_at"] - run["started_at"])
    m.model_info.clear()
    rec = engine.recommender
    m.online_readers.labels("kept").set(len(rec.state.readers))
    m.online_readers.labels("evicted").set(rec.state.readers_evicted)
    if rec.model_version is not None:
        m.model_info.labels(rec.model_version, rec.scorer.recipe).set(1)


def status(engine: Engine) -> dict[str, Any]:
    """The live model, recent training runs and the state of the stores (``clickrec
    status``)."""
    live = engine.catalog.live_model()
    now = gauges(engine)
    return {
        "home": str(engine.settings.home.resolve()),
        "events": now.last_seq,
        "archived": now.last_seq - now.archive_lag,
        "dead_letters": now.dead_letters,
        "items": engine.catalog.count_items(),
        "lake": lake_stats(engine.lake),
        "live_model": None
        if live is None
        else {
            "version": live["version"],
            "recipe": live["recipe"],
            "mrr@20": live["metrics"].get("mrr@20"),
        },
        "runs": [
            {k: r[k] for k in ("id", "state", "trigger", "step", "model_version", "error")}
            for r in engine.catalog.list_runs(limit=5)
        ],
    }


def audit_log(engine: Engine, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    """Admin actions, newest first, at most ``limit``; ``before`` pages back (entries
    below that id)."""
    return engine.catalog.audit_entries(limit, before)


def audit_local(engine: Engine, actor: str, action: str, target: str | None = None) -> None:
    """Record an admin action made on this machine (the command line) in the same audit
    log as the API's (whose rows its middleware writes)."""
    engine.catalog.audit(
        {
            "at": engine.clock.now(),
            "actor": actor,
            "action": action,
            "target": target,
            "source": "local",
            "status": None,
            "request_id": None,
        }
    )
