"""Limits before logic: a request over a limit never reaches a handler."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.config import load_settings
from clickrec.engine import Engine, ServingEngine

pytestmark = pytest.mark.integration


def test_a_key_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    env = {"CLICKREC_LIMITS__INGEST_RPS": "2", "CLICKREC_LIMITS__BURST_SECONDS": "1"}
    engine = ServingEngine(load_settings(tmp_path / "home", environ=env))
    try:
        ingest, _ = engine.keys.create("ingest", None, engine.clock.now())
        read, _ = engine.keys.create("read", None, engine.clock.now())
        with TestClient(create_app(engine)) as client:
            h = {"Authorization": f"Bearer {ingest}"}
            body = {"events": [{"session_id": "s", "item_id": "i"}]}
            codes = [client.post("/v1/events", json=body, headers=h).status_code for _ in range(4)]
            assert codes[:2] == [202, 202] and codes[2:] == [429, 429]
            refused = client.post("/v1/events", json=body, headers=h)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert "rate limit" in refused.json()["error"]
            assert engine.log.last_seq() == 2  # the refused ones were never written
            # Another key (another scope) has its own bucket.
            other = client.get("/v1/trending", headers={"Authorization": f"Bearer {read}"})
            assert other.status_code == 200
    finally:
        engine.close()


def test_a_flood_from_one_address_is_cut_whatever_the_key(tmp_path: Path) -> None:
    # 3 requests of burst, refilled one per 10 s: no pause on a busy machine lets a 4th through
    env = {"CLICKREC_LIMITS__PER_ADDRESS_RPS": "0.1", "CLICKREC_LIMITS__BURST_SECONDS": "30"}
    engine = ServingEngine(load_settings(tmp_path / "home", environ=env))
    try:
        with TestClient(create_app(engine)) as client:
            codes = [
                client.get(
                    "/v1/trending", headers={"Authorization": f"Bearer ck_x{i}_y"}
                ).status_code
                for i in range(6)
            ]
            assert codes[:3] == [401, 401, 401] and set(codes[3:]) == {429}
    finally:
        engine.close()


def test_oversized_headers_get_431(client: TestClient) -> None:
    r = client.get("/healthz", headers={"x-padding": "a" * 20_000})
    assert r.status_code == 431
    assert "headers are larger" in r.json()["error"]


def test_deeply_nested_json_is_a_4xx(client: TestClient, keys: dict) -> None:
    deep = b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"
    r = client.post("/v1/events", content=deep, headers=keys["ingest"])
    assert 400 <= r.status_code < 500


def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    """A slow client (the slowloris attack) is cut off; the app is never called."""
    import asyncio

    from clickrec.api.middleware.limits import BodyLimitMiddleware

    called = []

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        called.append(scope)

    async def never() -> dict:
        await asyncio.sleep(3600)
        return {}

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/events", "headers": []}
    asyncio.run(BodyLimitMiddleware(app, max_body=1000, body_timeout=0.05)(scope, never, send))
    assert sent[0]["status"] == 408 and not called


def test_readiness_says_why_it_is_not_ready(tmp_path: Path) -> None:
    """/readyz is 503 with its reasons while a consumer is beyond its lag bound."""
    env = {"CLICKREC_LIMITS__MAX_ARCHIVE_LAG": "3", "CLICKREC_LIMITS__MAX_SERVING_LAG": "2"}
    engine = ServingEngine(load_settings(tmp_path / "home", environ=env))
    try:
        with TestClient(create_app(engine)) as client:
            assert client.get("/readyz").json()["reasons"] == []
            # Another process (an import) appends: the archive and the online state lag.
            rows = [
                {
                    "event_id": f"x{i}",
                    "timestamp": 1.0,
                    "session_id": "s",
                    "item_id": "i",
                    "event_type": "view",
                    "received_at": 1.0,
                }
                for i in range(5)
            ]
            engine.log.append(rows)
            ready = client.get("/readyz")
            assert ready.status_code == 503
            body = ready.json()
            assert body["status"] == "unavailable"
            assert body["checks"]["archive_lag"] == 5
            assert "archive lag 5 events is over 3" in body["reasons"]
            assert "serving_lag" in body["checks"]  # the refresher catches up within 0.25 s
    finally:
        engine.close()


def test_serving_lag_counts_what_the_online_state_has_not_seen(engine: Engine) -> None:
    rec = engine.recommender
    assert rec is not None  # the engine fixture runs no background refresher
    rows = [
        {
            "event_id": f"y{i}",
            "timestamp": 1.0,
            "session_id": "s",
            "item_id": "i",
            "event_type": "view",
            "received_at": 1.0,
        }
        for i in range(4)
    ]
    other = SQLiteEventLog(engine.log.path)  # type: ignore[attr-defined]
    other.append(rows)  # another process (an import) appends
    other.close()
    assert rec.lag(engine.log.last_seq()) == 4
    rec.catch_up()
    assert rec.lag(engine.log.last_seq()) == 0
