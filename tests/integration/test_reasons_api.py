"""What a list says about its items: reasons, chosen fields, promotions (Personalize's
promotions, metadata columns, and explanations it does not give)."""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient

from clickrec.engine import Engine
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


@pytest.fixture
def trained(client: TestClient, keys: H, engine: Engine) -> TestClient:
    """A synthetic blog with titles, loaded through the API, with a trained model live."""
    blog = generate_blog(BlogSpec(users=300, days=6, posts_per_day=25, seed=3))
    items = [
        {
            "item_id": r["item_id"],
            "title": f"Title of {r['item_id']}",
            "url": f"https://blog.example/{r['item_id']}",
            "published_at": r["published_at"],
            "categories": r["categories"].split("|"),
            "attributes": {"sponsored": i % 10 == 0},
        }
        for i, r in enumerate(blog.items.to_pylist())
    ]
    for start in range(0, len(items), 1000):
        r = client.put(
            "/v1/items", json={"items": items[start : start + 1000]}, headers=keys["ingest"]
        )
        assert r.status_code == 200
    events = blog_interactions_as_events(blog)
    for start in range(0, len(events), 1000):
        r = client.post(
            "/v1/events", json={"events": events[start : start + 1000]}, headers=keys["ingest"]
        )
        assert r.status_code == 202
    client.post("/v1/training-runs", headers=keys["admin"])
    engine.trainer.step()
    assert engine.recommender is not None and engine.recommender.refresh_model()
    return client


def test_every_item_says_why_it_is_there(trained: TestClient, keys: H, engine: Engine) -> None:
    read = keys["read"]
    assert engine.recommender is not None
    now = engine.recommender.state.newest_event_time + 60  # live traffic after the blog's end
    reader = {"user_id": "newcomer", "session_id": "fresh", "num_results": 10}
    cold = trained.get("/v1/recommendations", params=reader, headers=read).json()["items"]
    assert all(i["reason"].startswith(("trending", "exploration", "new")) for i in cold)
    clicked = cold[0]["item_id"]
    r = trained.post(
        "/v1/events",
        json={
            "events": [
                {"user_id": "newcomer", "session_id": "fresh", "item_id": clicked, "timestamp": now}
            ]
        },
        headers=keys["ingest"],
    )
    assert r.status_code == 202
    warm = trained.get("/v1/recommendations", params=reader, headers=read).json()["items"]
    because = [i for i in warm if i["reason"].startswith("because you read")]
    assert because, warm
    assert all(f'"Title of {clicked}"' in i["reason"] for i in because)

    similar = trained.get(f"/v1/items/{clicked}/similar", headers=read).json()["items"]
    assert similar and all(
        i["reason"] == f'read together with "Title of {clicked}"' or i["reason"].startswith("also")
        for i in similar
    )
    trending = trained.get("/v1/trending?num_results=5", headers=read).json()["items"]
    assert all(i["reason"].startswith("trending in ") for i in trending)
    ranked = trained.post(
        "/v1/rankings",
        json={"user_id": "newcomer", "item_ids": [clicked, similar[0]["item_id"]]},
        headers=read,
    ).json()["items"]
    assert [i["item_id"] for i in ranked][-1] == clicked and ranked[-1]["reason"] == "already read"


def test_metadata_columns_return_the_chosen_fields(trained: TestClient, keys: H) -> None:
    read = keys["read"]
    body = trained.get(
        "/v1/recommendations",
        params={"session_id": "x", "num_results": 3, "metadata_columns": "title, URL,sponsored"},
        headers=read,
    ).json()
    for item in body["items"]:
        assert item["metadata"] == {
            "title": f"Title of {item['item_id']}",
            "url": f"https://blog.example/{item['item_id']}",
            "sponsored": item["metadata"]["sponsored"],
        }
        assert isinstance(item["metadata"]["sponsored"], bool)
    bad = trained.get("/v1/trending?metadata_columns=title,a;b", headers=read)
    assert bad.status_code == 422 and "metadata_columns" in bad.text


def test_promotions_take_their_share_in_their_own_order(trained: TestClient, keys: H) -> None:
    r = trained.put(
        "/v1/filters/sponsored",
        json={"expression": 'INCLUDE ItemID WHERE Items.SPONSORED IN ("true")'},
        headers=keys["admin"],
    )
    assert r.status_code == 200, r.text
    read = keys["read"]
    promotion = [{"name": "partners", "percent_promoted_items": 30, "filter": "sponsored"}]
    params = {
        "user_id": "u000001",
        "num_results": 10,
        "promotions": orjson.dumps(promotion).decode(),
    }
    items = trained.get("/v1/recommendations", params=params, headers=read).json()["items"]
    plain = trained.get(
        "/v1/recommendations",
        params={"user_id": "u000001", "num_results": 10, "filter": "sponsored"},
        headers=read,
    ).json()["items"]

    promoted = [i for i in items if i.get("promotion_name") == "partners"]
    assert len(items) == 10 and len(promoted) == 3
    assert all(i["reason"] == "promoted: partners" for i in promoted)
    # The promoted items are the best sponsored ones, in the order the filter alone gives.
    assert [i["item_id"] for i in promoted] == [i["item_id"] for i in plain[:3]]
    assert len({i["item_id"] for i in items}) == 10
    others = [i for i in items if "promotion_name" not in i]
    assert [i["score"] for i in others] == sorted((i["score"] for i in others), reverse=True)

    too_much = [dict(promotion[0], percent_promoted_items=60)] * 2
    bad = trained.get(
        "/v1/recommendations",
        params={"user_id": "u1", "promotions": orjson.dumps(too_much).decode()},
        headers=read,
    )
    assert bad.status_code == 422 and "more than 100" in bad.text
    no_filter = trained.get(
        "/v1/recommendations",
        params={"user_id": "u1", "promotions": '[{"name": "p", "percent_promoted_items": 5}]'},
        headers=read,
    )
    assert no_filter.status_code == 422 and "promotions" in no_filter.text
