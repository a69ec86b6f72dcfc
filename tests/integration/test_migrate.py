"""`clickrec migrate`: an embedded home's event log and catalog copied into Redis and
PostgreSQL, verified, and the home then served from them with nothing lost or doubled."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import clickrec.migrate as migration
from clickrec.api.app import create_app
from clickrec.cli import app
from clickrec.config import load_settings, write_default_config
from clickrec.core.errors import Conflict
from clickrec.engine import Engine, ServingEngine

pytestmark = pytest.mark.integration


def _embedded_home(home: Path) -> tuple[str, int]:
    """A home with items, readers, keys, events (part archived), an erased reader (a gap in
    the seqs) and a dead letter; (an admin key, the last seq)."""
    settings = load_settings(home, environ={})
    engine = ServingEngine(settings)
    write_default_config(home, settings)  # as `clickrec init` does
    try:
        key, _ = engine.keys.create("admin", "ops", engine.clock.now())
        auth = {"Authorization": f"Bearer {key}"}
        with TestClient(create_app(engine)) as client:
            items = [{"item_id": f"p{i}", "title": f"Post {i}"} for i in range(50)]
            assert client.put("/v1/items", json={"items": items}, headers=auth).status_code == 200
            users = [{"user_id": "u1", "attributes": {"plan": "pro"}}]
            assert client.put("/v1/users", json={"users": users}, headers=auth).status_code == 200
            for batch in range(30):
                events = [
                    {"event_id": f"e{batch}-{i}", "user_id": f"u{(batch + i) % 9}",
                     "session_id": f"s{batch}", "item_id": f"p{(batch * 7 + i) % 50}"}
                    for i in range(40)
                ]  # fmt: skip
                sent = client.post("/v1/events", json={"events": events}, headers=auth)
                assert sent.status_code == 202
            engine.archive.batch_size = 500
            assert engine.archive.run_once() == 500  # part archived, the rest a log tail
            assert client.delete("/v1/users/u8", headers=auth).status_code == 202
            engine.eraser.run_online(engine.recommender)
        engine.log.park("archive", [(3, "e0-2", "a broken field", 3)], 1.0)
        return key, engine.log.last_seq()
    finally:
        engine.close()


def test_migrate_copies_verifies_and_the_home_then_runs_on_the_new_stores(
    tmp_path: Path, redis_url: str, postgres_url: str
) -> None:
    home = tmp_path / "home"
    key, last = _embedded_home(home)
    before = ServingEngine(load_settings(home, environ={}))
    events = before.log.read(0, 10**6).to_pylist()
    history = before.recommender.history("u1", 50) if before.recommender else []
    before.close()

    result = CliRunner().invoke(
        app,
        ["migrate", "--event-log", redis_url, "--catalog", postgres_url, "--home", str(home)],
        env={"CLICKREC_HOME": str(home)},
    )
    assert result.exit_code == 0, result.output
    assert "events" in result.output and "catalog api_keys" in result.output
    stores = tomllib.loads((home / "clickrec.toml").read_text())["stores"]
    assert stores["event_log"] == redis_url and stores["catalog"] == postgres_url
    assert (home / "clickrec.toml.before-migrate").exists()

    engine = ServingEngine(
        load_settings(home, environ={})
    )  # the config file alone names the stores
    try:
        assert type(engine.log).__name__ == "RedisEventLog"
        assert engine.catalog.engine.dialect.name == "postgresql"
        assert engine.log.read(0, 10**6).to_pylist() == events  # seqs, gaps and fields
        assert engine.log.last_seq() == last and engine.log.get_offset("archive") == 500
        assert [d["seq"] for d in engine.log.dead_letters("archive")] == [3]
        assert engine.recommender is not None
        assert engine.recommender.history("u1", 50) == history
        with TestClient(create_app(engine)) as client:
            auth = {"Authorization": f"Bearer {key}"}  # the keys came along
            profile = client.get("/v1/users/u1", headers=auth).json()
            assert profile["attributes"] == {"plan": "pro"}
            assert client.get("/v1/users/u8", headers=auth).status_code == 404  # still erased
            new = [{"event_id": "after", "user_id": "u1", "session_id": "x", "item_id": "p1"}]
            assert client.post("/v1/events", json={"events": new}, headers=auth).json() == {
                "accepted": 1,
                "duplicates": 0,
            }
            again = [{"event_id": "e0-0", "user_id": "u1", "session_id": "x", "item_id": "p1"}]
            dup = client.post("/v1/events", json={"events": again}, headers=auth).json()
            assert dup["duplicates"] == 1  # the dedup index came along too
        assert engine.log.last_seq() == last + 1
        while engine.archive.run_once():
            pass
        engine.eraser.run_online(engine.recommender)
        assert engine.eraser.run_lake() == 1  # the erasure begun before the move ends after it
        rows = sum(engine.lake.part_rows(p) for p in engine.lake.parts())
        assert rows == len(events) + 1  # the archive went on from its offset: none twice
    finally:
        engine.close()


def test_an_interrupted_migration_finishes_when_run_again(
    tmp_path: Path, redis_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    _embedded_home(home)
    settings = load_settings(home, environ={})
    monkeypatch.setattr(migration, "_CHUNK", 100)
    seen: list[int] = []

    def interrupt(what: str, done: int, total: int) -> None:
        if what == "events":
            seen.append(done)
            if len(seen) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migration.migrate(settings, redis_url, postgres_url, interrupt)
    assert "redis" not in (home / "clickrec.toml").read_text()  # not switched half-way
    checks = migration.migrate(settings, redis_url, postgres_url)
    assert all(c.ok for c in checks) and {c.name for c in checks} >= {"events", "catalog items"}


def test_a_migration_refuses_to_run_beside_a_worker(tmp_path: Path, redis_url: str) -> None:
    home = tmp_path / "home"
    _embedded_home(home)
    settings = load_settings(home, environ={})
    worker = Engine(settings)
    stop = __import__("threading").Event()
    assert worker.lake.acquire_writer(stop)
    try:
        with pytest.raises(Conflict, match="stop clickrec serve"):
            migration.migrate(settings, redis_url, None)
    finally:
        worker.lake.release_writer()
        worker.close()
