"""Prometheus /metrics: behind an admin key, and the figures move with what clients do."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

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
