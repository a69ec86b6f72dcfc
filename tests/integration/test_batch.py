"""Batch jobs: newsletters (recommendations for many readers) and segments (readers for
many items), through the API job and the CLI, against the same live state as the API."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clickrec.batch import item_affinity
from clickrec.cli import app
from clickrec.engine import Engine
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


@pytest.fixture
def trained(client: TestClient, keys: H, engine: Engine) -> TestClient:
    blog = generate_blog(BlogSpec(users=300, days=6, posts_per_day=25, seed=3))
    items = [
        {
            "item_id": r["item_id"],
            "published_at": r["published_at"],
            "categories": r["categories"].split("|"),
        }
        for r in blog.items.to_pylist()
    ]
    for start in range(0, len(items), 1000):
        client.put("/v1/items", json={"items": items[start : start + 1000]}, headers=keys["ingest"])
    events = blog_interactions_as_events(blog)
    # 20 readers read a then b: b is the next read of whoever reads a.
    events += [
        {"user_id": f"pair{k}", "session_id": f"pair{k}", "item_id": item}
        for k in range(20)
        for item in ("post-a", "post-b")
    ]
    for start in range(0, len(events), 1000):
        r = client.post(
            "/v1/events", json={"events": events[start : start + 1000]}, headers=keys["ingest"]
        )
        assert r.status_code == 202
    client.post("/v1/training-runs", headers=keys["admin"])
    engine.trainer.step()
    assert engine.recommender is not None and engine.recommender.refresh_model()
    return client


def wait_for(client: TestClient, keys: H, job_id: str) -> dict:
    for _ in range(200):
        job = client.get(f"/v1/batch-jobs/{job_id}", headers=keys["read"]).json()
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_a_newsletter_job_answers_every_line_in_order(trained: TestClient, keys: H) -> None:
    lines = [
        {"user_id": "u000001", "num_results": 5},
        {"user_id": "u000002"},
        {"num_results": 3},  # no reader: an error on its own line, the rest goes on
        {"session_id": "visit-9", "num_results": 2, "metadata_columns": ["categories"]},
    ]
    r = trained.post(
        "/v1/batch-jobs", json={"kind": "recommendations", "lines": lines}, headers=keys["read"]
    )
    assert r.status_code == 202, r.text
    job = wait_for(trained, keys, r.json()["id"])
    assert job["state"] == "succeeded" and job["done"] == 4 and job["errors"] == 1

    out = trained.get(f"/v1/batch-jobs/{job['id']}/output", headers=keys["read"])
    answers = [orjson.loads(line) for line in out.text.splitlines()]
    assert len(answers) == 4
    assert answers[2] == {"line": 3, "error": "line 3: give user_id or session_id"}
    live = trained.get(
        "/v1/recommendations?user_id=u000001&num_results=5", headers=keys["read"]
    ).json()
    assert [i["item_id"] for i in answers[0]["items"]] == [i["item_id"] for i in live["items"]]
    assert len(answers[1]["items"]) == 25 and answers[1]["user_id"] == "u000002"
    assert set(answers[3]["items"][0]["metadata"]) == {"categories"}


def test_job_errors_are_clear(trained: TestClient, keys: H) -> None:
    bad_kind = trained.post(
        "/v1/batch-jobs", json={"kind": "nope", "lines": [{}]}, headers=keys["read"]
    )
    assert bad_kind.status_code == 422
    assert trained.get("/v1/batch-jobs/nope", headers=keys["read"]).status_code == 404
    assert (
        trained.post("/v1/batch-jobs", json={"kind": "segments", "lines": [{}]}).status_code == 401
    )


def test_segments_name_the_readers_most_likely_to_read_each_item(
    trained: TestClient, keys: H, engine: Engine
) -> None:
    read = [{"user_id": "fan", "session_id": "f", "item_id": "post-a"}]
    assert (
        trained.post("/v1/events", json={"events": read}, headers=keys["ingest"]).status_code == 202
    )
    assert engine.recommender is not None
    answers = list(
        item_affinity(
            engine.recommender,
            [
                {"item_id": "post-b", "num_results": 50},
                {"item_id": "post-a"},
                {"item_id": "no-such-post"},
                b'{"item_id": 5}',
            ],
            lambda n: None,
        )
    )
    readers_b = [r.get("user_id") for r in answers[0]["readers"]]
    assert "fan" in readers_b  # read a a moment ago, so b is likely next
    assert not any(f"pair{k}" in readers_b for k in range(20))  # they read b already
    scores = [r["score"] for r in answers[0]["readers"]]
    assert scores == sorted(scores, reverse=True) and len(scores) <= 50
    assert "fan" not in [r.get("user_id") for r in answers[1]["readers"]]
    assert "unknown item" in answers[2]["error"]
    assert answers[3]["error"].startswith("line 4: item_id")


def test_the_cli_writes_one_line_per_reader(
    trained: TestClient, keys: H, engine: Engine, tmp_path: Path
) -> None:
    source = tmp_path / "readers.jsonl"
    source.write_text('{"user_id": "u000003", "num_results": 4}\n{"user_id": "u000004"}\n')
    target = tmp_path / "recs.jsonl"
    home = engine.settings.home
    result = CliRunner().invoke(
        app,
        [
            "batch",
            "recommend",
            "--input",
            str(source),
            "--output",
            str(target),
            "--home",
            str(home),
        ],
    )
    assert result.exit_code == 0, result.output
    answers = [orjson.loads(line) for line in target.read_text().splitlines()]
    assert [a["user_id"] for a in answers] == ["u000003", "u000004"]
    assert len(answers[0]["items"]) == 4
    fan = [{"user_id": "fan2", "session_id": "f2", "item_id": "post-a"}]
    assert (
        trained.post("/v1/events", json={"events": fan}, headers=keys["ingest"]).status_code == 202
    )
    items = tmp_path / "items.jsonl"
    items.write_text('{"item_id": "post-b", "num_results": 10}\n')
    segments = tmp_path / "segments.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "batch",
            "segments",
            "--items",
            str(items),
            "--output",
            str(segments),
            "--home",
            str(home),
        ],
    )
    assert result.exit_code == 0, result.output
    (answer,) = [orjson.loads(line) for line in segments.read_text().splitlines()]
    assert answer["item_id"] == "post-b" and 0 < len(answer["readers"]) <= 10
    assert "fan2" in [r.get("user_id") for r in answer["readers"]]
