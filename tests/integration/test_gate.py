"""The publish gate compares like with like: the live model's configuration is scored on the
new run's own holdout, never by a score an earlier run got on other data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from clickrec.config import load_settings
from clickrec.core.types import Event
from clickrec.engine import Engine
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog
from clickrec.training import pipeline
from clickrec.training.pipeline import Candidate, execute_run

pytestmark = pytest.mark.integration


@pytest.fixture
def loaded(tmp_path: Path):  # type: ignore[no-untyped-def]
    blog = generate_blog(BlogSpec(users=300, days=6, posts_per_day=25, seed=5))
    events = [Event.model_validate(e) for e in blog_interactions_as_events(blog)]
    engine = Engine(load_settings(tmp_path / "home", environ={}))
    yield engine, events
    engine.close()


def train(engine: Engine) -> dict:
    run = engine.catalog.create_run("test", engine.clock.now())
    execute_run(engine.pipeline, engine.catalog, run["id"], engine.clock)
    done = engine.catalog.get_run(run["id"])
    assert done is not None and done["state"] == "succeeded", done
    return done


def test_a_model_trained_on_part_of_the_data_does_not_block_the_full_one(loaded) -> None:  # type: ignore[no-untyped-def]
    """What raced in the end-to-end test: the automatic run at the threshold saw the first
    part of an import (an easy holdout, a high score); the run after it sees everything."""
    engine, events = loaded
    for start in range(0, 3000, 1000):
        engine.ingestor.ingest(events[start : start + 1000])
    first = train(engine)
    for start in range(3000, len(events), 1000):
        engine.ingestor.ingest(events[start : start + 1000])
    second = train(engine)

    assert second["published"], second["metrics"]["gate"]
    gate = second["metrics"]["gate"]
    assert gate["live_version"] == first["model_version"]
    assert second["metrics"]["ndcg@10"] >= gate["live_ndcg@10"] * (1 - gate["tolerance"])
    assert engine.catalog.live_model()["version"] == second["model_version"]


def test_a_worse_configuration_is_not_published(loaded, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine, events = loaded
    for start in range(0, len(events), 1000):
        engine.ingestor.ingest(events[start : start + 1000])
    good = train(engine)
    # A release whose only candidate is plainly worse: it pushes down what readers co-read.
    monkeypatch.setattr(
        pipeline,
        "candidates",
        lambda base: [
            Candidate("broken", "user-personalization", replace(base, personal_weight=-5.0))
        ],
    )
    worse = train(engine)

    assert not worse["published"], (
        worse["metrics"]["gate"],
        worse["metrics"]["ndcg@10"],
        good["metrics"]["chosen"],
    )
    assert worse["metrics"]["gate"]["live_ndcg@10"] > worse["metrics"]["ndcg@10"]
    assert engine.catalog.live_model()["version"] == good["model_version"]
