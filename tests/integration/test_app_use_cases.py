"""The use cases of app/, called directly as the HTTP API, the AWS API and the command line
call them: what each answers, refuses and counts."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest

from clickrec.app import (
    batch,
    catalog,
    dead_letters,
    erasure,
    filters,
    keys,
    operate,
    recommend,
    training,
)
from clickrec.core.errors import Conflict, InvalidInput, NotFound
from clickrec.engine import ServingEngine
from clickrec.observability.metrics import Metrics, create_metrics

pytestmark = pytest.mark.integration


def _served(metrics: Metrics, endpoint: str) -> float:
    value = metrics.registry.get_sample_value(
        "clickrec_recommendations_served_total", {"endpoint": endpoint}
    )
    return value or 0.0


def test_each_answer_is_counted_as_served_under_its_endpoint(engine: ServingEngine) -> None:
    metrics = create_metrics()
    catalog.put_items(engine, [{"item_id": "p1", "title": "One"}, {"item_id": "p2"}])

    recommend.recommend(engine, metrics, "u1", None, 5)
    recommend.trending(engine, metrics, 5)
    recommend.similar(engine, metrics, "p1", 5)
    ranked = recommend.rank(engine, metrics, "u1", None, ["p2", "p1"])

    assert {i["item_id"] for i in ranked.items} == {"p1", "p2"}
    assert [
        _served(metrics, e) for e in ("recommendations", "trending", "similar", "rankings")
    ] == [
        1.0,
        1.0,
        1.0,
        1.0,
    ]
    with pytest.raises(InvalidInput, match="give user_id or session_id"):
        recommend.recommend(engine, metrics, None, None, 5)
    assert _served(metrics, "recommendations") == 1.0  # a refused request was not served


def test_catalog_reads_show_an_item_and_a_reader(engine: ServingEngine) -> None:
    catalog.put_items(engine, [{"item_id": "p1", "title": "One"}])
    catalog.put_users(engine, [{"user_id": "u1", "attributes": {"plan": "gold"}}])

    item = catalog.item(engine, "p1")
    assert item["title"] == "One"
    assert "deleted" not in item and "change_seq" not in item
    assert catalog.reader(engine, "u1", 10) == {
        "user_id": "u1",
        "attributes": {"plan": "gold"},
        "history": [],
    }
    with pytest.raises(NotFound, match="unknown user: nobody"):
        catalog.reader(engine, "nobody", 10)
    with pytest.raises(NotFound, match="unknown item: p9"):
        catalog.item(engine, "p9")


def test_a_started_run_is_listed_and_followed(engine: ServingEngine) -> None:
    run = training.start(engine, "api")

    assert run["state"] == "pending"
    listed = training.runs(engine)
    assert [(r["id"], r["trigger"]) for r in listed] == [(run["id"], "api")]
    followed = asyncio.run(training.follow(engine, run["id"]))
    assert (followed["id"], followed["state"]) == (run["id"], "pending")
    with pytest.raises(NotFound, match="unknown training run: nope"):
        asyncio.run(training.follow(engine, "nope"))
    with pytest.raises(NotFound, match="unknown training run: nope"):
        training.run_for(engine, "nope")
    assert training.models(engine) == {"live_version": None, "served_version": None, "models": []}


def test_keys_are_made_checked_listed_and_revoked(engine: ServingEngine) -> None:
    assert not keys.has_admin(engine)
    admin = keys.create(engine, "admin", "admin")
    assert keys.has_admin(engine)
    assert engine.keys.verify(admin.key).scope == "admin"

    lasting = keys.create(engine, "read", None, expires_days=2)
    listed = {k["key_id"]: k for k in keys.list_keys(engine)}
    assert listed[lasting.principal.key_id]["expires_at"] == pytest.approx(
        listed[lasting.principal.key_id]["created_at"] + 2 * 86400
    )
    with pytest.raises(InvalidInput, match="needs at least one origin"):
        keys.create(engine, "tracker")
    with pytest.raises(InvalidInput, match="scope must be one of"):
        keys.create(engine, "root")

    keys.revoke(engine, admin.principal.key_id)
    assert not keys.has_admin(engine)
    with pytest.raises(NotFound, match=f"no active key {admin.principal.key_id}"):
        keys.revoke(engine, admin.principal.key_id)


def test_an_erasure_is_followed_without_naming_the_reader(engine: ServingEngine) -> None:
    job = erasure.submit(engine, "reader-to-forget")

    shown = erasure.erasure(engine, job["id"])
    assert shown["id"] == job["id"]
    assert "reader-to-forget" not in orjson.dumps(shown).decode()
    assert [e["id"] for e in erasure.erasures(engine)] == [job["id"]]
    with pytest.raises(NotFound, match="unknown erasure: e0"):
        erasure.erasure(engine, "e0")


def test_a_batch_job_is_seen_by_its_key_and_an_admin_only(engine: ServingEngine) -> None:
    _, mine = engine.keys.create("read", None, engine.clock.now())
    _, other = engine.keys.create("read", None, engine.clock.now())
    _, admin = engine.keys.create("admin", None, engine.clock.now())

    made = batch.submit(engine, "recommendations", [{"user_id": "u1"}, {"user_id": "u2"}], mine)
    deadline = time.monotonic() + 60
    while batch.job(engine, made["id"], mine)["state"] in ("pending", "running"):
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.05)

    assert batch.job(engine, made["id"], admin)["state"] == "succeeded"
    with pytest.raises(NotFound, match=f"unknown batch job: {made['id']}"):
        batch.job(engine, made["id"], other)
    page, following = batch.page(engine, made["id"], mine, 0, 1)
    assert orjson.loads(page)["user_id"] == "u1"
    assert following == 1
    whole = b"".join(batch.output(engine, made["id"], mine))
    assert [orjson.loads(line)["user_id"] for line in whole.splitlines()] == ["u1", "u2"]

    batch.delete(engine, made["id"], mine)
    with pytest.raises(NotFound):
        batch.job(engine, made["id"], mine)
    with pytest.raises(InvalidInput, match="kind must be one of"):
        batch.submit(engine, "everything", [], mine)


def test_a_filter_is_kept_with_its_parameters(engine: ServingEngine) -> None:
    made = filters.put(engine, "by-cat", "INCLUDE ItemID WHERE Items.CATEGORIES IN ($CATS)")

    assert made["parameters"] == ["CATS"]
    assert filters.get(engine, "by-cat")["expression"] == made["expression"]
    assert [f["name"] for f in filters.filters(engine)] == ["by-cat"]
    filters.delete(engine, "by-cat")
    with pytest.raises(NotFound, match="unknown filter: by-cat"):
        filters.delete(engine, "by-cat")
    with pytest.raises(InvalidInput):
        filters.put(engine, "broken", "INCLUDE WHERE")


def test_dead_letters_are_shown_replayed_and_purged(engine: ServingEngine) -> None:
    catalog.put_items(engine, [{"item_id": "p1"}])
    asyncio.run(_send(engine, 3))
    engine.log.park("archive", [(2, "e2", "a broken field", 3), (3, "e3", "another", 3)], 1.0)

    assert [d["seq"] for d in dead_letters.letters(engine)] == [2, 3]
    shown = dead_letters.letter(engine, 2)
    assert (shown["error"], shown["event"]["item_id"]) == ("a broken field", "p1")
    with pytest.raises(NotFound, match="no dead letter with seq 1"):
        dead_letters.letter(engine, 1)
    assert dead_letters.replay(engine, [2]) == 1
    assert [d["state"] for d in dead_letters.letters(engine, "all")] == ["replay", "parked"]
    assert dead_letters.purge(engine, None) == 2  # every letter not given up on yet
    assert [d["state"] for d in dead_letters.letters(engine, "all")] == ["purged", "purged"]
    assert operate.gauges(engine).dead_letters == 0


async def _send(engine: ServingEngine, n: int) -> None:
    from clickrec.app import ingest
    from clickrec.core.types import Event

    events = [Event(user_id=f"u{i}", session_id="s", item_id="p1") for i in range(n)]
    await ingest.ingest(engine, create_metrics(), events)


def test_command_line_actions_are_audited_as_local(engine: ServingEngine) -> None:
    operate.audit_local(engine, "cli:someone", "keys revoke", "k1")

    entry = operate.audit_log(engine, 10)[0]
    assert (entry["actor"], entry["action"], entry["target"], entry["source"]) == (
        "cli:someone",
        "keys revoke",
        "k1",
        "local",
    )
    assert operate.audit_log(engine, 10, before=entry["id"]) == []


def test_output_is_refused_until_the_job_succeeded(engine: ServingEngine) -> None:
    """Refused when asked (not an empty stream): the HTTP answer can still be a 409."""
    _, mine = engine.keys.create("read", None, engine.clock.now())
    engine.jobs.spawn = lambda run: None  # the job never starts
    made = batch.submit(engine, "recommendations", [{"user_id": "u1"}], mine)
    with pytest.raises(Conflict):
        batch.page(engine, made["id"], mine)
    with pytest.raises(Conflict):
        batch.output(engine, made["id"], mine)
