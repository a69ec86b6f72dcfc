"""The HTTP API in-process: auth, validation, all-or-nothing batches, real-time serving."""

from __future__ import annotations

import threading
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from clickrec.engine import Engine
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


def event(item: str, user: str = "u1", session: str = "s1", **extra: object) -> dict:
    return {"user_id": user, "session_id": session, "item_id": item, "event_type": "read", **extra}


def post(client: TestClient, keys: H, events: list[dict], scope: str = "ingest"):
    return client.post("/v1/events", json={"events": events}, headers=keys[scope])


def test_health_needs_no_key(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["model"] == "fallback: trending"


def test_every_endpoint_needs_a_key_with_the_right_scope(client: TestClient, keys: H) -> None:
    assert client.get("/v1/trending").status_code == 401
    bad = {"Authorization": "Bearer ck_nothing_here"}
    assert client.get("/v1/trending", headers=bad).status_code == 401
    assert client.get("/v1/trending", headers=keys["ingest"]).status_code == 403
    assert client.get("/v1/trending", headers=keys["read"]).status_code == 200
    assert post(client, keys, [event("a")], scope="read").status_code == 403
    assert client.get("/v1/models", headers=keys["read"]).status_code == 403
    assert client.get("/v1/models", headers=keys["admin"]).status_code == 200
    assert post(client, keys, [event("a")], scope="admin").status_code == 202


def test_events_are_accepted_and_duplicates_counted(
    client: TestClient, keys: H, engine: Engine
) -> None:
    first = post(client, keys, [event("a", event_id="e1"), event("b", event_id="e2")])
    assert first.status_code == 202
    assert first.json() == {"accepted": 2, "duplicates": 0}
    again = post(
        client,
        keys,
        [event("a", event_id="e1"), event("c", event_id="e3"), event("c", event_id="e3")],
    )
    assert again.json() == {"accepted": 1, "duplicates": 2}
    assert engine.log.last_seq() == 3


def test_a_bad_event_fails_the_whole_batch_and_names_it(
    client: TestClient, keys: H, engine: Engine
) -> None:
    events = [event("a"), {"session_id": "s", "item_id": ""}, event("b", colour="red")]
    response = post(client, keys, events)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert {(e["index"], e["field"]) for e in errors} == {(1, "item_id"), (2, "colour")}
    assert engine.log.last_seq() == 0


def test_future_timestamps_are_refused(client: TestClient, keys: H, engine: Engine) -> None:
    response = post(client, keys, [event("a"), event("b", timestamp=time.time() + 3600)])
    assert response.status_code == 422
    assert response.json()["errors"][0]["index"] == 1
    assert response.json()["errors"][0]["field"] == "timestamp"
    assert engine.log.last_seq() == 0
    assert (
        post(client, keys, [event("b", timestamp=time.time() - 86400 * 365 * 3)]).status_code == 202
    )


def test_malformed_and_oversized_bodies(client: TestClient, keys: H, engine: Engine) -> None:
    headers = {**keys["ingest"], "content-type": "application/json"}
    assert client.post("/v1/events", content=b"{not json", headers=headers).status_code == 400
    assert client.post("/v1/events", json={"events": []}, headers=keys["ingest"]).status_code == 422
    assert (
        client.post("/v1/events", json={"events": "x"}, headers=keys["ingest"]).status_code == 422
    )
    assert post(client, keys, [event("a")] * 1001).status_code == 422
    huge = client.post("/v1/events", content=b"x" * 1_100_000, headers=headers)
    assert huge.status_code == 413
    assert "error" in huge.json()
    assert post(client, keys, [event("a" * 300)]).status_code == 422
    assert engine.log.last_seq() == 0


def test_catalog_items_and_users(client: TestClient, keys: H) -> None:
    items = [
        {
            "item_id": "p1",
            "published_at": "2026-01-01T10:00:00Z",
            "categories": ["tech"],
            "title": "Hello",
            "attributes": {"paywall": True},
        }
    ]
    assert client.put("/v1/items", json={"items": items}, headers=keys["ingest"]).status_code == 200
    got = client.get("/v1/items/p1", headers=keys["read"]).json()
    assert got["title"] == "Hello" and got["categories"] == ["tech"]
    assert got["attributes"] == {"paywall": True}
    assert client.get("/v1/items/nope", headers=keys["read"]).status_code == 404
    bad = client.put(
        "/v1/items", json={"items": [{"item_id": "p2", "size": 3}]}, headers=keys["ingest"]
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["index"] == 0
    assert (
        client.put(
            "/v1/users",
            json={"users": [{"user_id": "u1", "attributes": {"plan": "pro"}}]},
            headers=keys["ingest"],
        ).status_code
        == 200
    )
    post(client, keys, [event("p1", user="u1")])
    user = client.get("/v1/users/u1", headers=keys["read"]).json()
    assert user["attributes"] == {"plan": "pro"}
    assert [h["item_id"] for h in user["history"]] == ["p1"]
    assert client.get("/v1/users/ghost", headers=keys["read"]).status_code == 404


def test_deleted_items_are_never_recommended(client: TestClient, keys: H) -> None:
    post(
        client,
        keys,
        [event("hot", user=f"u{i}", session=f"s{i}") for i in range(5)]
        + [event("other", user="u9", session="s9")],
    )
    top = client.get("/v1/trending", headers=keys["read"]).json()["items"]
    assert top[0]["item_id"] == "hot"
    client.put("/v1/items", json={"items": [{"item_id": "hot"}]}, headers=keys["ingest"])
    assert client.delete("/v1/items/hot", headers=keys["ingest"]).status_code == 200
    assert client.delete("/v1/items/hot", headers=keys["ingest"]).status_code == 404
    for path in ("/v1/trending", "/v1/recommendations?user_id=new"):
        ids = [i["item_id"] for i in client.get(path, headers=keys["read"]).json()["items"]]
        assert "hot" not in ids and "other" in ids


def test_recommendation_parameters_are_checked(client: TestClient, keys: H) -> None:
    r = keys["read"]
    assert client.get("/v1/recommendations?user_id=u&num_results=0", headers=r).status_code == 422
    assert client.get("/v1/recommendations?user_id=u&num_results=501", headers=r).status_code == 422
    assert client.get("/v1/recommendations", headers=r).status_code == 422
    response = client.get("/v1/recommendations?session_id=anon", headers=r)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"recommendation_id", "model_version", "recipe", "items"}
    assert body["model_version"] is None and "trending" in body["recipe"]


def test_rankings_reorder_known_items_and_refuse_unknown(client: TestClient, keys: H) -> None:
    post(
        client,
        keys,
        [event("a", user=f"u{i}", session=f"s{i}") for i in range(3)]
        + [event("b", user="u9", session="s9")],
    )
    ranked = client.post(
        "/v1/rankings", json={"user_id": "x", "item_ids": ["b", "a"]}, headers=keys["read"]
    )
    assert ranked.status_code == 200
    assert [i["item_id"] for i in ranked.json()["items"]] == ["a", "b"]
    unknown = client.post(
        "/v1/rankings", json={"user_id": "x", "item_ids": ["a", "zzz"]}, headers=keys["read"]
    )
    assert unknown.status_code == 422 and "zzz" in unknown.text
    too_many = client.post(
        "/v1/rankings", json={"user_id": "x", "item_ids": ["a"] * 501}, headers=keys["read"]
    )
    assert too_many.status_code == 422


def _load_blog(client: TestClient, keys: H) -> list[dict]:
    blog = generate_blog(BlogSpec(users=300, days=6, posts_per_day=25, seed=3))
    items = [
        {
            "item_id": r["item_id"],
            "published_at": r["published_at"],
            "categories": r["categories"].split("|"),
        }
        for r in blog.items.to_pylist()
    ]
    for start in range(0, len(items), 1000):
        client.put("/v1/items", json={"items": items[start : start + 1000]}, headers=keys["ingest"])
    events = blog_interactions_as_events(blog)
    for start in range(0, len(events), 1000):
        assert post(client, keys, events[start : start + 1000]).status_code == 202
    return events


def test_train_publish_and_hot_swap(client: TestClient, keys: H, engine: Engine) -> None:
    _load_blog(client, keys)
    started = client.post("/v1/training-runs", headers=keys["admin"])
    assert started.status_code == 202
    run_id = started.json()["id"]
    assert started.json()["state"] == "pending"
    engine.trainer.step()
    run = client.get(f"/v1/training-runs/{run_id}", headers=keys["admin"]).json()
    assert run["state"] == "succeeded", run
    assert run["metrics"]["mrr@20"] > 0 and run["metrics"]["protocol"] == "replay"
    models = client.get("/v1/models", headers=keys["admin"]).json()
    assert models["live_version"] == run["model_version"]
    assert engine.recommender is not None
    assert engine.recommender.refresh_model()
    body = client.get("/v1/recommendations?user_id=u000001", headers=keys["read"]).json()
    assert body["model_version"] == run["model_version"]
    assert body["recipe"] == models["models"][0]["recipe"]
    assert client.get("/v1/training-runs/nope", headers=keys["admin"]).status_code == 404
    exposition = client.get("/metrics", headers=keys["admin"]).text
    mrr = f'clickrec_model_offline_metric{{metric="mrr@20"}} {run["metrics"]["mrr@20"]}'
    assert mrr in exposition
    assert 'clickrec_training_run_seconds{state="succeeded"}' in exposition


def test_waiting_on_a_run_answers_once_this_server_serves_its_model(
    client: TestClient, keys: H, engine: Engine
) -> None:
    _load_blog(client, keys)
    run_id = client.post("/v1/training-runs", headers=keys["admin"]).json()["id"]
    waited = client.get(f"/v1/training-runs/{run_id}?wait=0.3", headers=keys["admin"]).json()
    assert waited["state"] == "pending"  # the wait ran out: the answer says where it is
    engine.trainer.step()
    assert engine.recommender is not None and engine.recommender.model_version is None
    run = client.get(f"/v1/training-runs/{run_id}?wait=30", headers=keys["admin"]).json()
    assert run["state"] == "succeeded" and run["published"], run
    answer = client.get("/v1/recommendations?user_id=u000001", headers=keys["read"]).json()
    assert answer["model_version"] == run["model_version"]  # no poll interval to wait for
    too_long = client.get(f"/v1/training-runs/{run_id}?wait=301", headers=keys["admin"])
    assert too_long.status_code == 422 and "wait" in too_long.text


def test_not_enough_data_is_a_clear_failed_run(client: TestClient, keys: H, engine: Engine) -> None:
    post(client, keys, [event("a"), event("b")])
    run_id = client.post("/v1/training-runs", headers=keys["admin"]).json()["id"]
    engine.trainer.step()
    run = client.get(f"/v1/training-runs/{run_id}", headers=keys["admin"]).json()
    assert run["state"] == "failed"
    assert "not enough data: have 2 interactions, need 1000" in run["error"]


def test_a_click_changes_the_next_recommendation(
    client: TestClient, keys: H, engine: Engine
) -> None:
    events = _load_blog(client, keys)
    client.post("/v1/training-runs", headers=keys["admin"])
    engine.trainer.step()
    assert engine.recommender is not None and engine.recommender.refresh_model()
    reader = {"user_id": "newcomer", "session_id": "fresh"}
    before = client.get(
        "/v1/recommendations", params={**reader, "num_results": 10}, headers=keys["read"]
    ).json()["items"]
    clicked = before[3]["item_id"]
    # A click a minute after the blog's last event: live traffic continuing the same data.
    at = max(e["timestamp"] for e in events) + 60
    click = event(clicked, user="newcomer", session="fresh", timestamp=at)
    assert post(client, keys, [click]).status_code == 202
    after = client.get(
        "/v1/recommendations", params={**reader, "num_results": 10}, headers=keys["read"]
    ).json()["items"]
    assert clicked not in [i["item_id"] for i in after]
    similar = client.get(
        f"/v1/items/{clicked}/similar", params={"num_results": 5}, headers=keys["read"]
    ).json()["items"]
    neighbours = {i["item_id"] for i in similar}
    assert neighbours, "the clicked post has neighbours"
    assert len(neighbours & {i["item_id"] for i in after}) > len(
        neighbours & {i["item_id"] for i in before}
    )
    assert len(events) > 1000


def test_the_schema_is_public_and_its_routes_are_not(client: TestClient, keys: H) -> None:
    assert "swagger-ui" in client.get("/docs").text
    schema = client.get("/openapi.json").json()
    assert client.get("/v1/openapi.json").status_code == 401
    assert client.get("/v1/openapi.json", headers=keys["read"]).json() == schema
    assert client.get("/v1/recommendations").status_code == 401
    assert schema["paths"]["/v1/recommendations"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "/v1/recommendations" in schema["paths"]
    body = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/EventBatch"}
    assert "session_id" in schema["components"]["schemas"]["Event"]["properties"]


def test_category_filter(client: TestClient, keys: H) -> None:
    items = [
        {"item_id": "t1", "categories": ["tech"]},
        {"item_id": "s1", "categories": ["sport"]},
        {"item_id": "t2", "categories": ["tech", "ai"]},
    ]
    client.put("/v1/items", json={"items": items}, headers=keys["ingest"])
    post(
        client,
        keys,
        [event(i, user=f"u{n}", session=f"s{n}") for n, i in enumerate(["t1", "s1", "t2", "s1"])],
    )
    for path, params in (("/v1/trending", {}), ("/v1/recommendations", {"user_id": "x"})):
        got = client.get(path, params={**params, "category": "tech"}, headers=keys["read"]).json()
        assert {i["item_id"] for i in got["items"]} == {"t1", "t2"}
    none = client.get("/v1/trending", params={"category": "nope"}, headers=keys["read"]).json()
    assert none["items"] == []


def test_no_request_fails_while_models_swap(client: TestClient, keys: H, engine: Engine) -> None:
    _load_blog(client, keys)
    failures: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = client.get("/v1/recommendations?user_id=u000002", headers=keys["read"])
            if r.status_code != 200 or not r.json()["items"]:
                failures.append(r.status_code)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        versions = set()
        for _ in range(3):
            client.post("/v1/training-runs", headers=keys["admin"])
            engine.trainer.step()
            assert engine.recommender is not None and engine.recommender.refresh_model()
            versions.add(engine.recommender.model_version)
    finally:
        stop.set()
        thread.join()
    assert len(versions) == 3
    assert failures == []


def test_a_new_catalog_without_events_gets_newest_posts(client: TestClient, keys: H) -> None:
    items = [{"item_id": f"p{d}", "published_at": f"2026-01-{d:02d}T08:00:00Z"} for d in (3, 9, 5)]
    client.put("/v1/items", json={"items": items}, headers=keys["ingest"])
    for path in ("/v1/trending", "/v1/recommendations?session_id=first-visit"):
        got = client.get(path, headers=keys["read"]).json()["items"]
        assert [i["item_id"] for i in got] == ["p9", "p5", "p3"]
        assert {i["reason"] for i in got} == {"new"}  # nobody read them: not "trending"


def test_each_request_is_logged_once_without_secrets(
    client: TestClient, keys: H, caplog: pytest.LogCaptureFixture
) -> None:
    from clickrec.observability.logs import JsonFormatter

    with caplog.at_level("INFO", logger="clickrec.access"):
        response = client.get("/v1/trending?num_results=3", headers=keys["read"])
        client.get("/v1/trending", headers={"Authorization": "Bearer ck_bad_key"})
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "clickrec.access"]
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert first["request_id"] == response.headers["x-request-id"]
    assert first["route"] == "/v1/trending" and first["status"] == 200
    assert first["key"].startswith("read-") and first["ms"] >= 0
    assert second["status"] == 401 and second["key"] is None
    secret = keys["read"]["Authorization"].split()[1]
    assert all(secret not in line and "bad_key" not in line for line in lines)
