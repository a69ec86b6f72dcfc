"""Ingestion: validate, deduplicate, append durably, then update the online state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from clickrec.backends.base import TRACEPARENT, AppendResult, EventLog
from clickrec.core.clock import Clock
from clickrec.core.types import Event
from clickrec.ingestion.validation import to_records
from clickrec.observability import tracing


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int


class Ingestor:
    """The one path every event takes, from the HTTP API and from bulk imports alike."""

    def __init__(
        self,
        log: EventLog,
        clock: Clock,
        on_appended: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.log = log
        self.clock = clock
        self.on_appended = on_appended

    async def ingest_async(self, events: Sequence[Event]) -> IngestResult:
        """``ingest`` for the event loop (the HTTP API): the log's group commit, no thread
        held while the disk syncs."""
        records = to_records(events, self.clock.now())
        with tracing.span("log.append") as span:
            if tracing.enabled():
                _mark_trace(records)
            result = await self.log.append_async(records)
            if tracing.enabled():
                _annotate(span, result)
        return self._appended(records, result)

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store a validated batch all-or-nothing; returns after the log has committed it."""
        records = to_records(events, self.clock.now())
        with tracing.span("log.append") as span:
            if tracing.enabled():
                _mark_trace(records)
            result = self.log.append(records)
            if tracing.enabled():
                _annotate(span, result)
        return self._appended(records, result)

    def _appended(self, records: list[dict[str, Any]], result: AppendResult) -> IngestResult:
        """Hand the new records to the online state; what the caller is told."""
        if self.on_appended is not None and result.inserted:
            with tracing.span("online.apply"):
                self.on_appended([records[i] for i in result.inserted])
        return IngestResult(accepted=len(result.inserted), duplicates=result.duplicates)


def _mark_trace(records: list[dict[str, Any]]) -> None:
    """Let the log keep this append's trace context beside its seqs, so the archive's
    span can link back to it (once per batch, never per event)."""
    parent = tracing.traceparent()
    if parent is not None and records:
        records[0][TRACEPARENT] = parent


def _annotate(span: Span, result: AppendResult) -> None:
    attributes: dict[str, int] = {
        "clickrec.events.accepted": len(result.inserted),
        "clickrec.events.duplicates": result.duplicates,
    }
    if result.seqs:
        attributes["clickrec.log.first_seq"] = result.seqs[0]
        attributes["clickrec.log.last_seq"] = result.seqs[-1]
    span.set_attributes(attributes)
