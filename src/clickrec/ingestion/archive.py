"""The "archive" consumer: copies the event log into the lake, each event exactly once."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from clickrec.backends.base import EventLog, Lake

logger = logging.getLogger("clickrec.archive")

# Test-only crash hook. With CLICKREC_CRASH_AFTER_LAKE_WRITE=1 in the environment (read once,
# at import), run_once kills the process right after the lake write and before the offset
# commit: the one moment where a crash leaves files the offset does not cover. The crash test
# uses it to prove that recover() makes the archive exactly-once. Never set it in production.
_CRASH_AFTER_LAKE_WRITE = os.environ.get("CLICKREC_CRASH_AFTER_LAKE_WRITE") == "1"


class ArchiveConsumer:
    """Moves batches from the log to the lake; the lake write always precedes the commit."""

    def __init__(
        self, log: EventLog, lake: Lake, name: str = "archive", batch_size: int = 50_000
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.log = log
        self.lake = lake
        self.name = name
        self.batch_size = batch_size
        self._recovered = False

    def recover(self) -> int:
        """Drop lake files a crash left past the committed offset; count them."""
        dropped = self.lake.drop_uncommitted(self.log.get_offset(self.name))
        if dropped:
            logger.warning("dropped %d uncommitted lake file(s) left by a crash", dropped)
        self._recovered = True
        return dropped

    def run_once(self) -> int:
        """Archive up to ``batch_size`` events after the committed offset; 0 when caught up."""
        # A batch written over an unrecovered residue would duplicate events, so recovery is
        # not left to the caller's memory.
        if not self._recovered:
            self.recover()
        batch = self.log.read(self.log.get_offset(self.name), self.batch_size)
        if batch.num_rows == 0:
            return 0
        seqs = batch["seq"]
        first, last = seqs[0].as_py(), seqs[-1].as_py()
        self.lake.write_batch(batch, first, last)
        if _CRASH_AFTER_LAKE_WRITE:
            os._exit(137)
        self.log.commit_offset(self.name, last)
        return batch.num_rows

    def run_forever(self, stop: threading.Event, idle_seconds: float = 1.0) -> None:
        """Archive until ``stop`` is set, then flush what is left and return.

        Runs only while it holds the lake's writer lock, so one consumer archives at a time.
        """
        if not self.lake.acquire_writer(stop):
            return
        try:
            self._run(stop, idle_seconds)
        finally:
            self.lake.release_writer()

    def _run(self, stop: threading.Event, idle_seconds: float) -> None:
        self._attempt(self.recover)
        while not stop.is_set():
            archived = self._attempt(self.run_once)
            if archived is None or archived == 0:
                stop.wait(idle_seconds)
        self._flush()

    def _flush(self) -> None:
        """Archive everything appended before the stop; a short batch means caught up."""
        while (archived := self._attempt(self.run_once)) == self.batch_size:
            pass
        if archived is None:
            logger.error("archive flush on stop failed; the log still holds the events")

    def _attempt(self, step: Callable[[], int]) -> int | None:
        """Run one step; log a failure instead of letting it end the loop (None = failed)."""
        try:
            return step()
        except Exception:
            logger.exception("archive pass failed; retrying")
            return None
