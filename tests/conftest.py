"""Shared fixtures: a real engine on a temporary home, its app, keys of every scope, and a
throwaway PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.config import load_settings
from clickrec.engine import Engine, ServingEngine
from tests.pg import PostgresCluster
from tests.pg import cluster as postgres_cluster
from tests.redisserver import redis_server, redis_url  # noqa: F401  (fixtures)
from tests.s3server import s3_bucket, s3_env, s3_server  # noqa: F401  (fixtures)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    settings = load_settings(tmp_path / "home", environ={})
    eng = ServingEngine(settings)
    yield eng
    eng.close()


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine)) as c:
        yield c


@pytest.fixture
def keys(engine: Engine) -> dict[str, dict[str, str]]:
    """Authorization headers per scope."""
    out = {}
    for scope in ("ingest", "read", "admin"):
        key, _ = engine.keys.create(scope, None, engine.clock.now())
        out[scope] = {"Authorization": f"Bearer {key}"}
    return out


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL server for the whole run; skipped where none is installed
    (a failure instead with CLICKREC_REQUIRE_POSTGRES=1, as in CI)."""
    yield from postgres_cluster()


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """The URL of a fresh, empty database on that server, dropped after the test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)
