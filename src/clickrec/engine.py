"""The composition root: every store and service of one clickrec process, wired once.

The CLI and the API both start from an Engine; nothing below this module knows how the
pieces are put together.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickrec.backends.registry import (
    open_catalog,
    open_data_keys,
    open_event_log,
    open_lake,
    open_model_store,
    open_shared_limits,
)
from clickrec.batch import JobRunner
from clickrec.config import Settings
from clickrec.core.clock import Clock, SystemClock
from clickrec.erasure import Eraser
from clickrec.ingestion.archive import ArchiveConsumer
from clickrec.ingestion.service import Ingestor
from clickrec.keys import KeyRing
from clickrec.models.online import OnlineState
from clickrec.models.scoring import Exploration
from clickrec.observability.logs import FailureStreak
from clickrec.serving.service import Recommender
from clickrec.training.pipeline import Pipeline
from clickrec.training.scheduler import Trainer

log = logging.getLogger("clickrec.engine")


def make_private_home(home: Path) -> None:
    """The home folder holds every reader's history and the keys' secrets: it is 0700, and
    this process makes its files 0600 (umask 077) wherever a library creates them."""
    os.umask(0o077)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if home.stat().st_mode & 0o077:
        log.warning("home folder %s was readable by others: made it 0700", home)
        home.chmod(0o700)


class Engine:
    """What every clickrec process has: the stores, the keys, the pipeline and trainer, the
    archive consumer, the eraser and the ingest path. A worker and the command line run
    this; a server runs a ``ServingEngine``, which adds what answering readers needs."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        make_private_home(settings.home)
        self.log = open_event_log(settings)
        self.catalog = open_catalog(settings)
        self.data_keys = open_data_keys(settings)
        self.lake = open_lake(settings, self.data_keys)
        self.models = open_model_store(settings)
        self.keys = KeyRing(self.catalog, self.data_keys, self.clock)
        self.pipeline = Pipeline(
            settings,
            self.log,
            self.lake,
            self.catalog,
            self.models,
            self.clock,
            self.data_keys,
        )
        self.trainer = Trainer(self.pipeline, self.catalog, self.log, settings.training, self.clock)
        self.archive = ArchiveConsumer(self.log, self.lake, clock=self.clock)
        self.eraser = Eraser(
            self.catalog, self.log, self.lake, self.clock, settings.home / "batch", self._replica()
        )
        # Registered before the online state is rebuilt from the log: an erasure running
        # meanwhile waits for this process to forget its reader too.
        self.eraser.beat()
        self.archive.between_batches = self.eraser.run_lake_safely
        self.ingestor = Ingestor(self.log, self.clock, self._build_serving())
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _replica(self) -> str | None:
        """This process's id among the serving processes (None: it serves nothing)."""
        return None

    def _build_serving(self) -> Callable[[list[dict[str, Any]]], None] | None:
        """A serving process builds its recommender here (after the stores, before the
        ingest path that feeds it) and returns what the ingest path tells it of each append
        (applied before the answer); a process that serves nothing returns None."""
        return None

    def catalog_changed(self) -> None:
        """Called after this process wrote the catalog (a server refreshes its view)."""

    def online_lag(self, last_seq: int) -> int | None:
        """Log events not yet in this process's online state; None when it keeps none."""
        return None

    def start_background(self, train_interval: float = 5.0) -> None:
        """Start the worker's threads: the archive consumer and the trainer."""
        self._start(
            [
                ("archive", lambda: self.archive.run_forever(self._stop, 1.0)),
                ("trainer", lambda: self.trainer.run_forever(self._stop, train_interval)),
            ]
        )

    def _start(self, jobs: list[tuple[str, Callable[[], None]]]) -> None:
        self._stop.clear()
        for name, target in jobs:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        """Stop background work (the archive flushes what is left), then close stores."""
        self._stop.set()
        self.trainer.wake.set()
        self.eraser.wake.set()
        for t in self._threads:
            t.join(timeout=60)
        self._threads.clear()
        self._close_serving()
        self.lake.close()
        self.models.close()
        self.log.close()
        self.catalog.close()

    def _close_serving(self) -> None:
        pass


class ServingEngine(Engine):
    """A server's engine: the recommender (the live model and the online state), the batch
    jobs, the rate limits shared with other replicas, and its part of erasures."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self._replica_id = uuid.uuid4().hex[:16]
        self.recommender: Recommender  # built in _build_serving, before the ingest path
        super().__init__(settings, clock)
        self.log.before_commit = self.recommender.claim
        self.jobs = JobRunner(self.recommender, settings.home / "batch", settings.batch, self.clock)
        self.eraser.batch_running_since = self.jobs.running_since
        self.jobs.erasing = self.eraser.under_way
        self.shared_limits = open_shared_limits(settings)

    def _replica(self) -> str | None:
        return self._replica_id

    def _build_serving(self) -> Callable[[list[dict[str, Any]]], None] | None:
        s = self.settings.serving
        self.recommender = Recommender(
            self.log,
            self.catalog,
            OnlineState(
                s.trending_half_life_hours,
                s.history_length,
                s.seen_length,
                s.max_context_values,
                s.session_idle_minutes,
                s.max_readers,
            ),
            Exploration(s.exploration_weight, s.exploration_item_age_cutoff_days),
            s.replay_events,
            self.data_keys,
            s.context_weight,
            s.catch_up_seconds,
            self.models,
            self.clock,
            s.ignore_event_types,
        )
        return self.recommender.apply_appended

    def catalog_changed(self) -> None:
        self.recommender.refresh_catalog()

    def online_lag(self, last_seq: int) -> int | None:
        return self.recommender.lag(last_seq)

    def start_serving(self) -> None:
        """Start the server's threads: the refresher (log tail, catalog, registry) and the
        erasure loop; the worker's threads run in their own process."""
        rec, poll = self.recommender, self.settings.serving.model_poll_seconds
        self._start(
            [
                ("refresher", lambda: rec.run_background(self._stop, 0.25, poll)),
                ("eraser", self._erase_forever),
            ]
        )

    def _erase_forever(self) -> None:
        """The serving process's part of reader erasures, as they are asked for."""
        failures = FailureStreak(log, "erasure pass")
        while not self._stop.is_set():
            try:
                self.eraser.run_online(self.recommender)
                self.jobs.sweep()  # expired batch outputs go even when no one asks
                failures.worked()
            except Exception:  # noqa: BLE001 - the catalog may be briefly unavailable
                failures.failed()
            self.eraser.wake.wait(1.0)
            self.eraser.wake.clear()

    def _close_serving(self) -> None:
        try:
            self.eraser.leave()
        except Exception:  # noqa: BLE001 - a replica not heard from is dropped after a while
            log.warning("could not unregister this serving process from the catalog")
        if self.shared_limits is not None:
            self.shared_limits.close()
