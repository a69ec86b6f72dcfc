"""Starts training runs: queued ones, on a schedule, and when the data first suffices."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from clickrec.backends.base import EventLog
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import TrainingSettings
from clickrec.core.clock import Clock
from clickrec.training.pipeline import Pipeline, execute_run

log = logging.getLogger("clickrec.scheduler")


class Trainer:
    """One worker per server: runs pending runs and decides when to start new ones."""

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
                execute_run(self.pipeline, self.catalog, run["id"], self.clock)

    def fail_interrupted(self) -> int:
        """Mark runs left "running" by a worker that died as failed (one worker per home:
        none of them can still be running); otherwise no run would ever start again."""
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
        try:
            self.fail_interrupted()
        except Exception:  # noqa: BLE001 - the catalog may be briefly unavailable
            log.exception("could not check for interrupted training runs")
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - the trainer must outlive one bad pass
                log.exception("trainer pass failed")
            self.wake.wait(interval)
            self.wake.clear()
