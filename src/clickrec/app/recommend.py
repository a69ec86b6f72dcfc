"""Recommendations: the live model's answers for a reader, a list to reorder, an item's
neighbours and what trends, each counted as served (the online CTR's denominator) by the
endpoint /metrics names it after, whichever front door asked."""

from __future__ import annotations

from clickrec.engine import ServingEngine
from clickrec.observability.metrics import Metrics
from clickrec.serving.service import Extras, Ranked, Selection


def recommend(
    engine: ServingEngine,
    metrics: Metrics,
    user_id: str | None,
    session_id: str | None,
    n: int,
    category: str | None = None,
    selection: Selection | None = None,
    extras: Extras | None = None,
    context: dict[str, str] | None = None,
) -> Ranked:
    """What this reader (or session) should read next; InvalidInput without either id."""
    ranked = engine.recommender.recommend(
        user_id, session_id, n, category, selection, extras, context
    )
    return _served(metrics, "recommendations", ranked)


def trending(
    engine: ServingEngine,
    metrics: Metrics,
    n: int,
    category: str | None = None,
    selection: Selection | None = None,
    extras: Extras | None = None,
    context: dict[str, str] | None = None,
) -> Ranked:
    """What is read most now (leaning toward the given context's readers)."""
    ranked = engine.recommender.trending(n, category, selection, extras, context)
    return _served(metrics, "trending", ranked)


def similar(
    engine: ServingEngine,
    metrics: Metrics,
    item_id: str,
    n: int,
    category: str | None = None,
    selection: Selection | None = None,
    user_id: str | None = None,
    extras: Extras | None = None,
) -> Ranked:
    """Items read together with ``item_id``; with ``user_id``, a filter may use that
    reader's interactions and profile."""
    ranked = engine.recommender.similar(item_id, n, category, selection, user_id, extras)
    return _served(metrics, "similar", ranked)


def rank(
    engine: ServingEngine,
    metrics: Metrics,
    user_id: str | None,
    session_id: str | None,
    item_ids: list[str],
    selection: Selection | None = None,
    extras: Extras | None = None,
    context: dict[str, str] | None = None,
) -> Ranked:
    """The given items reordered for one reader, best first (items read already last)."""
    ranked = engine.recommender.rank(user_id, session_id, item_ids, selection, extras, context)
    return _served(metrics, "rankings", ranked)


def _served(metrics: Metrics, endpoint: str, ranked: Ranked) -> Ranked:
    metrics.recommendations_served.labels(endpoint).inc()
    return ranked
