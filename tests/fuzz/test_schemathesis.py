"""Schemathesis against the engine's own OpenAPI schema, in-process (ASGI).

Every operation that GET /v1/openapi.json lists is fuzzed with an admin key injected, so
requests reach the handlers: schemathesis' coverage phase (boundary and invalid values of
every parameter and body field) and then hypothesis examples, valid and invalid. Smaller
passes with a read key and with no key check that refusals (403, 401) are clean too.

Checks on every response: never a 5xx; the body conforms to the schema where the schema
declares one for that status; every 4xx is a JSON object with an "error" string.

CI runs a fixed, derandomized set (see ``_support``); ``CLICKREC_FUZZ_EXAMPLES=N`` fuzzes
with N random examples per operation instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from clickrec.api.app import create_app
from clickrec.engine import Engine

from ._support import LOCAL_EXAMPLES, auth_header, fetch_openapi, fuzz_settings, make_engine, seed

pytestmark = pytest.mark.slow

RAW_SCHEMA = fetch_openapi()


def _without_security(raw: dict) -> dict:
    """The schema without its Bearer requirement: each pass below sends its own key (or
    none), so schemathesis must not drop or replace it (auth: tests/auth_matrix.py)."""
    paths = {
        path: {m: {k: v for k, v in op.items() if k != "security"} for m, op in ops.items()}
        for path, ops in raw["paths"].items()
    }
    components = {k: v for k, v in raw.get("components", {}).items() if k != "securitySchemes"}
    return {**raw, "paths": paths, "components": components}


schema = schemathesis.openapi.from_dict(_without_security(RAW_SCHEMA))
OPERATIONS = {f"{m.upper()} {p}" for p, ops in RAW_SCHEMA["paths"].items() for m in ops}
PUBLIC = {"GET /healthz", "GET /readyz"}
# Operations a read key may not call (ingest or admin scope); every other one it may.
NOT_FOR_READ_KEYS = {
    "POST /v1/events",
    "PUT /v1/items",
    "DELETE /v1/items/{item_id}",
    "PUT /v1/users",
    "PUT /v1/filters/{name}",
    "DELETE /v1/filters/{name}",
    "GET /v1/training-runs",
    "POST /v1/training-runs",
    "GET /v1/training-runs/{run_id}",
    "GET /v1/models",
    "GET /v1/audit-log",
    "GET /v1/dashboard/data",
    "GET /v1/dead-letters",
    "GET /v1/dead-letters/{seq}",
    "POST /v1/dead-letters/replay",
    "POST /v1/dead-letters/purge",
    "DELETE /v1/users/{user_id}",
    "GET /v1/erasures",
    "GET /v1/erasures/{erasure_id}",
}
MIN_REQUESTS = 1000

# What this run sent: (pass, operation, status) -> count; read by the last test.
SENT: Counter[tuple[str, str, int]] = Counter()


class Target:
    """The app under test: one engine for the whole module, seeded with a little data."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.app = create_app(engine)
        self.headers = {
            "admin": auth_header(engine, "admin"),
            "read": auth_header(engine, "read"),
            "none": {},
        }


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    engine = make_engine(tmp_path_factory.mktemp("fuzz") / "home")
    t = Target(engine)
    with TestClient(t.app) as client:
        seed(client, t.headers["admin"])
    yield t
    engine.close()


def check_error_body(case: schemathesis.Case, response: schemathesis.Response) -> None:
    """Every 4xx is JSON with an "error" field (what clients and the docs rely on)."""
    if not 400 <= response.status_code < 500:
        return
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    content_type = ",".join(response.headers.get("content-type", []))
    assert content_type.startswith("application/json"), (
        f"{where}: not JSON ({content_type!r}): {response.content[:300]!r}"
    )
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str), f"{where}: {body!r}"


def send(case: schemathesis.Case, target: Target, who: str) -> schemathesis.Response:
    response = case.call(app=target.app, headers=target.headers[who])
    SENT[(who, case.operation.label, response.status_code)] += 1
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    check_error_body(case, response)
    return response


@schema.parametrize()
@fuzz_settings(10)
def test_admin_key_reaches_every_handler(case: schemathesis.Case, target: Target) -> None:
    response = send(case, target, "admin")
    assert response.status_code not in (401, 403), response.content


@schema.parametrize()
@fuzz_settings(4, phases=[Phase.generate])
def test_read_key_is_refused_cleanly(case: schemathesis.Case, target: Target) -> None:
    response = send(case, target, "read")
    assert response.status_code != 401, response.content
    if case.operation.label in NOT_FOR_READ_KEYS:
        assert response.status_code >= 400, f"read key got {response.status_code}"
    else:
        assert response.status_code != 403, response.content


@schema.parametrize()
@fuzz_settings(2, phases=[Phase.generate])
def test_no_key_is_refused_cleanly(case: schemathesis.Case, target: Target) -> None:
    response = send(case, target, "none")
    if case.operation.label not in PUBLIC:
        assert response.status_code >= 400, f"no key got {response.status_code}"
        if response.status_code == 401:
            assert response.headers.get("www-authenticate") == ["Bearer"]


def test_enough_requests_were_sent() -> None:
    """At least MIN_REQUESTS per run, every operation fuzzed, and the admin pass reached
    the handlers (some 2xx on most operations, never a refusal)."""
    fuzzed = {op for _, op, _ in SENT}
    if fuzzed != OPERATIONS:
        pytest.skip("only part of the fuzz suite ran (-k or deselection)")
    total = sum(SENT.values())
    by_status = Counter(f"{who} {status}" for who, _, status in SENT.elements())
    print(f"\nschemathesis sent {total} requests: {dict(sorted(by_status.items()))}")
    if LOCAL_EXAMPLES is None:
        assert total >= MIN_REQUESTS
    admin_ok = {op for who, op, status in SENT if who == "admin" and status < 300}
    assert len(admin_ok) >= len(OPERATIONS) * 2 // 3, sorted(OPERATIONS - admin_ok)
