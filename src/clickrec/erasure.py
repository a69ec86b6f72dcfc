"""Erasing a reader (``DELETE /v1/users/{id}``, ``clickrec users erase``): a job that
leaves no byte of the reader's ids in the home folder.

Two phases, each run by the one process that may do it:

1. **online** (a serving process, which holds the reader's online history): the history
   (the user's and their sessions'), the event log rows (theirs, and the anonymous ones of
   their sessions: what they read before logging in), their dead letters, the profile,
   audit entries that name them, and their lines in batch-job outputs. Every other serving
   process (replicas, ``serve --processes``) then forgets the reader's history too, and
   says so in the catalog.
2. **lake** (the archive consumer, between two batches, as the lake's only writer: a batch
   it read before phase 1 has been written by then), once every serving process alive has
   forgotten the reader: every Parquet part holding the reader's rows is rewritten without
   them. Then the log's write-ahead file is truncated,
   the job's own copy of the ids cleared and the catalog rebuilt (VACUUM), so no deleted
   row survives in a free page or an old WAL frame.

Trained models hold item ids, popularity and item-item similarity, never a reader's id;
the next training reads the log and the lake, which no longer hold the reader.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from clickrec.backends.base import EventLog, Lake
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.batch import ERASED, Forgotten, create_file, record_erased, scrub_line
from clickrec.core.clock import Clock

if TYPE_CHECKING:
    from clickrec.serving.service import Recommender

log = logging.getLogger("clickrec.erasure")

REPLICA_TTL = 30.0
"""Seconds without a heartbeat after which a serving process counts as gone: the lake
phase no longer waits for it (it rebuilds its state from the log, without the reader)."""


def view(job: dict[str, Any]) -> dict[str, Any]:
    """What clients see of a job: never the reader's ids."""
    return {k: job.get(k) for k in ("id", "state", "created_at", "finished_at", "counts", "error")}


class Eraser:
    def __init__(
        self,
        catalog: SQLCatalog,
        log_store: EventLog,
        lake: Lake,
        clock: Clock,
        batch_folder: Path | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.replica_id = replica_id  # a serving process's own id; None in a worker or the CLI
        self.catalog = catalog
        self.log = log_store
        self.lake = lake
        self.clock = clock
        self.batch_folder = batch_folder
        # Whether a batch job made at or before this time still runs (the server's jobs):
        # an erasure waits for those, or their output could name the reader afterwards.
        self.batch_running_since: Callable[[float], bool] = lambda t: False
        self.wake = threading.Event()

    def submit(self, user_id: str) -> dict[str, Any]:
        job = self.catalog.add_erasure({"user_id": user_id}, self.clock.now())
        self.wake.set()
        return job

    def beat(self) -> None:
        """A serving process says it is alive: erasures wait for it to forget readers."""
        if self.replica_id is not None:
            self.catalog.beat(self.replica_id, self.clock.now())

    def leave(self) -> None:
        """A serving process stops: erasures no longer wait for it."""
        if self.replica_id is not None:
            self.catalog.drop_replica(self.replica_id)

    # -- phase 1: the serving processes ----------------------------------------------------
    def run_online(self, rec: Recommender | None) -> int:
        """Phase 1 of every pending job, and this process's forgetting of the readers that
        another process erased; returns how many jobs moved on to the lake phase."""
        self.beat()
        moved = 0
        for job in self.catalog.list_erasures(["pending"]):
            if self.batch_running_since(job["created_at"]):
                continue  # retried on the next pass, once those batch jobs have finished
            try:
                moved += self._online(job, rec)
            except Exception as exc:  # noqa: BLE001 - retried on the next pass
                log.exception("erasure %s: online phase failed; retrying", job["id"])
                self.catalog.update_erasure(job["id"], error=f"online phase: {type(exc).__name__}")
        if rec is not None and self.replica_id is not None:
            for job in self.catalog.list_erasures(["lake"]):
                if self.replica_id in self.catalog.erasure_acks(job["id"]):
                    continue
                if self.batch_running_since(job["created_at"]):
                    continue  # this process's batch jobs made before it may yet name them
                subject = job["subject"]
                sessions = subject["sessions"]
                rec.forget([f"u:{subject['user_id']}", *(f"s:{s}" for s in sessions)])
                self._scrub_batch_outputs(subject["user_id"], set(sessions))  # those jobs'
                self.catalog.ack_erasure(job["id"], self.replica_id)
        return moved

    def under_way(self) -> Forgotten:
        """The readers of every erasure not yet done: a batch job that starts now leaves
        them out (one made before an erasure is waited for, then scrubbed)."""
        users: set[str] = set()
        sessions: set[str] = set()
        for job in self.catalog.list_erasures(["pending", "lake"], limit=100_000):
            subject = job["subject"] or {}
            if "user_id" in subject:
                users.add(subject["user_id"])
            sessions.update(subject.get("sessions", ()))
        return Forgotten(frozenset(users), frozenset(sessions))

    def _online(self, job: dict[str, Any], rec: Recommender | None) -> bool:
        user = job["subject"]["user_id"]
        events, sessions = self.log.erase_reader(user)
        readers = [f"u:{user}", *(f"s:{s}" for s in sessions)]
        forgotten = rec.forget(readers) if rec is not None else 0
        counts = {
            "events": events,
            "sessions": len(sessions),
            "online_readers": forgotten,
            "profile": int(self.catalog.delete_user(user)),
            "audit_entries": self.catalog.scrub_audit([f"/v1/users/{user}"], ERASED),
            "batch_lines": self._scrub_batch_outputs(user, set(sessions)),
        }
        log.info({"message": "erasure online phase done", "erasure": job["id"], **counts})
        moved = self.catalog.update_erasure(
            job["id"],
            expect="pending",
            state="lake",
            subject={"user_id": user, "sessions": sessions},
            counts=counts,
            error=None,
        )
        if moved and rec is not None and self.replica_id is not None:
            self.catalog.ack_erasure(job["id"], self.replica_id)
        return moved

    def _scrub_batch_outputs(self, user: str, sessions: set[str]) -> int:
        """Drop the reader from batch-job outputs; returns how many entries went."""
        if self.batch_folder is None or not self.batch_folder.is_dir():
            return 0
        dropped = 0
        for path in sorted(self.batch_folder.glob("*.jsonl")):
            try:
                dropped += _scrub_output(path, user, sessions)
            except FileNotFoundError:
                continue  # deleted meanwhile (retention): nothing left to scrub
        return dropped

    # -- phase 2: the lake's writer -------------------------------------------------------
    def run_lake(self) -> int:
        """Phase 2 of every job whose online phase is done, in one pass over the lake;
        returns how many jobs finished. Call it only while holding the lake's writer lock.
        A job waits until every serving process alive has forgotten its reader."""
        jobs = self.catalog.list_erasures(["lake"])
        if not jobs:
            return 0
        since = self.clock.now() - REPLICA_TTL
        self.catalog.drop_replica("", older_than=since)  # killed ones never said goodbye
        live = self.catalog.live_replicas(since)
        jobs = [job for job in jobs if live <= self.catalog.erasure_acks(job["id"])]
        if not jobs:
            return 0
        users = [job["subject"]["user_id"] for job in jobs]
        sessions = sorted({s for job in jobs for s in job["subject"]["sessions"]})
        rows = files = 0
        for part in self.lake.parts():
            ids = self.lake.read_part(part, ["user_id", "session_id"])
            doomed = _doomed(ids, users, sessions)
            n = pc.sum(doomed).as_py() or 0
            if not n:
                continue
            table = self.lake.read_part(part)
            self.lake.replace_part(part, table.filter(pc.invert(doomed)))
            rows += n
            files += 1
        scrubbed = self.log.scrub()
        now = self.clock.now()
        for job in jobs:
            counts = {**job["counts"], "lake_rows": rows, "lake_files": files}
            self.catalog.update_erasure(
                job["id"],
                expect="lake",
                state="done",
                finished_at=now,
                subject=None,
                counts=counts,
                error=None if scrubbed else "the log's WAL was busy: not truncated",
            )
            self.catalog.drop_erasure_acks(job["id"])
        self.catalog.compact()  # after the ids left the job rows
        log.info({"message": "erasure done", "jobs": len(jobs), "lake_rows": rows})
        return len(jobs)

    def run_lake_safely(self) -> int:
        """``run_lake`` for a loop that must go on (the archive consumer's)."""
        try:
            return self.run_lake()
        except Exception:  # noqa: BLE001 - retried on the next pass
            log.exception("erasure lake phase failed; retrying")
            return 0


def _doomed(ids: pa.Table, users: list[str], sessions: list[str]) -> pa.ChunkedArray:
    """Rows of these users, and rows with no user in their sessions."""
    user = ids.column("user_id")
    mine = pc.fill_null(pc.is_in(user, value_set=pa.array(users, pa.string())), False)
    if not sessions:
        return mine
    anonymous = pc.and_(
        pc.is_null(user), pc.is_in(ids.column("session_id"), value_set=pa.array(sessions))
    )
    return pc.or_(mine, pc.fill_null(anonymous, False))


def _scrub_output(path: Path, user: str, sessions: set[str]) -> int:
    """Rewrite one output without the reader, line by line into a 0600 temporary file
    swapped in atomically; returns the entries that went. A file where no line changes
    is never rewritten. The job's erased count is raised before the swap: a crash in
    between can count a line twice, never hide a change."""
    readers = Forgotten(frozenset({user}), frozenset(sessions))
    with path.open("rb") as f:
        if not any(scrub_line(line, n, readers)[1] for n, line in enumerate(f, 1)):
            return 0
        f.seek(0)
        tmp = path.with_suffix(".jsonl.erasing")
        dropped = changed = 0
        with create_file(tmp, 0o600) as out:
            for n, line in enumerate(f, 1):
                clean, gone = scrub_line(line, n, readers)
                out.write(clean)
                dropped += gone
                changed += gone > 0
        st = os.fstat(f.fileno())
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # the retention counts from the job
    record_erased(path, changed)
    tmp.replace(path)
    return dropped
