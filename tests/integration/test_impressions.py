"""What a reader was shown is not what they read: impression events (the page tracker's)
stay in the log, but neither the online state, training nor the click count take them."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from clickrec.engine import ServingEngine
from clickrec.training.dataset import reads_only

pytestmark = pytest.mark.integration


def test_impressions_are_logged_but_are_not_reads_or_clicks(
    engine: ServingEngine, client: TestClient, keys: dict[str, dict[str, str]]
) -> None:
    reads = [{"user_id": f"u{i}", "session_id": "s", "item_id": "read-post"} for i in range(5)]
    shown = [
        {"user_id": f"u{i}", "session_id": "s", "item_id": "page-post", "event_type": "impression",
         "recommendation_id": "r1", "impression": ["a", "b"]}
        for i in range(40)
    ]  # fmt: skip
    click = [{"user_id": "u1", "session_id": "s", "item_id": "a", "recommendation_id": "r1"}]
    for batch in (reads, shown, click):
        sent = client.post("/v1/events", json={"events": batch}, headers=keys["ingest"])
        assert sent.status_code == 202
    assert engine.log.last_seq() == 46  # every event kept

    trending = client.get("/v1/trending", headers=keys["read"]).json()["items"]
    assert [i["item_id"] for i in trending][:1] == ["read-post"]
    assert "page-post" not in [i["item_id"] for i in trending]
    history = client.get("/v1/users/u2", headers=keys["read"]).json()["history"]
    assert [h["item_id"] for h in history] == ["read-post"]
    metrics = client.get("/metrics", headers=keys["admin"]).text
    assert "clickrec_recommendation_clicks_total 1.0" in metrics

    restarted = ServingEngine(engine.settings)  # its online state replayed from the log
    try:
        assert [h["item_id"] for h in restarted.recommender.history("u2", 5)] == ["read-post"]
    finally:
        restarted.close()


def test_training_reads_only_reads() -> None:
    table = pa.table(
        {"event_type": ["read", "impression", "click", None], "item_id": ["a", "b", "c", "d"]}
    )
    kept = reads_only(table, ["impression"]).column("item_id").to_pylist()
    assert kept == ["a", "c", "d"]
    assert reads_only(table, []).num_rows == 4
