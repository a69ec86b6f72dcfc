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
    def __init__(
        self, settings: Settings, clock: Clock | None = None, serving: bool = True
    ) -> None:
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
        replica = uuid.uuid4().hex[:16] if serving else None
        self.eraser = Eraser(
            self.catalog, self.log, self.lake, self.clock, settings.home / "batch", replica
        )
        # Registered before the online state is rebuilt from the log: an erasure running
        # meanwhile waits for this process to forget its reader too.
        self.eraser.beat()
        self.archive.between_batches = self.eraser.run_lake_safely
        self.recommender: Recommender | None = None
        if serving:
            s = settings.serving
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
            )
        if self.recommender is not None:
            self.log.before_commit = self.recommender.claim
        self.jobs = (
            JobRunner(self.recommender, settings.home / "batch", settings.batch, self.clock)
            if self.recommender
            else None
        )
        if self.jobs is not None:
            self.eraser.batch_running_since = self.jobs.running_since
        self.shared_limits = open_shared_limits(settings) if serving else None
        self.ingestor = Ingestor(
            self.log, self.clock, self.recommender.apply_appended if self.recommender else None
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start_background(self, train_interval: float = 5.0, worker: bool = True) -> None:
        """Start background threads: the serving refresher when this process serves, and
        the archive consumer and trainer when it is the worker (``worker=True``)."""
        self._stop.clear()
        jobs: list[tuple[str, Callable[[], None]]] = []
        if worker:
            jobs.append(("archive", lambda: self.archive.run_forever(self._stop, 1.0)))
            jobs.append(("trainer", lambda: self.trainer.run_forever(self._stop, train_interval)))
        rec = self.recommender
        if rec is not None:
            poll = self.settings.serving.model_poll_seconds
            jobs.append(("refresher", lambda: rec.run_background(self._stop, 0.25, poll)))
            jobs.append(("eraser", lambda: self._erase_forever(rec)))
        for name, target in jobs:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _erase_forever(self, rec: Recommender) -> None:
        """The serving process's part of reader erasures, as they are asked for."""
        while not self._stop.is_set():
            try:
                self.eraser.run_online(rec)
                if self.jobs is not None:
                    self.jobs.sweep()  # expired batch outputs go even when no one asks
            except Exception:  # noqa: BLE001 - the catalog may be briefly unavailable
                log.exception("erasure pass failed")
            self.eraser.wake.wait(1.0)
            self.eraser.wake.clear()

    def close(self) -> None:
        """Stop background work (the archive flushes what is left), then close stores."""
        self._stop.set()
        self.trainer.wake.set()
        self.eraser.wake.set()
        for t in self._threads:
            t.join(timeout=60)
        self._threads.clear()
        try:
            self.eraser.leave()
        except Exception:  # noqa: BLE001 - a replica not heard from is dropped after a while
            log.warning("could not unregister this serving process from the catalog")
        if self.shared_limits is not None:
            self.shared_limits.close()
        self.lake.close()
        self.models.close()
        self.log.close()
        self.catalog.close()
