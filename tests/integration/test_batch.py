"""Batch jobs: newsletters (recommendations for many readers) and segments (readers for
many items), through the API job and the CLI, against the same live state as the API."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clickrec.api.app import create_app
from clickrec.batch import item_affinity
from clickrec.cli import app
from clickrec.config import load_settings
from clickrec.core.clock import FixedClock
from clickrec.engine import Engine, ServingEngine
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


# -- quotas and retention of jobs made through the API ----------------------------------------
Serve = Callable[..., tuple[TestClient, Engine]]
READERS = [{"user_id": f"reader-{k:03d}", "num_results": 3} for k in range(25)]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """A server whose ``[batch]`` settings are the keyword arguments, on an injected clock."""
    with ExitStack() as stack:

        def start(clock: FixedClock | None = None, **batch: object) -> tuple[TestClient, Engine]:
            env = {f"CLICKREC_BATCH__{k.upper()}": str(v) for k, v in batch.items()}
            eng = ServingEngine(load_settings(tmp_path / "home", environ=env), clock)
            stack.callback(eng.close)
            return stack.enter_context(TestClient(create_app(eng))), eng

        yield start


@contextmanager
def loose_umask() -> Iterator[None]:
    """A process umask that lets files be read by others, as before the engine tightened it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def read_key(engine: Engine) -> dict[str, str]:
    key, _ = engine.keys.create("read", None, engine.clock.now())
    return {"Authorization": f"Bearer {key}"}


def submit(client: TestClient, key: dict[str, str], lines: list[dict] = READERS) -> dict:
    r = client.post("/v1/batch-jobs", json={"kind": "recommendations", "lines": lines}, headers=key)
    assert r.status_code == 202, r.text
    return r.json()


def finished(client: TestClient, key: dict[str, str], job_id: str) -> dict:
    return wait_for(client, {"read": key}, job_id)


def test_a_job_whose_output_passes_its_quota_fails_and_leaves_no_file(serve: Serve) -> None:
    client, engine = serve(max_output_bytes=2000)
    key = read_key(engine)
    job = finished(client, key, submit(client, key)["id"])
    assert job["state"] == "failed"
    assert "2,000 bytes" in job["error"] and "batch.max_output_bytes" in job["error"]
    assert "split the input" in job["error"]
    left = [p.name for p in (engine.settings.home / "batch").iterdir()]
    assert left == [f"{job['id']}.job"]  # the partial output went; the job's record stays
    assert client.get(f"/v1/batch-jobs/{job['id']}/output", headers=key).status_code == 409


def test_a_job_with_more_lines_than_allowed_is_refused(serve: Serve) -> None:
    client, engine = serve(max_lines_per_job=10)
    key = read_key(engine)
    r = client.post(
        "/v1/batch-jobs", json={"kind": "recommendations", "lines": READERS}, headers=key
    )
    assert r.status_code == 422 and "batch.max_lines_per_job" in r.text, r.text


def test_a_key_runs_only_so_many_jobs_at_once(serve: Serve) -> None:
    client, engine = serve(max_running_per_key=2)
    assert engine.jobs is not None
    waiting: list[Callable[[], None]] = []
    engine.jobs.spawn = waiting.append  # jobs wait until the test runs them
    key, other = read_key(engine), read_key(engine)
    submit(client, key), submit(client, key)
    r = client.post(
        "/v1/batch-jobs", json={"kind": "recommendations", "lines": READERS}, headers=key
    )
    assert r.status_code == 409, r.text
    assert "2 batch jobs pending or running" in r.text and "batch.max_running_per_key" in r.text
    submit(client, other)  # the quota is per key
    for run in waiting:
        run()
    submit(client, key)  # its jobs finished: room again


def test_a_key_whose_outputs_fill_its_quota_gets_no_new_job(serve: Serve) -> None:
    client, engine = serve(max_retained_bytes_per_key=1000)
    key, other = read_key(engine), read_key(engine)
    job = finished(client, key, submit(client, key)["id"])
    assert job["state"] == "succeeded"
    r = client.post(
        "/v1/batch-jobs", json={"kind": "recommendations", "lines": READERS}, headers=key
    )
    assert r.status_code == 409 and "batch.max_retained_bytes_per_key" in r.text, r.text
    assert finished(client, other, submit(client, other)["id"])["state"] == "succeeded"
    # Deleting a downloaded output frees the quota. Another key cannot even see the job:
    # not its state, not its output, not to delete it.
    for ask in (client.get, client.delete):
        assert ask(f"/v1/batch-jobs/{job['id']}", headers=other).status_code == 404
    assert client.get(f"/v1/batch-jobs/{job['id']}/output", headers=other).status_code == 404
    assert client.get(f"/v1/batch-jobs/{job['id']}/output", headers=key).status_code == 200
    assert client.delete(f"/v1/batch-jobs/{job['id']}", headers=key).status_code == 204
    assert client.get(f"/v1/batch-jobs/{job['id']}", headers=key).status_code == 404
    assert not (engine.settings.home / "batch" / f"{job['id']}.jsonl").exists()
    submit(client, key)


def test_outputs_are_private_and_deleted_after_the_retention_period(serve: Serve) -> None:
    clock = FixedClock(time.time())
    client, engine = serve(clock, retention_hours=24)
    key = read_key(engine)
    folder = engine.settings.home / "batch"
    with loose_umask():
        job = finished(client, key, submit(client, key)["id"])
    output = folder / f"{job['id']}.jsonl"
    assert stat.S_IMODE(output.stat().st_mode) == 0o600  # 0600 of its own, whatever the umask
    leftover = folder / "0123456789abcdef.jsonl"  # a job's output from before a restart
    leftover.write_bytes(b"{}\n")

    clock.advance(23 * 3600)
    assert client.get(f"/v1/batch-jobs/{job['id']}/output", headers=key).status_code == 200
    clock.advance(2 * 3600)
    view = client.get(f"/v1/batch-jobs/{job['id']}", headers=key).json()
    assert view["state"] == "expired" and "24 h" in view["error"], view
    gone = client.get(f"/v1/batch-jobs/{job['id']}/output", headers=key)
    assert gone.status_code == 410 and "no longer available" in gone.json()["error"]
    submit(client, key)  # a submit also sweeps the files no job knows
    assert not output.exists() and not leftover.exists()
    clock.advance(24 * 3600)  # a second period later the job itself is forgotten
    assert client.get(f"/v1/batch-jobs/{job['id']}", headers=key).status_code == 404
    assert job["expires_at"] == job["finished_at"] + 24 * 3600  # said from the start


def test_an_output_removed_from_disk_is_gone_not_an_error(serve: Serve) -> None:
    client, engine = serve()
    key = read_key(engine)
    job = finished(client, key, submit(client, key)["id"])
    (engine.settings.home / "batch" / f"{job['id']}.jsonl").unlink()
    r = client.get(f"/v1/batch-jobs/{job['id']}/output", headers=key)
    assert r.status_code == 410, r.text
    assert f"the output of batch job {job['id']} is no longer available" in r.json()["error"]
    assert client.get(f"/v1/batch-jobs/{job['id']}", headers=key).json()["state"] == "expired"


def test_the_output_is_read_in_pages(serve: Serve) -> None:
    client, engine = serve()
    key = read_key(engine)
    job = finished(client, key, submit(client, key)["id"])
    url = f"/v1/batch-jobs/{job['id']}/output"
    whole = client.get(url, headers=key)
    assert whole.headers["content-type"] == "application/x-ndjson"
    everyone = [orjson.loads(line)["user_id"] for line in whole.text.splitlines()]
    assert everyone == [r["user_id"] for r in READERS]

    first = client.get(url, params={"limit": 10}, headers=key)
    assert len(first.text.splitlines()) == 10 and first.headers["x-next-offset"] == "10"
    seen, offset = [], "0"
    while offset:
        page = client.get(url, params={"offset": offset, "limit": 10}, headers=key)
        seen += [orjson.loads(line)["user_id"] for line in page.text.splitlines()]
        offset = page.headers.get("x-next-offset", "")
    assert seen == everyone
    for bad in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}):
        assert client.get(url, params=bad, headers=key).status_code == 422


# -- several processes serving one home (serve --processes N) --------------------------------
def test_every_process_of_a_home_answers_for_every_job(serve: Serve) -> None:
    """A load balancer (or one shared socket) sends a client's next request to any process:
    each one tells the job's state, streams its output and deletes it, for its owner only."""
    one, engine = serve()
    two, _ = serve()
    key, other = read_key(engine), read_key(engine)
    job = finished(one, key, submit(one, key)["id"])
    assert job["state"] == "succeeded"

    url = f"/v1/batch-jobs/{job['id']}"
    seen = two.get(url, headers=key).json()
    assert {k: seen[k] for k in ("state", "total", "done")} == {
        "state": "succeeded",
        "total": len(READERS),
        "done": len(READERS),
    }
    assert (
        two.get(f"{url}/output", headers=key).content
        == one.get(f"{url}/output", headers=key).content
    )
    assert two.get(url, headers=other).status_code == 404  # another key's job is unknown
    assert two.get("/v1/batch-jobs/../../catalog", headers=key).status_code == 404
    assert two.delete(url, headers=key).status_code == 204
    assert one.get(url, headers=key).status_code == 404  # gone for every process


def test_a_keys_quota_counts_its_jobs_in_every_process(serve: Serve) -> None:
    one, engine = serve(max_running_per_key=1)
    two, engine2 = serve(max_running_per_key=1)
    engine.jobs.spawn = [].append  # the first process's job never gets to run
    key = read_key(engine)
    submit(one, key)
    r = two.post("/v1/batch-jobs", json={"kind": "recommendations", "lines": READERS}, headers=key)
    assert r.status_code == 409 and "batch.max_running_per_key" in r.text, r.text


def test_a_job_whose_process_stopped_is_failed_and_a_restart_finds_finished_ones(
    serve: Serve,
) -> None:
    one, engine = serve()
    key = read_key(engine)
    done = finished(one, key, submit(one, key)["id"])
    engine.jobs.spawn = [].append
    stuck = submit(one, key)["id"]  # pending forever in this process ...
    record = engine.settings.home / "batch" / f"{stuck}.job"
    dead = subprocess.Popen(["true"])  # ... which now has a pid nobody runs
    dead.wait()
    record.write_bytes(orjson.dumps({**orjson.loads(record.read_bytes()), "pid": dead.pid}))

    later, _ = serve()  # another process, or the server after a restart
    lost = later.get(f"/v1/batch-jobs/{stuck}", headers=key).json()
    assert lost["state"] == "failed" and "stopped before it finished" in lost["error"]
    kept = later.get(f"/v1/batch-jobs/{done['id']}", headers=key).json()
    assert kept["state"] == "succeeded"
    assert later.get(f"/v1/batch-jobs/{done['id']}/output", headers=key).status_code == 200
