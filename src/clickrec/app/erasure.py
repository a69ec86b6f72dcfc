"""Erasing a reader (the right to be forgotten): submit the job, follow it, and, from the
command line with no worker running, do its phases here. Clients see a job's view, never
the reader's ids."""

from __future__ import annotations

import threading
import time
from typing import Any

from clickrec.core.errors import NotFound
from clickrec.engine import Engine
from clickrec.erasure import view  # also what the front doors show of a job they submit

WAIT_SECONDS = 600.0
"""How long ``clickrec users erase`` waits for its job, at most."""
POLL_SECONDS = 0.5


def submit(engine: Engine, user_id: str) -> dict[str, Any]:
    """A new erasure job for the reader (the whole job, for its id; show clients its
    ``view``)."""
    return engine.eraser.submit(user_id)


def erasures(engine: Engine) -> list[dict[str, Any]]:
    """Every erasure job as clients see it."""
    return [view(j) for j in engine.catalog.list_erasures()]


def erasure(engine: Engine, erasure_id: str) -> dict[str, Any]:
    """One erasure job as clients see it; NotFound when there is none of that id."""
    job = engine.catalog.get_erasure(erasure_id)
    if job is None:
        raise NotFound(f"unknown erasure: {erasure_id}")
    return view(job)


def finish_here(engine: Engine, job: dict[str, Any], wait: bool) -> dict[str, Any]:
    """Do the job's phases in this process while no worker holds the lake (the online
    phase, then the lake's once every live server forgot the reader); with ``wait``, until
    it is done or WAIT_SECONDS passed. The job as it stands then."""
    idle = threading.Event()
    idle.set()  # do not wait for the lock: held means a worker is running
    deadline = engine.clock.monotonic() + WAIT_SECONDS
    while True:
        if engine.lake.acquire_writer(idle):  # no worker: this command does the job
            try:
                engine.eraser.run_online(None)
                engine.eraser.run_lake()  # once every live server forgot the reader
            finally:
                engine.lake.release_writer()
        job = engine.catalog.get_erasure(job["id"]) or job
        if not wait or job["state"] == "done" or engine.clock.monotonic() > deadline:
            return job
        time.sleep(POLL_SECONDS)
