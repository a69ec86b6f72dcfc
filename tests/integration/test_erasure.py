"""Erasing a reader: DELETE /v1/users/{id} is a job, and when it is done no byte of the
reader's ids is left in the home folder, while every other reader is untouched."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clickrec.api.app import create_app
from clickrec.cli import app
from clickrec.config import load_settings
from clickrec.engine import Engine, ServingEngine
from clickrec.erasure import REPLICA_TTL
from tests._scan import where

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]

GONE = "erase-me-7c1f"  # distinctive ids: a scan of the bytes cannot find them by chance
GONE_SESSIONS = ["visit-erase-a1", "visit-erase-b2"]
KEPT = "keep-me-3d9a"
KEPT_SESSION = "visit-keep-c3"
NEEDLES = [GONE, *GONE_SESSIONS]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    # In clear, so that a scan of the raw bytes means something (encryption would hide
    # the ids whether they were erased or not).
    env = {"CLICKREC_ENCRYPTION__ENABLED": "false"}
    eng = ServingEngine(load_settings(tmp_path / "home", environ=env))
    yield eng
    eng.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as c:
        yield c


def _events(user: str | None, session: str, items: range, start: float) -> list[dict]:
    return [
        {
            "user_id": user,
            "session_id": session,
            "item_id": f"post-{i:03d}",
            "event_type": "read",
            "timestamp": start + 60 * k,
            "context": {"device": "phone"},
        }
        for k, i in enumerate(items)
    ]


def _history(client: TestClient, keys: H, engine: Engine) -> None:
    """Two readers with events in the log and the lake, profiles, a batch job's output."""
    now = time.time() - 3600
    items = [{"item_id": f"post-{i:03d}", "title": f"Post {i}"} for i in range(40)]
    assert client.put("/v1/items", json={"items": items}, headers=keys["ingest"]).status_code == 200
    users = [{"user_id": GONE, "attributes": {"plan": "free"}}, {"user_id": KEPT}]
    assert client.put("/v1/users", json={"users": users}, headers=keys["ingest"]).status_code == 200
    events = (
        _events(None, GONE_SESSIONS[0], range(0, 3), now)  # anonymous, then logged in
        + _events(GONE, GONE_SESSIONS[0], range(3, 8), now + 600)
        + _events(GONE, GONE_SESSIONS[1], range(8, 12), now + 1200)
        + _events(KEPT, KEPT_SESSION, range(5, 15), now)
        + _events(None, "visit-other", range(0, 4), now)
    )
    r = client.post("/v1/events", json={"events": events}, headers=keys["ingest"])
    assert r.status_code == 202, r.text
    assert engine.archive.run_once() == len(events)
    lines = [{"user_id": GONE}, {"user_id": KEPT}, {"session_id": GONE_SESSIONS[1]}]
    r = client.post(
        "/v1/batch-jobs", json={"kind": "recommendations", "lines": lines}, headers=keys["read"]
    )
    job = r.json()["id"]
    for _ in range(200):
        if client.get(f"/v1/batch-jobs/{job}", headers=keys["read"]).json()["state"] != "running":
            break
        time.sleep(0.05)
    # An audit entry made before erasures kept ids out of the audit log.
    engine.catalog.audit(
        {"at": now, "actor": "old", "action": "DELETE /v1/users/{user_id:path}",
         "target": f"/v1/users/{GONE}", "source": "local", "status": 404, "request_id": "x"}
    )  # fmt: skip
    # Into the database files, as a long-running engine's checkpoints do: deleted rows
    # must then be overwritten in place, not merely left behind in an old WAL.
    assert engine.log.scrub()
    engine.catalog.compact()


def _erase(client: TestClient, keys: H, engine: Engine, user: str) -> dict:
    r = client.delete(f"/v1/users/{user}", headers=keys["admin"])
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "pending" and user not in r.text
    return job


def test_no_byte_of_an_erased_reader_is_left_in_the_home_folder(
    client: TestClient, keys: H, engine: Engine
) -> None:
    _history(client, keys, engine)
    home = engine.settings.home
    before = where(home, [*NEEDLES, KEPT])
    # The scan finds the ids where they are: log, catalog, lake, batch output.
    for needle in NEEDLES:
        assert any(f.startswith("lake/") for f in before[needle]), before
        assert any("events" in f for f in before[needle] if f.endswith((".db", ".db-wal")))
    assert any(f.startswith("batch/") for f in before[GONE])

    job = _erase(client, keys, engine, GONE)
    assert engine.eraser.run_online(engine.recommender) == 1
    assert client.get(f"/v1/erasures/{job['id']}", headers=keys["admin"]).json()["state"] == "lake"
    assert client.get(f"/v1/users/{GONE}", headers=keys["read"]).status_code == 404
    # The kept reader goes on reading while the lake is being rewritten.
    more = _events(KEPT, KEPT_SESSION, range(20, 25), time.time() - 60)
    assert (
        client.post("/v1/events", json={"events": more}, headers=keys["ingest"]).status_code == 202
    )
    engine.archive.run_once()
    assert engine.eraser.run_lake() == 1

    done = client.get(f"/v1/erasures/{job['id']}", headers=keys["admin"]).json()
    assert done["state"] == "done" and done["finished_at"] >= done["created_at"]
    assert done["counts"]["events"] == 12  # 3 anonymous + 9 logged in
    assert done["counts"]["lake_rows"] == 12 and done["counts"]["sessions"] == 2
    assert done["counts"]["profile"] == 1 and done["counts"]["audit_entries"] == 1
    assert done["counts"]["batch_lines"] == 2  # the user's line and their session's

    after = where(home, [*NEEDLES, KEPT])
    assert {n: after[n] for n in NEEDLES} == {n: set() for n in NEEDLES}
    # Everyone else is still there, in the log and the lake.
    assert any(f.startswith("lake/") for f in after[KEPT])
    assert client.get(f"/v1/users/{KEPT}", headers=keys["read"]).json()["history"]
    log = engine.log.read(0, 1000)
    assert sorted(set(log.column("session_id").to_pylist())) == [KEPT_SESSION, "visit-other"]


def test_the_erased_reader_is_a_stranger_at_once_and_the_audit_names_the_job(
    client: TestClient, keys: H, engine: Engine
) -> None:
    _history(client, keys, engine)
    assert client.delete(f"/v1/users/{GONE}", headers=keys["read"]).status_code == 403
    assert client.delete(f"/v1/users/{GONE}").status_code == 401
    job = _erase(client, keys, engine, GONE)
    engine.eraser.run_online(engine.recommender)
    recs = client.get(f"/v1/recommendations?user_id={GONE}", headers=keys["read"]).json()
    read = {f"post-{i:03d}" for i in range(3, 12)}
    assert read & {i["item_id"] for i in recs["items"]}, "their reads are no longer excluded"
    audit = client.get("/v1/audit-log", headers=keys["admin"]).json()
    assert GONE not in str(audit)
    assert any(e["target"] == f"erasure {job['id']}" for e in audit["entries"])
    # Erasing an unknown reader is a job like any other: it finds nothing to remove.
    other = _erase(client, keys, engine, "never-seen")
    engine.eraser.run_online(engine.recommender)
    engine.eraser.run_lake()
    view = client.get(f"/v1/erasures/{other['id']}", headers=keys["admin"]).json()
    assert view["state"] == "done" and view["counts"]["events"] == 0
    listed = client.get("/v1/erasures", headers=keys["admin"]).json()["erasures"]
    assert {e["id"] for e in listed} == {job["id"], other["id"]}
    assert client.get("/v1/erasures/nope", headers=keys["admin"]).status_code == 404


def test_bad_user_ids_are_refused(client: TestClient, keys: H) -> None:
    r = client.delete("/v1/users/" + "x" * 257, headers=keys["admin"])
    assert r.status_code == 422 and "user_id" in r.text
    assert client.delete("/v1/users/a%01b", headers=keys["admin"]).status_code == 422


def test_a_new_event_after_an_erased_newest_one_gets_a_new_seq(
    client: TestClient, keys: H, engine: Engine
) -> None:
    """Seqs are never reused: the archive, past the erased newest event, still sees the
    next one (without AUTOINCREMENT, SQLite would hand the freed seq out again)."""
    first = _events(KEPT, KEPT_SESSION, range(0, 2), time.time() - 100)
    last = _events(GONE, GONE_SESSIONS[0], range(2, 3), time.time() - 50)
    client.post("/v1/events", json={"events": first + last}, headers=keys["ingest"])
    assert engine.archive.run_once() == 3
    _erase(client, keys, engine, GONE)
    engine.eraser.run_online(engine.recommender)
    engine.eraser.run_lake()
    after = _events(KEPT, KEPT_SESSION, range(9, 10), time.time())
    client.post("/v1/events", json={"events": after}, headers=keys["ingest"])
    assert engine.archive.run_once() == 1
    assert engine.log.last_seq() == 4


def test_the_cli_erases_a_reader_when_no_server_runs(
    engine: Engine, keys: H, client: TestClient
) -> None:
    _history(client, keys, engine)
    home = engine.settings.home
    engine.eraser.leave()  # this test's engine runs no erasure loop: it is not a server
    result = CliRunner().invoke(
        app, ["users", "erase", GONE, "--home", str(home)],
        env={"CLICKREC_ENCRYPTION__ENABLED": "false"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "done" in result.output and "events 12" in result.output
    assert GONE not in str(engine.catalog.audit_entries())
    assert where(home / "lake", NEEDLES) == {n: set() for n in NEEDLES}


def test_encrypted_lake_parts_are_rewritten_encrypted_without_the_reader(tmp_path: Path) -> None:
    eng = ServingEngine(load_settings(tmp_path / "home", environ={}))  # encryption on: the default
    try:
        with TestClient(create_app(eng)) as c:
            key, _ = eng.keys.create("admin", None, eng.clock.now())
            admin = {"Authorization": f"Bearer {key}"}
            keys = {"ingest": admin, "read": admin, "admin": admin}
            _history(c, keys, eng)
            _erase(c, keys, eng, GONE)
            eng.eraser.run_online(eng.recommender)
            assert eng.eraser.run_lake() == 1
        parts = eng.lake.parts()
        assert parts and all(p.read_bytes()[-4:] == b"PARE" for p in parts)  # still encrypted
        users = {
            u for p in parts for u in eng.lake.read_part(p, ["user_id"])["user_id"].to_pylist()
        }
        assert GONE not in users and KEPT in users
    finally:
        eng.close()


def _finished_batch_job(client: TestClient, keys: H, lines: list[dict]) -> str:
    r = client.post(
        "/v1/batch-jobs", json={"kind": "recommendations", "lines": lines}, headers=keys["read"]
    )
    assert r.status_code == 202, r.text
    job: str = r.json()["id"]
    for _ in range(200):
        state = client.get(f"/v1/batch-jobs/{job}", headers=keys["read"]).json()["state"]
        if state in ("succeeded", "failed"):
            assert state == "succeeded"
            return job
        time.sleep(0.05)
    raise AssertionError(f"batch job {job} did not finish")


def test_batch_outputs_lose_exactly_the_erased_reader_and_say_so(
    client: TestClient, keys: H, engine: Engine
) -> None:
    readers = ["zz1", "zz10", "zz11", "bob"]
    job = _finished_batch_job(client, keys, [{"user_id": u} for u in readers])
    output = engine.settings.home / "batch" / f"{job}.jsonl"
    before, inode = output.read_bytes(), output.stat().st_ino
    # Ids that are only part of others' ids (or of nothing at all) take nothing away, and
    # the file is not even rewritten.
    for stranger in ("b", "zz", "bo"):
        engine.eraser.submit(stranger)  # as DELETE /v1/users/{id} does
        engine.eraser.run_online(engine.recommender)
    assert output.read_bytes() == before and output.stat().st_ino == inode
    view = client.get(f"/v1/batch-jobs/{job}", headers=keys["read"]).json()
    assert view["state"] == "succeeded" and view["erased_lines"] == 0

    erasure = _erase(client, keys, engine, "zz1")
    previous = os.umask(0o022)  # the rewrite is 0600 of its own, whatever the umask
    try:
        engine.eraser.run_online(engine.recommender)
    finally:
        os.umask(previous)
    answers = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    # One line per input line still: the erased reader's answer is a marker in its place.
    assert answers[0] == {"line": 1, "erased": True}
    assert [a["user_id"] for a in answers[1:]] == readers[1:]
    assert answers[1:] == [orjson.loads(line) for line in before.splitlines()[1:]]
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    view = client.get(f"/v1/batch-jobs/{job}", headers=keys["read"]).json()
    assert view["state"] == "succeeded" and view["erased_lines"] == 1
    done = client.get(f"/v1/erasures/{erasure['id']}", headers=keys["admin"]).json()
    assert done["counts"]["batch_lines"] == 1


def test_an_erasure_waits_for_a_batch_job_that_was_running_and_then_scrubs_it(
    client: TestClient, keys: H, engine: Engine
) -> None:
    assert engine.jobs is not None
    held: list = []
    engine.jobs.spawn = held.append  # the job runs when the test says
    r = client.post(
        "/v1/batch-jobs",
        json={"kind": "recommendations", "lines": [{"user_id": "zz1"}, {"user_id": "bob"}]},
        headers=keys["read"],
    )
    assert r.status_code == 202, r.text
    erasure = _erase(client, keys, engine, "zz1")
    engine.eraser.run_online(engine.recommender)
    state = client.get(f"/v1/erasures/{erasure['id']}", headers=keys["admin"]).json()["state"]
    assert state == "pending"  # the job may still write zz1's answer: wait for it
    held.pop()()  # the job runs to its end and writes zz1's line
    engine.eraser.run_online(engine.recommender)
    state = client.get(f"/v1/erasures/{erasure['id']}", headers=keys["admin"]).json()["state"]
    assert state == "lake"
    output = engine.settings.home / "batch" / f"{r.json()['id']}.jsonl"
    answers = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert answers[0] == {"line": 1, "erased": True} and answers[1]["user_id"] == "bob"


def _job(client: TestClient, keys: H, users: list[str], key: str = "read") -> str:
    lines = [{"user_id": u} for u in users]
    r = client.post(
        "/v1/batch-jobs", json={"kind": "recommendations", "lines": lines}, headers=keys[key]
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def _output(engine: Engine, job_id: str) -> list[dict]:
    path = engine.settings.home / "batch" / f"{job_id}.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_batch_job_asked_for_while_an_erasure_waits_never_names_the_reader(
    client: TestClient, keys: H, engine: Engine
) -> None:
    """The erasure waits for the jobs made before it; one made after it (while it waits)
    must not write the reader's answer once the erasure has scrubbed and moved on."""
    assert engine.jobs is not None
    held: list = []
    engine.jobs.spawn = held.append  # each job runs when the test says
    _job(client, keys, ["bob"])
    erasure = _erase(client, keys, engine, "zz1")
    engine.eraser.run_online(engine.recommender)  # waits for the first job
    later = _job(client, keys, ["zz1", "zz10", "bob"], key="admin")
    held.pop(0)()  # the first job ends
    engine.eraser.run_online(engine.recommender)  # scrubs; the later job has not run yet
    assert engine.catalog.get_erasure(erasure["id"])["state"] == "lake"
    held.pop(0)()  # ... and runs now, after the scrub

    answers = _output(engine, later)
    assert answers[0] == {"line": 1, "erased": True}
    assert [a.get("user_id") for a in answers[1:]] == ["zz10", "bob"]
    view = client.get(f"/v1/batch-jobs/{later}", headers=keys["admin"]).json()
    assert view["state"] == "succeeded" and view["erased_lines"] == 1


def test_each_server_waits_for_its_own_batch_jobs_before_it_lets_an_erasure_end(
    client: TestClient, keys: H, engine: Engine
) -> None:
    """With several serving processes, a job runs in the one that took it: the erasure
    ends only once every one of them has seen its jobs made before it end, and scrubbed."""
    other = ServingEngine(engine.settings)  # a second server on the same home and stores
    try:
        with TestClient(create_app(other)) as other_client:
            held: list = []
            other.jobs.spawn = held.append
            job = _job(other_client, keys, ["zz1", "bob"])
            erasure = _erase(client, keys, engine, "zz1")
            assert engine.eraser.run_online(engine.recommender) == 1  # nothing runs here
            other.eraser.run_online(other.recommender)
            assert engine.eraser.run_lake() == 0  # the other server's job still runs
            held.pop()()  # it writes zz1's answer
            other.eraser.run_online(other.recommender)  # now it scrubs, then agrees
            assert engine.eraser.run_lake() == 1
            assert engine.catalog.get_erasure(erasure["id"])["state"] == "done"
            answers = _output(engine, job)
            assert answers[0] == {"line": 1, "erased": True} and answers[1]["user_id"] == "bob"
    finally:
        other.close()


def test_every_serving_process_forgets_the_reader_before_the_lake_phase_ends_the_job(
    client: TestClient, keys: H, engine: Engine
) -> None:
    """Replicas each hold readers' histories: the job waits until all of them forgot."""
    _history(client, keys, engine)
    other = ServingEngine(engine.settings)  # a second server on the same stores
    try:
        rec, rec2 = engine.recommender, other.recommender
        assert rec is not None and rec2 is not None
        assert rec2.history(GONE, 1)  # rebuilt from the log at its start
        job = _erase(client, keys, engine, GONE)
        assert engine.eraser.run_online(rec) == 1
        assert rec.history(GONE, 1) == [] and rec2.history(GONE, 1)
        assert engine.eraser.run_lake() == 0  # the other server still remembers them
        assert engine.catalog.get_erasure(job["id"])["state"] == "lake"
        other.eraser.run_online(rec2)
        assert rec2.history(GONE, 1) == [] and rec2.history(KEPT, 1)
        for session in GONE_SESSIONS:
            assert rec2.recommend(None, session, 5).items  # a cold start now, not their taste
            assert rec2.state.history(f"s:{session}")[0].size == 0
        assert engine.eraser.run_lake() == 1
        assert engine.catalog.get_erasure(job["id"])["state"] == "done"
    finally:
        other.close()


def test_a_server_not_heard_from_for_a_while_is_not_waited_for(
    client: TestClient, keys: H, engine: Engine
) -> None:
    _history(client, keys, engine)
    engine.catalog.beat("killed-server", engine.clock.now() - REPLICA_TTL - 1)
    job = _erase(client, keys, engine, GONE)
    assert engine.eraser.run_online(engine.recommender) == 1
    assert engine.eraser.run_lake() == 1
    assert engine.catalog.get_erasure(job["id"])["state"] == "done"
    assert engine.catalog.live_replicas(0.0) == {engine.eraser.replica_id}  # dropped
