"""The auth matrix in-process: every route the app serves × every kind of credential
(tests/auth_matrix.py); bench/attack.py runs the same matrix against a real server."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.config import load_settings
from clickrec.engine import Engine, ServingEngine
from tests import auth_matrix as am

pytestmark = pytest.mark.integration
# One client address and one key per column make far more calls than the default limits
# allow (a tracker key: 40 per address); a 429 would hide the answer the matrix checks.
UNLIMITED = {
    f"CLICKREC_LIMITS__{name}": "1e9"
    for name in (
        "PER_ADDRESS_RPS",
        "INGEST_RPS",
        "READ_RPS",
        "ADMIN_RPS",
        "TRACKER_RPS",
        "TRACKER_PER_ADDRESS_RPS",
    )
}


@dataclass(frozen=True, repr=False)
class Matrix:
    served: set[tuple[str, str]]
    schema: set[tuple[str, str]]
    outcomes: list[am.Outcome]


def _served(routes: Iterable[Any]) -> Iterator[tuple[str, str]]:
    """(method, path) of every route the app serves, in the schema or not; an included
    router is walked into (FastAPI keeps it whole, as ``original_router``)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _served(inner.routes)
            continue
        for method in getattr(route, "methods", None) or ():
            if method in am.METHODS:
                yield method, am.template(route.path)


def _key(
    engine: Engine, scope: str, origins: Sequence[str] = (), expires_at: float | None = None
) -> am.Key:
    new = engine.keys.create_key(scope, None, engine.clock.now(), origins, expires_at)
    return am.Key(new.key, new.aws_access_key_id, new.aws_secret_access_key)


def _keys(engine: Engine) -> am.Keys:
    expires_at = engine.clock.now() + 0.5  # never used before it expires (run waits)
    expired = _key(engine, "admin", expires_at=expires_at)
    revoked = _key(engine, "admin")
    assert engine.catalog.revoke_key(revoked.key_id, engine.clock.now())
    return am.Keys(
        ingest=_key(engine, "ingest"),
        read=_key(engine, "read"),
        admin=_key(engine, "admin"),
        tracker=_key(engine, "tracker", [am.TRACKER_ORIGIN]),
        revoked=revoked,
        expired=expired,
        expires_at=expires_at,
    )


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    home: Path = tmp_path_factory.mktemp("auth-matrix") / "home"
    engine = ServingEngine(load_settings(home, environ=UNLIMITED))
    try:
        app = create_app(engine)
        served = set(_served(app.routes))
        schema = am.schema_routes(app.openapi())
        routes, _ = am.plan(served)
        keys = _keys(engine)
        with TestClient(app, raise_server_exceptions=False) as client:
            outcomes = am.run(client, routes, am.credentials(keys), keys)
        yield Matrix(served, schema, outcomes)
    finally:
        engine.close()


def _fail_on(outcomes: Sequence[am.Outcome], what: str) -> None:
    if outcomes:
        pytest.fail(f"{what}:\n" + "\n".join(o.describe() for o in outcomes), pytrace=False)


def test_every_route_the_app_serves_is_in_the_table(matrix: Matrix) -> None:
    assert matrix.schema <= matrix.served  # the walk sees every route the schema lists
    missing = sorted(matrix.served - am.NEEDS.keys())
    stale = sorted(am.NEEDS.keys() - matrix.served)
    assert not missing, f"add these routes to auth_matrix.NEEDS with what they need: {missing}"
    assert not stale, f"auth_matrix.NEEDS lists routes the app does not serve: {stale}"


def test_the_matrix_covers_every_route_and_credential(matrix: Matrix) -> None:
    routes = {o.route.label for o in matrix.outcomes}
    creds = {o.credential.name for o in matrix.outcomes}
    assert {f"{method} {path}" for method, path in am.NEEDS} <= routes
    assert len(matrix.outcomes) == len(routes) * len(creds)
    # Each valid credential gets somewhere: the keys are real, not refused wholesale.
    through = {o.credential.name for o in matrix.outcomes if o.status not in (401, 403)}
    assert {"ingest", "read", "admin", "trk", "s-ingest", "s-read", "s-admin"} <= through


def test_no_refused_call_gets_through(matrix: Matrix) -> None:
    bypasses = [o for o in matrix.outcomes if o.expected is not None and o.status < 300]
    _fail_on(bypasses, "calls that should be refused got through")


def test_no_call_is_a_server_error(matrix: Matrix) -> None:
    _fail_on([o for o in matrix.outcomes if o.status >= 500], "server errors")


def test_every_refusal_has_its_status_and_every_permitted_call_goes_through(
    matrix: Matrix,
) -> None:
    wrong = [o for o in matrix.outcomes if o.problem and 300 <= o.status < 500]
    _fail_on(wrong, "calls with the wrong answer")


@pytest.mark.parametrize(
    ("expected", "status", "fails"),
    [
        (401, 200, True),  # a bypass
        (403, 204, True),
        (None, 500, True),
        (403, 503, True),
        (401, 429, True),  # rate limited: the answer went unchecked
        (None, 429, True),
        (None, 403, True),  # a permitted call refused
        (401, 403, True),
        (401, 422, True),  # validated before authenticated
        (401, 401, False),
        (403, 403, False),
        (None, 200, False),
        (None, 404, False),
        (None, 422, False),
    ],
)
def test_the_judge_fails_bypasses_errors_and_wrong_refusals(
    expected: int | None, status: int, fails: bool
) -> None:
    assert (am.judge(expected, status) is not None) is fails
