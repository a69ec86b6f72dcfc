"""Every admin action is audited (who, what, when, from where), readable by admins only;
keys may expire."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clickrec.api.app import create_app
from clickrec.cli import app
from clickrec.config import load_settings
from clickrec.core.clock import FixedClock
from clickrec.core.errors import InvalidInput
from clickrec.engine import Engine, ServingEngine

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


def test_admin_changes_are_audited_and_data_plane_calls_are_not(
    client: TestClient, keys: H, engine: Engine
) -> None:
    admin = keys["admin"]
    body = {"expression": 'EXCLUDE ItemID WHERE Items.AUTHOR IN ("x")'}
    assert client.put("/v1/filters/no-x", json=body, headers=admin).status_code == 200
    assert client.delete("/v1/filters/nope", headers=admin).status_code == 404
    events = {"events": [{"session_id": "s", "item_id": "i"}]}
    assert client.post("/v1/events", json=events, headers=admin).status_code == 202
    assert client.get("/v1/trending", headers=admin).status_code == 200
    assert client.put("/v1/filters/f", json=body, headers=keys["ingest"]).status_code == 403

    entries = client.get("/v1/audit-log", headers=admin).json()["entries"]
    assert [(e["action"], e["target"], e["status"]) for e in entries] == [
        ("DELETE /v1/filters/{name}", "/v1/filters/nope", 404),
        ("PUT /v1/filters/{name}", "/v1/filters/no-x", 200),
    ]
    first = entries[-1]
    assert first["actor"].startswith("admin-") and first["source"] == "testclient"
    assert abs(first["at"] - time.time()) < 60 and len(first["request_id"]) == 16
    assert client.get("/v1/audit-log", headers=keys["read"]).status_code == 403


def test_cli_key_actions_are_audited_too(engine: Engine) -> None:
    home = str(engine.settings.home)
    made = CliRunner().invoke(app, ["keys", "create", "--scope", "read", "--home", home])
    assert made.exit_code == 0, made.output
    key_id = next(line for line in made.output.splitlines() if line.startswith("ck_")).split("_")[1]
    revoked = CliRunner().invoke(app, ["keys", "revoke", key_id, "--home", home])
    assert revoked.exit_code == 0, revoked.output
    entries = engine.catalog.audit_entries()
    assert [(e["action"], e["source"]) for e in entries] == [
        ("keys revoke", "local"),
        ("keys create", "local"),
    ]
    assert entries[0]["target"] == key_id and entries[0]["actor"].startswith("cli:")


def test_an_expired_key_stops_working(tmp_path: Path) -> None:
    clock = FixedClock(1_800_000_000.0)
    engine = ServingEngine(load_settings(tmp_path / "home", environ={}), clock=clock)
    try:
        now = clock.now()
        key, _ = engine.keys.create("read", None, now)
        soon = engine.keys.create_key("read", None, now, expires_at=now + 1.0)
        headers = {"Authorization": f"Bearer {soon.key}"}
        with TestClient(create_app(engine)) as client:
            assert client.get("/v1/trending", headers=headers).status_code == 200
            clock.advance(0.5)
            assert client.get("/v1/trending", headers=headers).status_code == 200  # cached
            clock.advance(0.5)  # its expiry, within the cache's 2 s: refused all the same
            expired = client.get("/v1/trending", headers=headers)
            assert expired.status_code == 401 and "expired" in expired.json()["error"]
            live = client.get("/v1/trending", headers={"Authorization": f"Bearer {key}"})
            assert live.status_code == 200
        with pytest.raises(InvalidInput, match="past"):
            engine.keys.create_key("read", None, now, expires_at=now - 1)
    finally:
        engine.close()
