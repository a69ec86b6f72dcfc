"""The "archive" consumer: copies the event log into the lake, each event exactly once.

An event it cannot process (a record another producer wrote with a broken JSON field, an
empty id…) is retried on the next passes; after ``max_attempts`` it is parked in the
dead-letter store with its error, and the events after it flow on. Once the cause is
fixed, a replay (``clickrec dlq replay``) archives it, exactly once like every other.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from clickrec.backends.base import EventLog, Lake
from clickrec.core import memory
from clickrec.core.clock import Clock, SystemClock
from clickrec.core.errors import Conflict
from clickrec.observability import tracing
from clickrec.observability.logs import FailureStreak

logger = logging.getLogger("clickrec.archive")

# Test-only crash hook. With CLICKREC_CRASH_AFTER_LAKE_WRITE=1 in the environment (read once,
# at import), run_once kills the process right after the lake write and before the offset
# commit: the one moment where a crash leaves files the offset does not cover. The crash test
# uses it to prove that recover() makes the archive exactly-once. Never set it in production.
_CRASH_AFTER_LAKE_WRITE = os.environ.get("CLICKREC_CRASH_AFTER_LAKE_WRITE") == "1"


class ArchiveConsumer:
    """Moves batches from the log to the lake; the lake write always precedes the commit."""

    def __init__(
        self,
        log: EventLog,
        lake: Lake,
        name: str = "archive",
        batch_size: int = 50_000,
        max_attempts: int = 3,
        clock: Clock | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.log = log
        self.lake = lake
        self.name = name
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.clock = clock or SystemClock()
        self._attempts: dict[int, int] = {}  # seq -> failed passes so far
        self._recovered = False
        self._busy = False  # archived something since it was last caught up
        self._lost_writer = False  # the lake refused a write: its writer lock went to another
        self._failures = FailureStreak(logger, "archive pass")
        # Work that needs the lake's writer lock, run between two batches (erasures).
        self.between_batches: Callable[[], object] | None = None

    def recover(self) -> int:
        """Drop lake files a crash left past the committed offset; count them."""
        dropped = self.lake.drop_uncommitted(self.log.get_offset(self.name))
        if dropped:
            logger.warning("dropped %d uncommitted lake file(s) left by a crash", dropped)
        self._recovered = True
        return dropped

    def run_once(self) -> int:
        """Archive up to ``batch_size`` events after the committed offset; 0 when caught up."""
        try:
            return self._run_once()
        except BaseException:
            # The lake write may have happened and the offset commit not (the log's store
            # went away in between): the next pass drops those files before it writes again.
            self._recovered = False
            raise

    def _run_once(self) -> int:
        # A batch written over an unrecovered residue would duplicate events, so recovery is
        # not left to the caller's memory.
        if not self._recovered:
            self.recover()
        offset = self.log.get_offset(self.name)
        if not tracing.enabled():
            return self._archive(self.log.read(offset, self.batch_size))
        if self.log.last_seq() <= offset:
            return 0  # caught up: an idle pass makes no span
        with tracing.span("archive.batch", {"clickrec.consumer": self.name}, root=True) as span:
            with tracing.span("log.read") as read:
                batch = self.log.read(offset, self.batch_size)
                read.set_attribute("clickrec.rows", batch.num_rows)
            if batch.num_rows:
                first, last = batch["seq"][0].as_py(), batch["seq"][-1].as_py()
                span.set_attributes(
                    {"clickrec.log.first_seq": first, "clickrec.log.last_seq": last}
                )
                # Links to the appends of these events: the trace from their arrival.
                traced = self.log.trace_links(first, last, tracing.MAX_LINKS)
                span.set_attribute("clickrec.trace_links", tracing.add_links(span, traced))
            archived = self._archive(batch)
            span.set_attribute("clickrec.archived", archived)
            return archived

    def _archive(self, batch: pa.Table) -> int:
        """Write one batch read from the log to the lake and commit the offset past it."""
        if batch.num_rows == 0:
            return 0
        seqs = batch["seq"].to_pylist()
        bad = problems(batch)
        parked: set[int] = set()
        if bad:  # parked by a pass that crashed before its offset commit: not again
            known = self.log.dead_letters(self.name, _EVERY_STATE, [seqs[i] for i in bad])
            parked = {d["seq"] for d in known}
        cut, letters = batch.num_rows, []
        for i, error in bad.items():
            seq = seqs[i]
            if seq in parked:
                continue
            attempts = self._attempts[seq] = self._attempts.get(seq, 0) + 1
            if attempts < self.max_attempts:
                cut = i  # retried on the next pass; what comes before it goes on
                logger.warning("event seq %d not archived (attempt %d): %s", seq, attempts, error)
                break
            letters.append((seq, batch["event_id"][i].as_py(), error, attempts))
        skip = parked | {seq for seq, _, _, _ in letters}
        if cut == 0:
            return 0
        keep = [i for i in range(cut) if seqs[i] not in skip]
        if keep:
            with tracing.span("lake.write") as span:
                files = self.lake.write_batch(batch.take(keep), seqs[0], seqs[cut - 1])
                span.set_attributes(
                    {"clickrec.lake.files": len(files), "clickrec.lake.rows": len(keep)}
                )
        if _CRASH_AFTER_LAKE_WRITE:
            os._exit(137)
        if letters:  # before the offset moves past them, so a crash cannot lose them
            self.log.park(self.name, letters, self.clock.now())
            logger.error("parked %d event(s) in the dead-letter store", len(letters))
            for seq, _, _, _ in letters:
                self._attempts.pop(seq, None)
        self.log.commit_offset(self.name, seqs[cut - 1])
        self.log.prune_trace_links(seqs[cut - 1])
        return cut

    def replay_dead_letters(self) -> int:
        """Archive the parked events a replay was asked for; those still bad stay parked
        with their new error. Returns how many were archived."""
        wanted = self.log.dead_letters(self.name, ("replay",))
        if not wanted:
            return 0
        rows = self.log.read_seqs([d["seq"] for d in wanted])
        bad = problems(rows)
        seqs = rows["seq"].to_pylist()
        attempts = {d["seq"]: d["attempts"] for d in wanted}
        if bad:
            self.log.park(
                self.name,
                [
                    (seqs[i], rows["event_id"][i].as_py(), error, attempts[seqs[i]] + 1)
                    for i, error in bad.items()
                ],
                self.clock.now(),
            )
        done = [i for i in range(rows.num_rows) if i not in bad]
        for i in done:  # one part per event, named by its seq: a rerun rewrites the same file
            self.lake.write_batch(rows.take([i]), seqs[i], seqs[i])
        if done:
            self.log.set_dead_state([seqs[i] for i in done], "done", self.clock.now())
            logger.info("replayed %d dead letter(s) into the lake", len(done))
        return len(done)

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
            if self._lost_writer:  # another consumer took the lake over (a lapsed lease)
                self.lake.release_writer()
                logger.warning("the lake's writer lock was lost; waiting to take it again")
                if not self.lake.acquire_writer(stop):
                    return
                self._lost_writer = False
                self._recovered = False  # what the other writer left is recovered first
                continue
            self._attempt(self.replay_dead_letters)
            if self.between_batches is not None:
                self.between_batches()
            if archived is None or archived == 0:
                if archived == 0 and self._busy:  # caught up after work: memory back to the OS
                    pa.default_memory_pool().release_unused()
                    memory.trim()
                self._busy = False
                stop.wait(idle_seconds)
            else:
                self._busy = True
        self._flush()

    def _flush(self) -> None:
        """Archive everything appended before the stop; a short batch means caught up."""
        while (archived := self._attempt(self.run_once)) == self.batch_size:
            pass
        if archived is None:
            logger.error("archive flush on stop failed; the log still holds the events")

    def _attempt(self, step: Callable[[], int]) -> int | None:
        """Run one step; log a failure instead of letting it end the loop (None = failed).
        A Conflict from the lake means this consumer no longer holds its writer lock."""
        try:
            done = step()
        except Conflict:
            logger.exception("archive pass refused by the lake")
            self._lost_writer = True
            return None
        except Exception:
            self._failures.failed()
            return None
        self._failures.worked()
        return done


_JSON_COLUMNS = ("impression", "context", "properties")
_EVERY_STATE = ("parked", "replay", "done", "purged")
_REQUIRED = ("event_id", "session_id", "item_id", "event_type")


def problems(batch: pa.Table) -> dict[int, str]:
    """Rows the lake must not take, by index, with what is wrong (in row order). Events
    that came through the API never have any; a record another producer wrote might."""
    found: dict[int, str] = {}
    for name in _REQUIRED:
        if name in batch.column_names:
            column = batch.column(name)
            empty = pc.or_kleene(pc.is_null(column), pc.equal(pc.utf8_length(column), 0))
            for i in pc.indices_nonzero(pc.fill_null(empty, True)).to_pylist():
                found.setdefault(i, f"{name} is empty")
    if "timestamp" in batch.column_names:
        ts = batch.column("timestamp").to_numpy(zero_copy_only=False).astype(float)
        for i in np.flatnonzero(~np.isfinite(ts)).tolist():
            found.setdefault(i, "timestamp is not a finite number")
    for name in _JSON_COLUMNS:
        if name not in batch.column_names:
            continue
        for i, text in enumerate(batch.column(name).to_pylist()):
            if text is None:
                continue
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                found.setdefault(i, f"{name} is not valid JSON: {exc}")
    return dict(sorted(found.items()))
