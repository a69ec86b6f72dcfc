"""Training runs: start one for the worker's trainer, follow it until it ends (and until
this server serves what it published), list them and the models they made, or run one
here, in this process, as ``clickrec train`` and the worker's child do."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from clickrec.core.errors import NotFound
from clickrec.engine import Engine, ServingEngine
from clickrec.training.pipeline import Progress, execute_run

RUN_POLL_SECONDS = 0.25
"""How often a follower looks at its run again."""

_VIEW = (
    "id",
    "state",
    "trigger",
    "step",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "model_version",
    "published",
    "metrics",
)


def view(run: dict[str, Any]) -> dict[str, Any]:
    """What clients see of a run."""
    return {k: run[k] for k in _VIEW}


def start(engine: Engine, trigger: str) -> dict[str, Any]:
    """A pending run for the trainer, woken at once; ``trigger`` says who asked."""
    run = engine.catalog.create_run(trigger, engine.clock.now())
    engine.trainer.wake.set()
    return run


def runs(engine: Engine) -> list[dict[str, Any]]:
    """The recent runs, newest first."""
    return [view(r) for r in engine.catalog.list_runs()]


async def follow(engine: ServingEngine, run_id: str, wait: float = 0.0) -> dict[str, Any]:
    """A run; with ``wait`` (seconds), once it has finished or the wait is over. A run that
    published a model is answered once this server serves it, so the next recommendation
    already comes from it. NotFound for an unknown run. The stores are read off the event
    loop."""
    clock = engine.clock
    deadline = clock.monotonic() + wait
    while True:
        run = await asyncio.to_thread(engine.catalog.get_run, run_id)
        if run is None:
            raise NotFound(f"unknown training run: {run_id}")
        finished = run["state"] not in ("pending", "running")
        if wait and finished and run["published"]:
            await asyncio.to_thread(engine.recommender.refresh_model)
        if finished or clock.monotonic() >= deadline:
            return view(run)
        await asyncio.sleep(min(RUN_POLL_SECONDS, max(0.0, deadline - clock.monotonic())))


def models(engine: ServingEngine) -> dict[str, Any]:
    """The registry's models, which one is live, and which one this server serves."""
    rows = engine.catalog.list_models()
    live = next((r["version"] for r in rows if r["live"]), None)
    served = engine.recommender.model_version
    return {
        "live_version": live,
        "served_version": served,
        "models": [
            {k: r[k] for k in ("version", "created_at", "recipe", "run_id", "metrics", "live")}
            for r in rows
        ],
    }


def run_for(engine: Engine, run_id: str | None) -> dict[str, Any]:
    """The run ``run_id`` (the one the worker hands its child), or a new one started from
    the command line; NotFound for an unknown ``run_id``."""
    run = engine.catalog.get_run(run_id) if run_id else None
    if run_id and run is None:
        raise NotFound(f"unknown training run: {run_id}")
    return run or engine.catalog.create_run("cli", engine.clock.now())


def run_here(engine: Engine, run_id: str, on_step: Progress) -> dict[str, Any]:
    """Run a pending run in this process to its end (each step recorded, and told to
    ``on_step``); the run as it ended."""
    execute_run(engine.pipeline, engine.catalog, run_id, engine.clock, on_step=on_step)
    return engine.catalog.get_run(run_id) or {}


def fail_unfinished(engine: Engine, run_id: str, exit_code: int, stderr: str) -> None:
    """A run whose process ended without recording its end (killed, out of memory) failed;
    a run that recorded it is left as it is."""
    state = (engine.catalog.get_run(run_id) or {}).get("state")
    if state in ("pending", "running"):
        error = f"the training process exited with code {exit_code}"
        logging.getLogger("clickrec.scheduler").error(
            "training run %s: %s: %s", run_id, error, stderr[-2000:]
        )
        engine.catalog.update_run(
            run_id, state="failed", error=error, finished_at=engine.clock.now()
        )
