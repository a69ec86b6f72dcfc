"""Filters through HTTP: stored by name, used by every recommendation endpoint, live at once."""

from __future__ import annotations

import time

import orjson
import pytest
from fastapi.testclient import TestClient

from clickrec.engine import Engine

pytestmark = pytest.mark.integration

H = dict[str, dict[str, str]]
NOW = time.time()


def put_items(client: TestClient, keys: H, items: list[dict]) -> None:
    r = client.put("/v1/items", json={"items": items}, headers=keys["ingest"])
    assert r.status_code == 200, r.text


def post(client: TestClient, keys: H, events: list[dict]) -> None:
    r = client.post("/v1/events", json={"events": events}, headers=keys["ingest"])
    assert r.status_code == 202, r.text


def ids(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return [i["item_id"] for i in response.json()["items"]]


@pytest.fixture
def site(client: TestClient, keys: H) -> TestClient:
    """Six posts in two sections by two authors, all read by someone (so all trend)."""
    put_items(
        client,
        keys,
        [
            {
                "item_id": f"p{i}",
                "categories": ["sport" if i % 2 else "politics"],
                "author": "ana" if i < 3 else "bo",
                "published_at": NOW - 3600 * (6 - i),
                "attributes": {"premium": i == 5, "words": 100 * (i + 1)},
            }
            for i in range(6)
        ],
    )
    post(
        client,
        keys,
        [
            {"session_id": f"s{i}-{k}", "item_id": f"p{i}", "timestamp": NOW - 60}
            for i in range(6)
            for k in range(i + 1)  # p5 is the most read
        ],
    )
    return client


def put_filter(client: TestClient, keys: H, name: str, expression: str):  # type: ignore[no-untyped-def]
    return client.put(f"/v1/filters/{name}", json={"expression": expression}, headers=keys["admin"])


def test_a_filter_is_stored_listed_and_deleted(site: TestClient, keys: H) -> None:
    r = put_filter(site, keys, "by-section", "INCLUDE ItemID WHERE Items.CATEGORIES IN ($SECTION)")
    assert r.status_code == 200, r.text
    assert r.json()["parameters"] == ["SECTION"]
    assert (
        site.get("/v1/filters/by-section", headers=keys["read"])
        .json()["expression"]
        .startswith("INCLUDE")
    )
    listed = site.get("/v1/filters", headers=keys["read"]).json()["filters"]
    assert [f["name"] for f in listed] == ["by-section"]
    assert site.delete("/v1/filters/by-section", headers=keys["admin"]).status_code == 204
    assert site.get("/v1/filters/by-section", headers=keys["read"]).status_code == 404
    assert site.delete("/v1/filters/by-section", headers=keys["admin"]).status_code == 404


def test_only_an_admin_key_may_change_filters(site: TestClient, keys: H) -> None:
    body = {"expression": 'EXCLUDE ItemID WHERE Items.AUTHOR IN ("bo")'}
    assert site.put("/v1/filters/f", json=body, headers=keys["read"]).status_code == 403
    assert site.put("/v1/filters/f", json=body).status_code == 401


def test_a_bad_expression_is_a_422_that_says_where(site: TestClient, keys: H) -> None:
    r = put_filter(site, keys, "bad", 'INCLUDE ItemID WHERE Items.AUTHOR IN ("ana"')
    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error["field"] == "expression"
    assert "line 1, column 44" in error["message"]
    too_long = put_filter(
        site, keys, "long", "INCLUDE ItemID WHERE Items.A IN (" + "1," * 1500 + "1)"
    )
    assert too_long.status_code == 422
    assert site.get("/v1/filters/bad", headers=keys["read"]).status_code == 404  # not stored


def test_filters_apply_to_trending_recommendations_and_rankings(site: TestClient, keys: H) -> None:
    put_filter(site, keys, "sport", 'INCLUDE ItemID WHERE Items.CATEGORIES IN ("sport")')
    put_filter(site, keys, "no-bo", 'EXCLUDE ItemID WHERE Items.AUTHOR IN ("bo")')
    read = keys["read"]

    assert ids(site.get("/v1/trending?filter=sport", headers=read)) == ["p5", "p3", "p1"]
    assert ids(site.get("/v1/trending?filter=no-bo", headers=read)) == ["p2", "p1", "p0"]
    recs = ids(site.get("/v1/recommendations?session_id=new&filter=sport", headers=read))
    assert set(recs) == {"p1", "p3", "p5"}
    ranked = site.post(
        "/v1/rankings",
        json={"session_id": "new", "item_ids": ["p0", "p1", "p4", "p5"], "filter": "no-bo"},
        headers=read,
    )
    assert ids(ranked) == ["p1", "p0"]


def test_parameters_numbers_and_missing_values(site: TestClient, keys: H) -> None:
    put_filter(
        site,
        keys,
        "section",
        "INCLUDE ItemID WHERE Items.CATEGORIES IN ($S) AND Items.WORDS >= 300 "
        "| EXCLUDE ItemID WHERE Items.AUTHOR IN ($HIDE)",
    )
    read = keys["read"]
    values = orjson.dumps({"S": '"sport"'}).decode()
    assert ids(
        site.get(
            "/v1/trending", params={"filter": "section", "filter_values": values}, headers=read
        )
    ) == ["p5", "p3"]  # p1 has 200 words
    hide = orjson.dumps({"S": '"sport"', "HIDE": '"bo"'}).decode()
    assert (
        ids(
            site.get(
                "/v1/trending", params={"filter": "section", "filter_values": hide}, headers=read
            )
        )
        == []
    )
    # An INCLUDE whose parameter is missing cannot be applied: a 422 naming it.
    missing = site.get("/v1/trending?filter=section", headers=read)
    assert missing.status_code == 422 and "$S" in missing.text
    bad = site.get(
        "/v1/trending", params={"filter": "section", "filter_values": "[1]"}, headers=read
    )
    assert bad.status_code == 422 and "filter_values" in bad.text
    unknown = site.get("/v1/trending?filter=nope", headers=read)
    assert unknown.status_code == 404


def test_interactions_filter_sees_the_click_made_a_second_ago(site: TestClient, keys: H) -> None:
    put_filter(site, keys, "unshared", 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("share")')
    read = keys["read"]
    # The engine already hides what a reader read; this filter hides what they shared, and
    # it is the only exclusion for trending, which ignores the reader otherwise.
    before = ids(site.get("/v1/recommendations?user_id=eve&filter=unshared", headers=read))
    assert "p5" in before
    post(
        site,
        keys,
        [
            {
                "user_id": "eve",
                "session_id": "e1",
                "item_id": "p5",
                "event_type": "share",
                "timestamp": NOW,
            }
        ],
    )
    after = ids(site.get("/v1/recommendations?user_id=eve&filter=unshared", headers=read))
    assert "p5" not in after


def test_a_new_post_is_seen_by_filters_at_once(site: TestClient, keys: H) -> None:
    put_filter(site, keys, "fresh", f"INCLUDE ItemID WHERE Items.PUBLISHED_AT > {NOW - 600}")
    read = keys["read"]
    assert ids(site.get("/v1/recommendations?session_id=x&filter=fresh", headers=read)) == []
    put_items(
        site, keys, [{"item_id": "breaking", "categories": ["politics"], "published_at": NOW - 5}]
    )
    assert ids(site.get("/v1/recommendations?session_id=x&filter=fresh", headers=read)) == [
        "breaking"
    ]


def test_current_item_and_current_user(site: TestClient, keys: H, engine: Engine) -> None:
    put_filter(
        site, keys, "same-author", "INCLUDE ItemID WHERE Items.AUTHOR IN (CurrentItem.AUTHOR)"
    )
    put_filter(
        site,
        keys,
        "premium-for-members",
        'EXCLUDE ItemID WHERE Items.PREMIUM IN ("true") IF CurrentUser.PLAN IN ("free")',
    )
    read = keys["read"]
    post(
        site,
        keys,
        [
            {"session_id": f"t{k}", "item_id": p, "timestamp": NOW - 30}
            for k in range(3)
            for p in ("p0", "p1", "p4")
        ],
    )
    similar = ids(site.get("/v1/items/p0/similar?filter=same-author", headers=read))
    assert similar and set(similar) <= {"p1", "p2"}
    r = site.put(
        "/v1/users",
        json={
            "users": [
                {"user_id": "fay", "attributes": {"plan": "free"}},
                {"user_id": "gil", "attributes": {"plan": "pro"}},
            ]
        },
        headers=keys["ingest"],
    )
    assert r.status_code == 200, r.text
    fay = ids(site.get("/v1/recommendations?user_id=fay&filter=premium-for-members", headers=read))
    gil = ids(site.get("/v1/recommendations?user_id=gil&filter=premium-for-members", headers=read))
    assert "p5" not in fay and "p5" in gil
