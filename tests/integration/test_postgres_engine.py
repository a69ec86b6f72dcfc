"""The engine end to end with its catalog on a real PostgreSQL: keys, items, events,
training, recommendations, filters, the audit log, and a second replica on the same
catalog."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clickrec.api.app import create_app
from clickrec.backends.registry import open_catalog
from clickrec.cli import app
from clickrec.config import load_settings
from clickrec.core.errors import StoreUnavailable
from clickrec.engine import Engine, ServingEngine
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


@pytest.fixture
def env(postgres_url: str) -> dict[str, str]:
    """The catalog named as the README says, ``postgresql://`` with no driver in it."""
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    return {"CLICKREC_STORES__CATALOG": url}


def start(home: Path, env: dict[str, str]) -> Engine:
    return ServingEngine(load_settings(home, environ=env))


@pytest.fixture
def engine(tmp_path: Path, env: dict[str, str]) -> Iterator[Engine]:
    """The engine on PostgreSQL; conftest's ``client`` and ``keys`` use this one."""
    eng = start(tmp_path / "home", env)
    yield eng
    eng.close()


def load_blog(client: TestClient, keys: H) -> list[dict]:
    blog = generate_blog(BlogSpec(users=300, days=6, posts_per_day=25, seed=3))
    items = [
        {
            "item_id": r["item_id"],
            "published_at": r["published_at"],
            "categories": r["categories"].split("|"),
            "title": f"Post {r['item_id']}",
        }
        for r in blog.items.to_pylist()
    ]
    for start_at in range(0, len(items), 1000):
        batch = {"items": items[start_at : start_at + 1000]}
        assert client.put("/v1/items", json=batch, headers=keys["ingest"]).status_code == 200
    events = blog_interactions_as_events(blog)
    for start_at in range(0, len(events), 1000):
        batch = {"events": events[start_at : start_at + 1000]}
        assert client.post("/v1/events", json=batch, headers=keys["ingest"]).status_code == 202
    return events


def test_the_engine_trains_and_serves_from_a_postgresql_catalog(
    engine: Engine, client: TestClient, keys: H, tmp_path: Path, env: dict[str, str]
) -> None:
    assert engine.catalog.engine.dialect.name == "postgresql"
    ready = client.get("/readyz").json()
    assert ready["checks"]["catalog"] == "ok"

    events = load_blog(client, keys)
    assert engine.catalog.count_items() == 150
    users = {"users": [{"user_id": "u000001", "attributes": {"plan": "pro"}}]}
    assert client.put("/v1/users", json=users, headers=keys["ingest"]).status_code == 200
    profile = client.get("/v1/users/u000001", headers=keys["read"]).json()
    assert profile["attributes"] == {"plan": "pro"} and profile["history"]
    assert client.get("/v1/items/a%00b", headers=keys["read"]).status_code == 404

    run_id = client.post("/v1/training-runs", headers=keys["admin"]).json()["id"]
    engine.trainer.step()
    run = client.get(f"/v1/training-runs/{run_id}", headers=keys["admin"]).json()
    assert run["state"] == "succeeded" and run["published"], run
    models = client.get("/v1/models", headers=keys["admin"]).json()
    assert models["live_version"] == run["model_version"]
    assert engine.recommender is not None and engine.recommender.refresh_model()

    reader = {"user_id": "newcomer", "session_id": "fresh", "num_results": 10}
    before = client.get("/v1/recommendations", params=reader, headers=keys["read"]).json()
    assert before["model_version"] == run["model_version"]
    clicked = before["items"][0]["item_id"]
    at = max(e["timestamp"] for e in events) + 60
    click = {"user_id": "newcomer", "session_id": "fresh", "item_id": clicked, "timestamp": at}
    sent = client.post("/v1/events", json={"events": [click]}, headers=keys["ingest"])
    assert sent.status_code == 202
    after = client.get("/v1/recommendations", params=reader, headers=keys["read"]).json()
    assert clicked not in [i["item_id"] for i in after["items"]]

    section = engine.catalog.get_item(clicked)["categories"][0]  # type: ignore[index]
    expression = f'INCLUDE ItemID WHERE Items.CATEGORIES IN ("{section}")'
    put = client.put(
        "/v1/filters/one-section", json={"expression": expression}, headers=keys["admin"]
    )
    assert put.status_code == 200
    filtered = client.get(
        "/v1/recommendations",
        params={**reader, "filter": "one-section", "metadata_columns": "categories"},
        headers=keys["read"],
    ).json()["items"]
    assert filtered and all(section in i["metadata"]["categories"] for i in filtered)
    assert client.delete(f"/v1/items/{clicked}", headers=keys["ingest"]).status_code == 200
    trending = client.get("/v1/trending", params={"num_results": 50}, headers=keys["read"])
    assert clicked not in [i["item_id"] for i in trending.json()["items"]]

    audit = client.get("/v1/audit-log", headers=keys["admin"]).json()["entries"]
    assert [e["action"] for e in audit][:2] == [
        "PUT /v1/filters/{name}",
        "POST /v1/training-runs",
    ]

    # A second replica, its own home, the same catalog and data key: same keys, items and
    # live model.
    data_key = str(tmp_path / "home" / "data.key")
    other = start(tmp_path / "replica", {**env, "CLICKREC_ENCRYPTION__KEY_FILE": data_key})
    try:
        with TestClient(create_app(other)) as replica:
            answer = replica.get("/v1/items/" + before["items"][1]["item_id"], headers=keys["read"])
            assert answer.status_code == 200
            models = replica.get("/v1/models", headers=keys["admin"]).json()
            assert models["live_version"] == run["model_version"]
            assert replica.get(f"/v1/items/{clicked}", headers=keys["read"]).status_code == 404
            assert other.recommender is not None
            other.recommender.refresh_model()
            served = replica.get("/v1/recommendations?user_id=u000001", headers=keys["read"])
            assert served.json()["model_version"] == run["model_version"]
    finally:
        other.close()
    assert not (tmp_path / "home" / "catalog.db").exists()


def test_init_and_keys_from_the_cli_use_the_postgresql_catalog(
    tmp_path: Path, env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    result = CliRunner().invoke(app, ["init", "--home", str(home)], env=env)
    assert result.exit_code == 0, result.output
    key_id = next(line for line in result.output.splitlines() if line.startswith("ck_")).split("_")[
        1
    ]
    listed = CliRunner().invoke(app, ["keys", "list", "--home", str(home)], env=env)
    assert listed.exit_code == 0 and key_id in listed.output
    assert not (home / "catalog.db").exists()
    catalog = open_catalog(load_settings(home, environ=env))
    try:
        assert [k["key_id"] for k in catalog.list_keys()] == [key_id]
    finally:
        catalog.close()


def test_without_the_driver_the_error_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now fails
    env = {"CLICKREC_STORES__CATALOG": "postgresql://clickrec@127.0.0.1:1/clickrec"}
    with pytest.raises(StoreUnavailable) as caught:
        open_catalog(load_settings(tmp_path, environ=env))
    assert str(caught.value) == (
        "the PostgreSQL catalog needs the psycopg driver: pip install 'clickrec[postgres]'"
    )


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    word = "s3cret"
    url = f"postgresql://clickrec:{word}@127.0.0.1:1/clickrec"
    with pytest.raises(StoreUnavailable) as caught:
        open_catalog(load_settings(tmp_path, environ={"CLICKREC_STORES__CATALOG": url}))
    message = str(caught.value)
    assert message.startswith("cannot open the catalog at postgresql://clickrec:***@127.0.0.1:1/")
    assert "s3cret" not in message and "\n" not in message
