"""The engine retrains by itself: when the data first suffices, then on its schedule."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickrec.config import load_settings
from clickrec.core.clock import FixedClock
from clickrec.core.types import Event
from clickrec.engine import Engine, ServingEngine
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog
from clickrec.training.scheduler import LEASE_SECONDS

pytestmark = pytest.mark.integration


def test_threshold_then_schedule(tmp_path: Path) -> None:
    blog = generate_blog(BlogSpec(users=300, days=6, posts_per_day=25, seed=5))
    events = [Event.model_validate(e) for e in blog_interactions_as_events(blog)]
    newest = max(e.timestamp.timestamp() for e in events if e.timestamp)
    clock = FixedClock(newest + 60)
    engine = ServingEngine(load_settings(tmp_path / "home", environ={}), clock=clock)
    try:
        trainer = engine.trainer
        engine.ingestor.ingest(events[:500])
        assert trainer.due_trigger() is None  # below 1000 interactions: nothing starts
        for start in range(500, len(events), 1000):
            engine.ingestor.ingest(events[start : start + 1000])
        trainer.step()
        runs = engine.catalog.list_runs()
        assert [(r["trigger"], r["state"]) for r in runs] == [("threshold", "succeeded")]
        assert engine.catalog.live_model() is not None
        trainer.step()
        assert len(engine.catalog.list_runs()) == 1  # fresh model: nothing new is due

        trained_on = engine.catalog.list_runs()[0]["last_seq"]
        more = [
            e.model_copy(
                update={
                    "event_id": f"more-{i}",
                    "timestamp": None,
                    "item_id": f"{e.item_id}-sequel",
                }
            )
            for i, e in enumerate(events[: trained_on + 10])
        ]
        for start in range(0, len(more), 1000):
            engine.ingestor.ingest(more[start : start + 1000])
        assert trainer.due_trigger() is None  # doubled, but the last run is seconds old
        clock.advance(180)
        assert trainer.due_trigger() == "growth"  # the data doubled: retrain before 6 h
        trainer.step()
        growth = engine.catalog.list_runs()[0]
        assert (growth["trigger"], growth["state"]) == ("growth", "succeeded"), growth["error"]

        clock.advance(7 * 3600)
        assert trainer.due_trigger() is None  # schedule elapsed, but no new events
        late = events[-1].model_copy(update={"event_id": "late", "timestamp": None})
        engine.ingestor.ingest([late])
        assert trainer.due_trigger() == "schedule"
    finally:
        engine.close()


def test_anonymous_sessions_train_and_publish(engine: Engine) -> None:
    """Sessions rarely span a time cut: the replay asks each session before each new post
    it opens, so training still chooses, and publishes."""
    blog = generate_blog(BlogSpec(users=400, days=6, posts_per_day=25, seed=9))
    events = [
        Event.model_validate({k: v for k, v in e.items() if k != "user_id"})
        for e in blog_interactions_as_events(blog)
    ]
    for start in range(0, len(events), 1000):
        engine.ingestor.ingest(events[start : start + 1000])
    run = engine.catalog.create_run("test", engine.clock.now())
    engine.trainer.step()
    done = engine.catalog.get_run(run["id"])
    assert done is not None and done["state"] == "succeeded", done
    assert done["metrics"]["protocol"] == "replay"
    assert done["metrics"]["queries"] >= 200
    assert engine.catalog.live_model() is not None


def test_a_run_left_running_by_a_dead_worker_is_failed_so_training_goes_on(
    tmp_path: Path,
) -> None:
    engine = ServingEngine(load_settings(tmp_path / "home", environ={}))
    try:
        run = engine.catalog.create_run("api", engine.clock.now())
        assert engine.catalog.claim_run(run["id"], engine.clock.now())  # then the worker died
        assert engine.trainer.due_trigger() is None  # a "running" run blocks every new one
        assert engine.trainer.fail_interrupted() == 1
        after = engine.catalog.get_run(run["id"])
        assert after is not None and after["state"] == "failed"
        assert "interrupted" in after["error"]
        assert engine.trainer.fail_interrupted() == 0
    finally:
        engine.close()


def test_the_worker_hands_each_run_to_a_runner(tmp_path: Path) -> None:
    engine = ServingEngine(load_settings(tmp_path / "home", environ={}))
    try:
        handed: list[str] = []
        engine.trainer.runner = handed.append
        run = engine.catalog.create_run("api", engine.clock.now())
        engine.trainer.step()
        assert handed == [run["id"]]
    finally:
        engine.close()


def test_two_workers_train_one_at_a_time_and_a_dead_ones_run_is_taken_over(
    tmp_path: Path,
) -> None:
    """Two workers on one catalog: only the lease holder trains, and only it fails the
    runs left running; when it dies, the other takes over once its lease expired."""
    clock = FixedClock(1_000_000.0)
    settings = load_settings(tmp_path / "home", environ={})
    a = Engine(settings, clock=clock)
    b = Engine(settings, clock=clock)
    try:
        assert a.trainer.hold() and not b.trainer.hold()
        run = a.catalog.create_run("api", clock.now())
        assert a.catalog.claim_run(run["id"], clock.now())  # a trains it… and dies
        clock.advance(LEASE_SECONDS / 2)
        assert not b.trainer.hold()  # a's lease still runs: its run is left alone
        assert a.catalog.get_run(run["id"])["state"] == "running"
        clock.advance(LEASE_SECONDS)
        assert b.trainer.hold()  # a went silent: b holds the lease, fails a's run
        after = b.catalog.get_run(run["id"])
        assert after["state"] == "failed" and "interrupted" in after["error"]
        assert not a.trainer.hold()  # a, were it only paused, does not train beside b
    finally:
        a.close()
        b.close()


def test_a_trainer_that_lost_its_lease_publishes_nothing(tmp_path: Path) -> None:
    """Its worker paused past the lease (a long GC, a stalled disk) while another took it
    over: the run it goes on with ends failed, and the live model stays the other's."""
    blog = generate_blog(BlogSpec(users=200, days=4, posts_per_day=20, seed=3))
    events = [Event.model_validate(e) for e in blog_interactions_as_events(blog)]
    clock = FixedClock(max(e.timestamp.timestamp() for e in events if e.timestamp) + 60)
    settings = load_settings(tmp_path / "home", environ={})
    a = ServingEngine(settings, clock=clock)
    b = Engine(settings, clock=clock)
    try:
        for start in range(0, len(events), 1000):
            a.ingestor.ingest(events[start : start + 1000])
        assert a.trainer.hold()
        clock.advance(2 * LEASE_SECONDS)
        assert b.trainer.hold()  # a went silent for longer than its lease
        run = a.catalog.create_run("test", clock.now())
        a.trainer.step()  # a wakes up and trains with the token it had
        done = a.catalog.get_run(run["id"])
        assert done is not None and done["state"] == "failed"
        assert "lease passed to another worker" in done["error"]
        assert a.catalog.live_model() is None
    finally:
        a.close()
        b.close()
