"""One protocol per storage role. Backends are chosen by URL scheme in ``registry.py``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Protocol

import pyarrow as pa


@dataclass(frozen=True)
class AppendResult:
    """What an append did: which records (by index in the call) were new, and their seqs."""

    inserted: list[int]
    seqs: list[int]
    duplicates: int


TRACEPARENT = "_traceparent"  # a flag on the first record of a traced append (see append)


class EventLog(Protocol):
    """The durable, ordered stream of events (the role Kinesis plays)."""

    before_commit: Callable[[list[int]], None] | None
    """Called with the seqs of appended records after they are assigned and before any
    reader can see them, so a process can tell its own appends apart while tailing."""

    def append(self, records: Sequence[dict[str, Any]]) -> AppendResult:
        """Durably append records (dicts of EVENT_COLUMNS without ``seq``).

        Returns only after the records are committed. A record whose ``event_id`` is already
        in the log (or earlier in the same call) is a duplicate and is not stored again;
        a record flagged ``_fresh_id`` carries an id the server just made, so the log need
        not look it up. When the first record carries ``TRACEPARENT`` (tracing is on), the
        log keeps (seq range → traceparent) of the call for ``trace_links``.
        Thread-safe.
        """
        ...

    async def append_async(self, records: Sequence[dict[str, Any]]) -> AppendResult:
        """``append`` for the event loop: the same result and durability, without holding
        a thread while it waits; concurrent calls are committed together (group commit)."""
        ...

    def read(self, after_seq: int, limit: int, columns: Sequence[str] | None = None) -> pa.Table:
        """Up to ``limit`` events with ``seq > after_seq`` in seq order (EVENT_SCHEMA, or
        only ``columns``)."""
        ...

    def read_tail(self, last: int, columns: Sequence[str] | None = None) -> pa.Table:
        """The newest ``last`` events in seq order (seqs are dense, so: seq > last_seq - last)."""
        ...

    def last_seq(self) -> int:
        """The highest seq committed, 0 for an empty log."""
        ...

    def get_offset(self, consumer: str) -> int:
        """The last seq a consumer has committed as processed (0 if none)."""
        ...

    def commit_offset(self, consumer: str, seq: int) -> None: ...

    # Dead letters: events a consumer could not process, parked with their error (the
    # events themselves stay in the log, found by seq).
    def park(
        self,
        consumer: str,
        letters: Sequence[tuple[int, str | None, str, int]],
        now: float,
    ) -> None:
        """Park (seq, event_id, error, attempts) rows; parking one again updates it."""
        ...

    def dead_letters(
        self,
        consumer: str | None = None,
        states: Sequence[str] = ("parked", "replay"),
        seqs: Sequence[int] | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Dead letters in seq order: seq, consumer, event_id, error, attempts, state
        (parked, replay, done, purged), parked_at, replayed_at."""
        ...

    def count_dead_letters(
        self, consumer: str | None = None, states: Sequence[str] = ("parked", "replay")
    ) -> int:
        """How many dead letters are in ``states`` (of one consumer, or all), without
        loading them."""
        ...

    def set_dead_state(
        self, seqs: Sequence[int] | None, state: str, now: float | None = None
    ) -> int:
        """Move parked (or replay-requested) letters to ``state``; None: all of them."""
        ...

    def read_seqs(self, seqs: Sequence[int]) -> pa.Table:
        """The events with these seqs, in seq order."""
        ...

    def trace_links(self, first_seq: int, last_seq: int, limit: int) -> list[tuple[int, int, str]]:
        """Up to ``limit`` (first_seq, last_seq, traceparent) of traced appends that overlap
        the seq range, oldest first: how a consumer's span links to the events' arrival."""
        ...

    def prune_trace_links(self, through_seq: int) -> int:
        """Forget the trace links of appends wholly at or below ``through_seq``; count them."""
        ...

    def erase_reader(self, user_id: str) -> tuple[int, list[str]]:
        """Delete the reader's events and those of their sessions with no user id, leaving
        no copy in the store's files once ``scrub`` ran; (events deleted, session ids)."""
        ...

    def scrub(self, attempts: int = 50) -> bool:
        """Remove superseded copies of deleted rows (a write-ahead log); False if busy."""
        ...

    def close(self) -> None: ...


class Lake(Protocol):
    """Columnar archive of the event log (the role Firehose → S3 plays).

    Parts are named by paths: local ones for a folder, ``bucket/key`` ones for S3; a path
    is only ever handed back to the lake that listed it.
    """

    @property
    def root(self) -> PurePath:
        """Where the lake is: a folder, or ``bucket/prefix``."""
        ...

    def write_batch(self, table: pa.Table, batch_first: int, batch_last: int) -> Sequence[PurePath]:
        """Write one consumer batch (seq range inclusive), one Parquet file per event date."""
        ...

    def drop_uncommitted(self, committed_seq: int) -> int:
        """Remove files of batches past the committed offset (a crash residue); count them."""
        ...

    def has_files(self) -> bool: ...

    def parts(self, max_seq: int | None = None) -> Sequence[PurePath]:
        """Every part file (``.../date=YYYY-MM-DD/<name>.parquet``), or only those that may
        hold a seq <= ``max_seq``."""
        ...

    def read_part(self, path: PurePath, columns: list[str] | None = None) -> pa.Table:
        """One part's rows (decrypted); DataKeyError naming the file when it cannot be."""
        ...

    def part_rows(self, path: PurePath) -> int: ...

    def rewrite_part(self, path: PurePath) -> None:
        """Rewrite one part atomically under the active data key (key rotation)."""
        ...

    def replace_part(self, path: PurePath, table: pa.Table) -> None:
        """Replace one part's rows atomically (erasure); no rows removes the part."""
        ...

    def acquire_writer(self, stop: threading.Event, poll: float = 0.2) -> bool:
        """Wait to become the lake's only writer (until ``stop``); True when acquired.

        Two archive consumers at once (a restarted server beside its old, still flushing
        worker) would recover over each other's batches; this lock makes that impossible.
        """
        ...

    def release_writer(self) -> None: ...

    def close(self) -> None:
        """Release the writer lock if held and any connection."""
        ...


class ModelStore(Protocol):
    """Where trained model artifacts live: one folder of files per version.

    Artifacts are saved to and loaded from local folders (``models`` knows nothing of
    stores); the store moves those folders to where they live, and back.
    """

    def folder_for(self, version: str) -> Path:
        """The local folder to save a new version's artifact into."""
        ...

    def publish(self, version: str, folder: Path) -> str:
        """Make the saved folder the version's artifact; its location, for the catalog."""
        ...

    def fetch(self, location: str) -> Path:
        """A local folder holding the artifact at ``location`` (as ``publish`` returned)."""
        ...

    def files(self) -> list[str]:
        """Every artifact file (key rotation re-seals them one by one)."""
        ...

    def rewrite(self, file: str, change: Callable[[bytes], bytes]) -> None:
        """Replace one artifact file's bytes with ``change(bytes)``, atomically."""
        ...

    def close(self) -> None: ...
