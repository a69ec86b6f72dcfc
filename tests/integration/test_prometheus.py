"""Prometheus /metrics: behind an admin key, and the figures move with what clients do."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.config import load_settings
from clickrec.core.clock import FixedClock
from clickrec.engine import ServingEngine

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in the exposition"
    return float(match.group(1))


def test_metrics_need_admin_and_count_events(client: TestClient, keys: H) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=keys["read"]).status_code == 403
    events = [{"session_id": "s", "item_id": f"p{i}", "event_id": f"e{i}"} for i in range(30)]
    client.post("/v1/events", json={"events": events}, headers=keys["ingest"])
    client.post("/v1/events", json={"events": events[:10]}, headers=keys["ingest"])
    client.get("/v1/trending", headers=keys["read"])
    response = client.get("/metrics", headers=keys["admin"])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert sample(text, "clickrec_events_accepted_total") == 30
    assert sample(text, "clickrec_events_duplicate_total") == 10
    assert sample(text, "clickrec_event_batch_size_count") == 2
    assert sample(text, "clickrec_consumer_lag_events", '{consumer="archive"}') == 30
    assert (
        sample(
            text,
            "clickrec_request_seconds_count",
            '{method="GET",route="/v1/trending",status="200"}',
        )
        == 1
    )
    assert sample(text, "process_resident_memory_bytes") > 0
    assert sample(text, "clickrec_online_readers", '{state="kept"}') == 1  # session "s"
    assert sample(text, "clickrec_online_readers", '{state="evicted"}') == 0


def test_freshness_is_measured_for_own_and_tailed_events(tmp_path: Path) -> None:
    """Events acknowledged here reach recommendations at once; events another process
    wrote (an import) reach them through the log tail, and both show in /metrics."""
    clock = FixedClock(1_800_000_000.0)
    engine = ServingEngine(load_settings(tmp_path / "home", environ={}), clock=clock)
    try:
        ingest, _ = engine.keys.create("ingest", None, clock.now())
        admin, _ = engine.keys.create("admin", None, clock.now())
        with TestClient(create_app(engine)) as client:
            events = [{"session_id": "s", "item_id": f"p{i}"} for i in range(3)]
            sent = client.post(
                "/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {ingest}"}
            )
            assert sent.status_code == 202
            other = SQLiteEventLog(engine.log.path)  # type: ignore[attr-defined]
            other.append(
                [
                    {
                        "event_id": "imported",
                        "timestamp": 1.0,
                        "session_id": "s",
                        "item_id": "q",
                        "event_type": "view",
                        "received_at": clock.now() - 2.0,
                    }
                ]
            )
            other.close()
            assert engine.recommender is not None
            engine.recommender.catch_up()
            text = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    finally:
        engine.close()
    name = "clickrec_recommendation_freshness_seconds"
    own, tail = '{path="own"}', '{path="tail"}'
    assert sample(text, f"{name}_count", own) == sample(text, f"{name}_count", tail) == 1.0
    # The imported event was acknowledged two seconds before the tail applied it.
    assert sample(text, f"{name}_sum", tail) == 2.0
    assert sample(text, f"{name}_sum", own) == 0.0
