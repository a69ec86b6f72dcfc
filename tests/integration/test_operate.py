"""The stores' gauges are computed once (app/operate.py): `clickrec status`, /readyz,
/metrics and the dashboard report the same log head, archive lag and dead letters."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clickrec.cli import app
from clickrec.engine import Engine

pytestmark = pytest.mark.integration


def test_status_readyz_metrics_and_dashboard_agree(
    engine: Engine, client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    events = [{"user_id": f"u{i}", "session_id": "s", "item_id": f"p{i % 5}"} for i in range(30)]
    sent = client.post("/v1/events", json={"events": events}, headers=keys["ingest"])
    assert sent.status_code == 202
    engine.archive.batch_size = 20
    assert engine.archive.run_once() == 20  # 10 left for the archive
    engine.log.park("archive", [(25, "x", "a broken field", 3), (26, "y", "another", 3)], 1.0)

    ready = client.get("/readyz").json()["checks"]
    assert (ready["event_log_last_seq"], ready["archive_lag"]) == (30, 10)
    metrics = client.get("/metrics", headers=keys["admin"]).text
    assert 'clickrec_consumer_lag_events{consumer="archive"} 10.0' in metrics
    assert 'clickrec_dead_letters{consumer="archive"} 2.0' in metrics
    board = client.get("/v1/dashboard/data", headers=keys["admin"]).json()
    assert board["dead_letters"]["v"][-1] == 2
    assert {line["name"]: line["v"][-1] for line in board["consumer_lag"]} == {
        "archive": 10,
        "online state": 0,
    }

    result = CliRunner().invoke(app, ["status", "--json", "--home", str(engine.settings.home)])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert (status["events"], status["archived"], status["dead_letters"]) == (30, 20, 2)
