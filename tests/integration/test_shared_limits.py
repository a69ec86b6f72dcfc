"""Rate limits that hold for a whole deployment: every replica takes from buckets in Redis."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.backends.redis_limits import RedisBuckets
from clickrec.config import load_settings
from clickrec.engine import ServingEngine

pytestmark = pytest.mark.integration


def test_two_replicas_share_one_budget_per_key(tmp_path: Path, redis_url: str) -> None:
    """A key allowed 2 requests (of burst) gets 2 in all, not 2 from each replica."""
    env = {
        "CLICKREC_STORES__EVENT_LOG": redis_url,
        "CLICKREC_STORES__CATALOG": f"sqlite:///{tmp_path / 'catalog.db'}",
        "CLICKREC_LIMITS__INGEST_RPS": "0.1",
        "CLICKREC_LIMITS__BURST_SECONDS": "20",
    }
    a = ServingEngine(load_settings(tmp_path / "a", environ=env))
    b = ServingEngine(load_settings(tmp_path / "b", environ=env))
    try:
        key, _ = a.keys.create("ingest", None, a.clock.now())
        auth = {"Authorization": f"Bearer {key}"}
        body = {"events": [{"session_id": "s", "item_id": "i"}]}
        with TestClient(create_app(a)) as ca, TestClient(create_app(b)) as cb:
            codes = [c.post("/v1/events", json=body, headers=auth).status_code for c in (ca, cb)]
            codes += [c.post("/v1/events", json=body, headers=auth).status_code for c in (ca, cb)]
        assert codes == [202, 202, 429, 429]
        assert a.log.last_seq() == 2
    finally:
        a.close()
        b.close()


def test_buckets_refill_at_their_rate_and_count_every_replica(redis_url: str) -> None:
    first, second = RedisBuckets(redis_url), RedisBuckets(redis_url)
    try:
        waits = [b.take("key:k", 0.5, 3) for b in (first, second, first, second)]
        assert waits[:3] == [0.0, 0.0, 0.0]
        assert 1.5 < waits[3] <= 2.0  # one token short at 0.5 a second
        assert first.take("key:other", 0.5, 3) == 0.0  # each name its own bucket
    finally:
        first.close()
        second.close()


def test_an_unreachable_redis_lets_requests_through() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    buckets = RedisBuckets(f"redis://127.0.0.1:{port}/0")
    try:
        assert [buckets.take("key:k", 0.001, 1) for _ in range(3)] == [0.0, 0.0, 0.0]
    finally:
        buckets.close()


def test_a_busy_bucket_is_leased_in_slices_and_the_limit_still_holds(redis_url: str) -> None:
    """At 100 requests/s a process takes 5 tokens (50 ms worth) per round trip; two
    processes together admit the burst, plus at most what the two leases and the refill
    during the test add."""
    import time

    import redis

    first, second = RedisBuckets(redis_url), RedisBuckets(redis_url)
    stats = redis.Redis.from_url(redis_url)
    try:
        calls = lambda: stats.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)  # noqa: E731
        before = calls()
        assert [first.take("key:k", 100, 200) for _ in range(10)] == [0.0] * 10
        assert calls() - before <= 3  # two leases (the first load of the script aside)
        started = time.monotonic()
        admitted = 10 + sum(
            b.take("key:k", 100, 200) == 0 for _ in range(300) for b in (first, second)
        )
        refill = 100 * (time.monotonic() - started)
        assert 200 <= admitted <= 200 + 2 * 5 + refill + 1
    finally:
        stats.close()
        first.close()
        second.close()
