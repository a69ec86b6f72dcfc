"""Shared helpers of the fuzz tests: hypothesis profiles and a seeded engine."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from clickrec.api.app import create_app
from clickrec.config import load_settings
from clickrec.engine import Engine, ServingEngine

# CI (and a plain `make test`) runs a fixed, derandomized set of examples so a failure
# reproduces on any machine. Set CLICKREC_FUZZ_EXAMPLES=N to fuzz with N random examples
# per test (per API operation for schemathesis) instead; a failure prints the blob for
# @reproduce_failure. A long run needs pytest's per-test timeout lifted, e.g.
#   CLICKREC_FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/fuzz --timeout 0
_LOCAL = os.environ.get("CLICKREC_FUZZ_EXAMPLES", "").strip()
LOCAL_EXAMPLES: int | None = int(_LOCAL) if _LOCAL else None

settings.register_profile(
    "clickrec-fuzz",
    derandomize=LOCAL_EXAMPLES is None,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PROFILE = settings.get_profile("clickrec-fuzz")


def fuzz_settings(ci_examples: int, **extra: Any) -> settings:
    """Settings for one fuzz test: ``ci_examples`` derandomized, or the local count random."""
    return settings(PROFILE, max_examples=LOCAL_EXAMPLES or ci_examples, **extra)


def make_engine(home: Path) -> Engine:
    return ServingEngine(load_settings(home, environ={}))


def auth_header(engine: Engine, scope: str) -> dict[str, str]:
    key, _ = engine.keys.create(scope, None, engine.clock.now())
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def throwaway_engine() -> Iterator[Engine]:
    with tempfile.TemporaryDirectory(prefix="clickrec-fuzz-") as tmp:
        engine = make_engine(Path(tmp) / "home")
        try:
            yield engine
        finally:
            engine.close()


def fetch_openapi() -> dict[str, Any]:
    """The engine's own schema, as served at GET /v1/openapi.json."""
    with throwaway_engine() as engine, TestClient(create_app(engine)) as client:
        response = client.get("/v1/openapi.json", headers=auth_header(engine, "read"))
        assert response.status_code == 200, response.text
        schema: dict[str, Any] = response.json()
        return schema


def seed(client: TestClient, headers: dict[str, str]) -> None:
    """A little catalog, some readers and a filter, so fuzzed reads reach real data."""
    now = time.time()
    items = [
        {
            "item_id": f"p{i}",
            "categories": ["sport" if i % 2 else "politics"],
            "tags": ["t"],
            "author": "ana" if i < 4 else "bo",
            "published_at": now - 3600 * (10 - i),
            "attributes": {"premium": i == 5, "words": 100 * (i + 1)},
        }
        for i in range(10)
    ]
    assert client.put("/v1/items", json={"items": items}, headers=headers).status_code == 200
    users = [{"user_id": f"u{i}", "attributes": {"plan": "free"}} for i in range(3)]
    assert client.put("/v1/users", json={"users": users}, headers=headers).status_code == 200
    events = [
        {
            "user_id": f"u{k % 3}",
            "session_id": f"s{k}",
            "item_id": f"p{(k * 7) % 10}",
            "event_type": "read",
            "timestamp": now - 60 * k,
        }
        for k in range(40)
    ]
    r = client.post("/v1/events", json={"events": events}, headers=headers)
    assert r.status_code == 202, r.text
    r = client.put(
        "/v1/filters/sport-only",
        json={"expression": 'INCLUDE ItemID WHERE Items.CATEGORIES IN ("sport")'},
        headers=headers,
    )
    assert r.status_code == 200, r.text
