"""Ingestion: validate, deduplicate, append durably, then update the online state."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clickrec.backends.base import AppendResult, EventLog
from clickrec.core.clock import Clock
from clickrec.core.types import Event
from clickrec.ingestion.validation import to_records


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
        return self._appended(records, await self.log.append_async(records))

    def ingest(self, events: Sequence[Event]) -> IngestResult:
        """Store a validated batch all-or-nothing; returns after the log has committed it."""
        records = to_records(events, self.clock.now())
        return self._appended(records, self.log.append(records))

    def _appended(self, records: list[dict[str, Any]], result: AppendResult) -> IngestResult:
        """Hand the new records to the online state; what the caller is told."""
        if self.on_appended is not None and result.inserted:
            self.on_appended([records[i] for i in result.inserted])
        return IngestResult(accepted=len(result.inserted), duplicates=result.duplicates)
