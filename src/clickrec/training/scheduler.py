"""Starts training runs: queued ones, on a schedule, and when the data first suffices."""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Callable

from clickrec.backends.base import EventLog
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import TrainingSettings
from clickrec.core.clock import Clock
from clickrec.observability.logs import FailureStreak
from clickrec.training.pipeline import Pipeline, execute_run

log = logging.getLogger("clickrec.scheduler")


LEASE = "trainer"
LEASE_SECONDS = 60.0
"""How long the trainer's lease lasts without renewal (renewed every quarter of it): a
worker that died is replaced by another worker's trainer after this long."""


class Trainer:
    """Runs pending runs and decides when to start new ones. Any number of workers may run
    one: the one holding the catalog's ``trainer`` lease trains, the others wait their turn
    (a worker that dies mid-run is replaced once its lease expires)."""

    def __init__(
        self,
        pipeline: Pipeline,
        catalog: SQLCatalog,
        log_store: EventLog,
        settings: TrainingSettings,
        clock: Clock,
    ) -> None:
        self.pipeline = pipeline
        self.catalog = catalog
        self.log_store = log_store
        self.settings = settings
        self.clock = clock
        self.wake = threading.Event()
        # How a pending run is executed: in this process by default; the worker hands each
        # run to a child process (``clickrec train --run-id``).
        self.runner: Callable[[str], None] | None = None
        self._threshold_seq = 0  # log size when the last threshold attempt was made
        self.holder = uuid.uuid4().hex
        self.token: int | None = None  # the lease's fencing token while this trainer holds it
        self._holding = threading.Lock()  # the loop and the renewer: one at a time

    def hold(self) -> bool:
        """Take or renew the trainer's lease; True while this trainer holds it. A new
        holder first fails the runs its predecessor left running."""
        with self._holding:
            token = self.catalog.take_lease(LEASE, self.holder, self.clock.now(), LEASE_SECONDS)
            if token is not None and token != self.token:
                log.info("this worker trains now (lease token %d)", token)
                self.token = token
                self.fail_interrupted()
            self.token = token
            return token is not None

    def due_trigger(self) -> str | None:
        """Why a run should start now, or None."""
        last_seq = self.log_store.last_seq()
        if self.catalog.list_runs(states=("pending", "running"), limit=1):
            return None
        done = self.catalog.list_runs(states=("succeeded",), limit=1)
        if not done:
            grown = last_seq >= max(self.settings.min_interactions, self._threshold_seq * 1.1)
            if grown and last_seq > self._threshold_seq:
                self._threshold_seq = last_seq
                return "threshold"
            return None
        latest = done[0]
        trained_on = latest["last_seq"] or 0
        age_hours = (self.clock.now() - (latest["finished_at"] or 0.0)) / 3600.0
        if age_hours >= self.settings.schedule_hours and last_seq > trained_on:
            return "schedule"
        # A site that starts by sending its history would otherwise keep a model made from
        # its first thousand events for hours: retrain whenever the data has grown enough.
        grown = last_seq >= trained_on * (1.0 + self.settings.retrain_growth)
        if grown and age_hours * 60.0 >= self.settings.min_retrain_minutes:
            return "growth"
        return None

    def step(self) -> None:
        """Start a run if one is due, then run every pending run."""
        trigger = self.due_trigger()
        if trigger:
            run = self.catalog.create_run(trigger, self.clock.now())
            log.info("training run %s started (%s)", run["id"], trigger)
        for run in reversed(self.catalog.list_runs(states=("pending",))):
            if self.runner is not None:
                self.runner(run["id"])
            else:
                self.pipeline.fence = (LEASE, self.token) if self.token is not None else None
                execute_run(self.pipeline, self.catalog, run["id"], self.clock)

    def fail_interrupted(self) -> int:
        """Mark runs left "running" by a worker that died as failed (called by the lease's
        new holder: no other trainer can still be running them); otherwise no run would
        ever start again."""
        stale = self.catalog.list_runs(states=("running",))
        for run in stale:
            self.catalog.update_run(
                run["id"],
                state="failed",
                error="interrupted: the worker running it stopped",
                finished_at=self.clock.now(),
            )
            log.warning("training run %s was interrupted; marked failed", run["id"])
        return len(stale)

    def run_forever(self, stop: threading.Event, interval: float) -> None:
        renewer = threading.Thread(target=self._renew, args=(stop,), name="trainer-lease")
        renewer.start()
        try:
            failures = FailureStreak(log, "trainer pass")
            while not stop.is_set():
                try:
                    if self.hold():
                        self.step()
                    failures.worked()
                except Exception:  # noqa: BLE001 - the trainer must outlive one bad pass
                    failures.failed()
                self.wake.wait(interval)
                self.wake.clear()
        finally:
            renewer.join()
            if self.token is not None:
                with contextlib.suppress(Exception):  # expires by itself otherwise
                    self.catalog.drop_lease(LEASE, self.holder)

    def _renew(self, stop: threading.Event) -> None:
        """Keep the lease while a long run trains (the loop above waits for it)."""
        while not stop.wait(LEASE_SECONDS / 4):
            if self.token is not None:
                try:
                    self.hold()
                except Exception:  # noqa: BLE001 - retried; the lease lasts meanwhile
                    log.exception("could not renew the trainer's lease")
