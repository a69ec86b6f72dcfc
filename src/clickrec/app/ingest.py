"""Sending events: the same path for POST /v1/events and boto3's PutEvents (validated
events in; the log's group commit; the ingest figures of /metrics), and for past
interactions imported from a file (``clickrec import interactions``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clickrec.core.types import Event
from clickrec.engine import Engine
from clickrec.importing import InteractionColumns, Progress, import_interactions
from clickrec.ingestion.service import IngestResult
from clickrec.observability import tracing
from clickrec.observability.metrics import Metrics


async def ingest(engine: Engine, metrics: Metrics, events: Sequence[Event]) -> IngestResult:
    """Append validated events (acknowledged once durable) and count them."""
    result = await engine.ingestor.ingest_async(events)
    if tracing.enabled():
        tracing.annotate(
            {
                "clickrec.events.batch_size": len(events),
                "clickrec.events.accepted": result.accepted,
                "clickrec.events.duplicates": result.duplicates,
            }
        )
    metrics.events_accepted.inc(result.accepted)
    metrics.events_duplicate.inc(result.duplicates)
    metrics.batch_size.observe(len(events))
    # Clicks on recommendations (the online CTR): events that carry a recommendation_id,
    # but not those that only say what a list showed (impressions). A repeated event is
    # not a new click, but which ones repeated is unknown here, so a batch with repeats
    # counts at most accepted.
    shown = engine.settings.serving.ignore_event_types
    clicks = sum(e.recommendation_id is not None and e.event_type not in shown for e in events)
    if clicks:
        metrics.recommendation_clicks.inc(min(clicks, result.accepted))
    return result


def import_history(
    engine: Engine, path: Path, cols: InteractionColumns, progress: Progress
) -> tuple[int, int, int]:
    """Past interactions from a CSV or Parquet file, all validated before any is written;
    (rows, accepted, duplicates). ``progress`` hears of each batch once per pass."""
    return import_interactions(engine.ingestor, path, cols, progress)
