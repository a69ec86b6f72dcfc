"""The built-in dashboard in-process: its data behind an admin key, the online CTR as the
Prometheus counters say, rates between samples, and the static page under its CSP."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.config import load_settings
from clickrec.core.clock import FixedClock
from clickrec.engine import Engine, ServingEngine

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]
DATA = "/v1/dashboard/data"


def counter(text: str, name: str) -> float:
    """A counter's value in the exposition, summed over its labels."""
    values = re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    assert values, f"{name} not in the exposition"
    return sum(float(v) for v in values)


def test_data_needs_an_admin_key(client: TestClient, keys: H) -> None:
    assert client.get(DATA).status_code == 401
    assert client.get(DATA, headers=keys["read"]).status_code == 403
    assert client.get(DATA, headers=keys["ingest"]).status_code == 403
    assert client.get(DATA, headers=keys["admin"]).status_code == 200


def test_ctr_events_and_trending_follow_the_traffic(client: TestClient, keys: H) -> None:
    items = [{"item_id": f"p{i}", "title": f"Post number {i}"} for i in range(6)]
    assert client.put("/v1/items", json={"items": items}, headers=keys["ingest"]).status_code == 200
    reads = [
        {"user_id": f"u{k % 4}", "session_id": f"s{k % 4}", "item_id": f"p{k % 3}"}
        for k in range(20)
    ]
    assert (
        client.post("/v1/events", json={"events": reads}, headers=keys["ingest"]).status_code == 202
    )

    read = keys["read"]
    answers = [
        client.get("/v1/recommendations", params={"user_id": f"u{k}"}, headers=read)
        for k in range(3)
    ]
    answers.append(client.get("/v1/trending", headers=read))
    answers.append(client.get("/v1/items/p1/similar", headers=read))
    answers.append(
        client.post("/v1/rankings", json={"user_id": "u1", "item_ids": ["p1", "p2"]}, headers=read)
    )
    assert [a.status_code for a in answers] == [200] * 6
    refused = client.get("/v1/recommendations", headers=read)  # no reader: not served
    assert refused.status_code == 422

    clicks = [
        {
            "event_id": f"click-{k}",
            "user_id": "u0",
            "session_id": "s0",
            "item_id": "p4",
            "recommendation_id": answers[k].json()["recommendation_id"],
        }
        for k in range(3)
    ]
    sent = client.post("/v1/events", json={"events": clicks}, headers=keys["ingest"])
    assert sent.json() == {"accepted": 3, "duplicates": 0}
    again = client.post("/v1/events", json={"events": clicks}, headers=keys["ingest"])
    assert again.json()["duplicates"] == 3  # a retried batch is not three more clicks

    data = client.get(DATA, headers=keys["admin"]).json()
    assert data["totals"] == {"events": 23.0, "served": 6.0, "clicks": 3.0, "ctr": 0.5}
    assert data["events_per_minute"]["v"][-1] > 0
    assert data["ctr"]["v"][-1] == pytest.approx(0.5)
    assert all(line["v"][-1] is not None for line in data["latency_ms"])
    assert [line["name"] for line in data["latency_ms"]] == ["p50", "p95", "p99"]
    p50, p95, p99 = (line["v"][-1] for line in data["latency_ms"])
    assert 0 < p50 <= p95 <= p99
    lag = {line["name"]: line["v"][-1] for line in data["consumer_lag"]}
    assert lag["archive"] == 23  # nothing archives in-process: every event is behind
    assert data["dead_letters"]["v"][-1] == 0

    trending = data["trending"]
    assert trending and len(trending) <= 10
    assert trending[0]["item_id"] in {"p0", "p1", "p2"}
    assert trending[0]["title"] == f"Post number {trending[0]['item_id'][1:]}"

    # The dashboard's own look at trending is not a recommendation served.
    again_data = client.get(DATA, headers=keys["admin"]).json()
    assert again_data["totals"]["served"] == 6

    text = client.get("/metrics", headers=keys["admin"]).text
    served = counter(text, "clickrec_recommendations_served_total")
    assert data["totals"]["ctr"] == counter(text, "clickrec_recommendation_clicks_total") / served
    assert (
        re.search(r'^clickrec_recommendations_served_total\{endpoint="rankings"\} 1.0$', text, re.M)
        is not None
    )


@pytest.fixture
def timed(tmp_path: Path) -> Iterator[tuple[TestClient, FixedClock, dict[str, str]]]:
    clock = FixedClock(1_800_000_000.0)
    engine = ServingEngine(load_settings(tmp_path / "home", environ={}), clock=clock)
    key, _ = engine.keys.create("admin", None, clock.now())
    with TestClient(create_app(engine)) as client:
        yield client, clock, {"Authorization": f"Bearer {key}"}
    engine.close()


def test_rates_are_per_minute_between_samples(
    timed: tuple[TestClient, FixedClock, dict[str, str]],
) -> None:
    client, clock, admin = timed
    start = clock.now()

    def send(n: int, clicked: int = 0) -> None:
        events = [
            {
                "session_id": "s",
                "item_id": f"p{k}",
                "recommendation_id": "r" if k < clicked else None,
            }
            for k in range(n)
        ]
        assert client.post("/v1/events", json={"events": events}, headers=admin).status_code == 202

    send(30)
    clock.advance(60)
    first = client.get(DATA, headers=admin).json()
    assert first["started_at"] == start
    assert first["events_per_minute"] == {"name": "events", "t": [start + 60], "v": [30.0]}
    assert first["ctr"]["v"] == [None]  # nothing served: no rate, not zero
    assert first["latency_ms"][0]["v"] == [None]

    for k in range(4):
        client.get("/v1/recommendations", params={"session_id": f"s{k}"}, headers=admin)
    send(15, clicked=2)
    clock.advance(2)  # sooner than a sample is due: the same figures
    assert client.get(DATA, headers=admin).json()["events_per_minute"]["v"] == [30.0]
    clock.advance(3)
    second = client.get(DATA, headers=admin).json()
    assert second["events_per_minute"]["t"] == [start + 60, start + 65]
    assert second["events_per_minute"]["v"] == [30.0, 180.0]
    assert second["ctr"]["v"] == [None, 0.5]
    assert second["totals"]["ctr"] == 0.5
    assert [len(line["v"]) for line in second["consumer_lag"]] == [2, 2]
    assert second["dead_letters"]["v"] == [0.0, 0.0]


def test_the_page_loads_without_a_key_under_a_same_origin_policy(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert '<script src="/dashboard/app.js"' in page.text
    assert "<script>" not in page.text and "style=" not in page.text
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
        asset = client.get(f"/dashboard/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        # Only the page has the loosened policy; everything else keeps the API's.
        assert (
            asset.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
        )
    missing = client.get("/dashboard/secrets.txt")
    assert missing.status_code == 404 and missing.json()["error"]


def test_personalize_api_counts_toward_the_ctr(client: TestClient, keys: H, engine: Engine) -> None:
    """boto3's GetRecommendations and GetPersonalizedRanking are recommendations served,
    and PutEvents with a recommendationId is a click, as on clickrec's own routes."""
    made = engine.keys.create_key("admin", "sigv4", engine.clock.now())
    creds = Credentials(made.aws_access_key_id, made.aws_secret_access_key)

    def call(path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = AWSRequest("POST", f"http://testserver{path}", data=json.dumps(body).encode())
        SigV4Auth(creds, "personalize", "us-east-1").add_auth(request)
        answer = client.post(path, content=request.body, headers=dict(request.headers.items()))
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    client.put(
        "/v1/items", json={"items": [{"item_id": "a"}, {"item_id": "b"}]}, headers=keys["admin"]
    )
    campaign = "arn:aws:personalize:us-east-1:000000000000:campaign/news"
    shown = call("/recommendations", {"campaignArn": campaign, "userId": "u1"})
    call("/recommendations", {"campaignArn": campaign, "itemId": "a"})
    call("/personalize-ranking", {"campaignArn": campaign, "userId": "u1", "inputList": ["a", "b"]})
    event = {"eventType": "click", "itemId": "a", "sentAt": engine.clock.now()}
    clicked = {**event, "recommendationId": shown["recommendationId"]}
    call("/events", {"trackingId": "t", "sessionId": "s", "eventList": [event, clicked]})

    totals = client.get(DATA, headers=keys["admin"]).json()["totals"]
    assert (totals["served"], totals["clicks"]) == (3, 1)
