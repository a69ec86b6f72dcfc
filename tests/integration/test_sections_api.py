"""The pipeline picks a recipe by itself, and on a news site with sections a post published a
minute ago reaches the readers of its section, through the API, without retraining."""

from __future__ import annotations

from collections import Counter

import pytest
from fastapi.testclient import TestClient

from clickrec.engine import Engine
from clickrec.models.base import RecipeParams
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog
from clickrec.training.pipeline import candidates

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


def _load(client: TestClient, keys: H) -> tuple[list[dict], dict[str, list[str]]]:
    blog = generate_blog(BlogSpec(users=300, days=6, posts_per_day=25, seed=3))
    sections = {r["item_id"]: r["categories"].split("|") for r in blog.items.to_pylist()}
    items = [
        {
            "item_id": r["item_id"],
            "published_at": r["published_at"],
            "categories": sections[r["item_id"]],
        }
        for r in blog.items.to_pylist()
    ]
    client.put("/v1/items", json={"items": items}, headers=keys["ingest"])
    events = blog_interactions_as_events(blog)
    for start in range(0, len(events), 1000):
        batch = {"events": events[start : start + 1000]}
        assert client.post("/v1/events", json=batch, headers=keys["ingest"]).status_code == 202
    return events, sections


def test_a_fresh_post_reaches_its_sections_readers(
    client: TestClient, keys: H, engine: Engine
) -> None:
    events, sections = _load(client, keys)
    client.post("/v1/training-runs", headers=keys["admin"])
    engine.trainer.step()
    assert engine.recommender is not None and engine.recommender.refresh_model()
    model = client.get("/v1/models", headers=keys["admin"]).json()["models"][0]
    scored = model["metrics"]["candidates"]
    assert set(scored) == {c.name for c in candidates(RecipeParams())}
    chosen = model["metrics"]["chosen"]
    assert scored[chosen]["mrr@20"] == max(s["mrr@20"] for s in scored.values())
    # On a blog whose readers keep to their sections, the sections help in the replay.
    assert "sections" in chosen
    best_plain = max(s["mrr@20"] for k, s in scored.items() if "sections" not in k)
    assert scored[chosen]["mrr@20"] > 1.1 * best_plain

    # Two readers, each with a clear favourite section, both with more than ten reads.
    favourite: dict[str, str] = {}
    reads = Counter(e["user_id"] for e in events)
    for user, n in reads.most_common():
        tally = Counter(s for e in events if e["user_id"] == user for s in sections[e["item_id"]])
        top, count = tally.most_common(1)[0]
        if n > 10 and count > 0.6 * sum(tally.values()) and top not in favourite.values():
            favourite[user] = top
        if len(favourite) == 2:
            break
    assert len(favourite) == 2
    (alice, hers), (bob, his) = favourite.items()

    # A post in her section and one in his, published now; each read by the same few others.
    now = max(e["timestamp"] for e in events)
    fresh = [
        {"item_id": "fresh-hers", "published_at": now, "categories": [hers]},
        {"item_id": "fresh-his", "published_at": now, "categories": [his]},
    ]
    assert client.put("/v1/items", json={"items": fresh}, headers=keys["ingest"]).status_code == 200
    crowd = [
        {
            "user_id": f"crowd{k}",
            "session_id": f"c{k}",
            "item_id": item,
            "event_type": "read",
            "timestamp": now + 60,  # live traffic right after the blog's last event
        }
        for k in range(5)
        for item in ("fresh-hers", "fresh-his")
    ]
    assert (
        client.post("/v1/events", json={"events": crowd}, headers=keys["ingest"]).status_code == 202
    )

    def rank(user: str, item: str) -> int:
        got = client.get(
            f"/v1/recommendations?user_id={user}&num_results=100", headers=keys["read"]
        )
        listed = [i["item_id"] for i in got.json()["items"]]
        return listed.index(item) if item in listed else 100

    assert rank(alice, "fresh-hers") < rank(alice, "fresh-his")
    assert rank(bob, "fresh-his") < rank(bob, "fresh-hers")
