"""The contract every catalog backend keeps, run against SQLite and a real PostgreSQL.

One test per thing the engine relies on: items and their change feed, users, keys,
filters, model versions (exactly one live), training runs (claimed by one worker only),
the audit log and its paging, erasure jobs, and opening a catalog, old or new, from
several processes at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.core.errors import Conflict, InvalidInput

pytestmark = pytest.mark.integration

OpenCatalog = Callable[[], SQLCatalog]


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/catalog.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def open_catalog(catalog_url: str) -> Iterator[OpenCatalog]:
    """Opens the same catalog again, as another process (a worker, a replica) would."""
    opened: list[SQLCatalog] = []

    def make() -> SQLCatalog:
        opened.append(SQLCatalog(catalog_url))
        return opened[-1]

    yield make
    for cat in opened:
        cat.close()


@pytest.fixture
def catalog(open_catalog: OpenCatalog) -> SQLCatalog:
    return open_catalog()


def race(workers: list[Callable[[], Any]]) -> list[Any]:
    """Run the callables at the same moment in threads; their results in order."""
    start = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = workers[i]()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return results


def item(item_id: str, **fields: Any) -> dict[str, Any]:
    return {"item_id": item_id, **fields}


# -- opening -------------------------------------------------------------------------------


def test_ping_and_reopen_keep_what_was_written(open_catalog: OpenCatalog) -> None:
    first = open_catalog()
    first.ping()
    first.upsert_items([item("a")], now=1.0)
    first.close()
    again = open_catalog()
    again.ping()
    assert again.get_item("a") is not None
    again.upsert_items([item("b")], now=2.0)
    seqs = [r["change_seq"] for r in again.items_changed_since(0)]
    assert seqs == [1, 2]  # the change feed goes on where it stopped


def test_many_processes_may_open_a_new_catalog_at_once(open_catalog: OpenCatalog) -> None:
    catalogs = race([open_catalog] * 6)
    catalogs[0].upsert_items([item("a")], now=1.0)
    assert all(c.count_items() == 1 for c in catalogs)


def test_an_old_catalog_gains_the_columns_added_since(catalog_url: str) -> None:
    engine = sa.create_engine(catalog_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE api_keys (key_id VARCHAR(32) PRIMARY KEY, name VARCHAR(128) NOT "
                "NULL, scope VARCHAR(16) NOT NULL, salt VARCHAR(64) NOT NULL, secret_hash "
                "VARCHAR(128) NOT NULL, created_at FLOAT NOT NULL, revoked_at FLOAT)"
            )
        )
        conn.execute(sa.text("INSERT INTO api_keys VALUES ('k1', 'n', 'read', 's', 'h', 1, NULL)"))
    engine.dispose()
    for _ in range(2):  # idempotent
        catalog = SQLCatalog(catalog_url)
        record = catalog.get_key("k1")
        catalog.close()
        assert record is not None
        assert (record["name"], record["sigv4_secret"], record["origins"]) == ("n", None, None)
    catalog = SQLCatalog(catalog_url)
    catalog.set_sigv4_secret("k1", "plain:x")
    catalog.add_key(key("k2", 2.0, origins="https://a.example", expires_at=9.0))
    assert [(k["sigv4_secret"], k["expires_at"]) for k in catalog.list_keys()] == [
        ("plain:x", None),
        (None, 9.0),
    ]
    catalog.close()


# -- items ---------------------------------------------------------------------------------


def test_an_item_reads_back_as_written(catalog: SQLCatalog) -> None:
    full = item(
        "post-1",
        published_at=1714000000.123456,
        categories=["tech", "science"],
        tags=["ai", "é"],
        author="Ada",
        title="Ünïcode — “quoted” title",
        text="body " * 100,
        url="https://example.com/p/1",
        language="fr",
        expires_at=1900000000.5,
        attributes={"premium": True, "words": 812, "series": ["a", "b"], "x": None},
    )
    catalog.upsert_items([full, item("bare")], now=5.0)
    got = catalog.get_item("post-1")
    assert got is not None
    assert {k: got[k] for k in full} == full
    assert (got["deleted"], got["updated_at"]) == (False, 5.0)
    bare = catalog.get_item("bare")
    assert bare is not None
    assert (bare["categories"], bare["tags"], bare["attributes"]) == ([], [], {})
    assert bare["title"] is None and bare["published_at"] is None
    assert catalog.get_item("nothing") is None
    assert catalog.count_items() == 2


def test_an_upsert_replaces_the_whole_item_and_the_last_copy_wins(catalog: SQLCatalog) -> None:
    catalog.upsert_items([item("a", tags=["x"], title="one")], now=1.0)
    catalog.upsert_items([item("a", title="two"), item("a", title="three")], now=2.0)
    got = catalog.get_item("a")
    assert got is not None
    assert (got["title"], got["tags"], got["updated_at"]) == ("three", [], 2.0)
    assert catalog.count_items() == 1


def test_a_deleted_item_is_a_tombstone_until_put_again(catalog: SQLCatalog) -> None:
    catalog.upsert_items([item("a", title="t"), item("b")], now=1.0)
    assert catalog.delete_item("a", now=2.0) is True
    assert catalog.delete_item("a", now=3.0) is False
    assert catalog.delete_item("never", now=3.0) is False
    assert catalog.get_item("a") is None
    tombstone = catalog.get_item("a", include_deleted=True)
    assert tombstone is not None
    assert (tombstone["deleted"], tombstone["updated_at"], tombstone["title"]) == (True, 2.0, "t")
    assert catalog.count_items() == 1
    catalog.upsert_items([item("a")], now=4.0)
    assert catalog.get_item("a") is not None and catalog.count_items() == 2


def test_the_change_feed_lists_every_change_in_order(catalog: SQLCatalog) -> None:
    catalog.upsert_items([item("a"), item("b"), item("c")], now=1.0)
    catalog.upsert_items([item("a", title="again")], now=2.0)
    catalog.delete_item("b", now=3.0)
    changes = catalog.items_changed_since(0)
    assert [(r["item_id"], r["change_seq"], r["deleted"]) for r in changes] == [
        ("c", 3, False),
        ("a", 4, False),
        ("b", 5, True),
    ]
    assert [r["item_id"] for r in catalog.items_changed_since(3)] == ["a", "b"]
    assert [r["item_id"] for r in catalog.items_changed_since(0, limit=2)] == ["c", "a"]
    assert catalog.items_changed_since(5) == []
    assert catalog.delete_item("b", now=4.0) is False
    assert catalog.items_changed_since(5) == []  # a refused delete changes nothing


def test_concurrent_writers_never_hide_a_change_from_the_feed(open_catalog: OpenCatalog) -> None:
    """Servers follow the feed by the last change_seq they saw: a change committed with a
    lower seq after a higher one was read would be missed for ever."""
    writers = [open_catalog() for _ in range(3)]
    reader = open_catalog()
    seen: list[int] = []
    done = threading.Event()

    def follow() -> None:
        last = 0
        while not done.is_set() or reader.items_changed_since(last):
            for row in reader.items_changed_since(last):
                seen.append(row["change_seq"])
                last = row["change_seq"]

    def write(w: int) -> Callable[[], None]:
        def run() -> None:
            for n in range(15):
                writers[w].upsert_items([item(f"w{w}-{n}a"), item(f"w{w}-{n}b")], now=float(n))

        return run

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        race([write(w) for w in range(3)])
    finally:
        done.set()
        follower.join(60)
    assert seen == list(range(1, 91))
    assert reader.count_items() == 90


# -- users ---------------------------------------------------------------------------------


def test_users_read_back_replace_and_delete(catalog: SQLCatalog) -> None:
    catalog.upsert_users(
        [{"user_id": "u1", "attributes": {"plan": "pro", "sections": ["tech"], "age": 41}}],
        now=1.0,
    )
    got = catalog.get_user("u1")
    assert got == {
        "user_id": "u1",
        "attributes": {"plan": "pro", "sections": ["tech"], "age": 41},
        "updated_at": 1.0,
    }
    catalog.upsert_users(
        [{"user_id": "u1", "attributes": {"plan": "free"}}, {"user_id": "u1"}, {"user_id": "u2"}],
        now=2.0,
    )
    assert catalog.get_user("u1") == {"user_id": "u1", "attributes": {}, "updated_at": 2.0}
    assert catalog.get_user("nobody") is None
    assert catalog.delete_user("u1") is True
    assert catalog.delete_user("u1") is False
    assert catalog.get_user("u1") is None and catalog.get_user("u2") is not None


def test_two_processes_may_put_the_same_new_reader_at_once(open_catalog: OpenCatalog) -> None:
    processes = [open_catalog(), open_catalog()]
    for n in range(10):
        batch = [{"user_id": f"u{n}-{k}", "attributes": {"n": k}} for k in range(5)]
        race([lambda c=c, b=batch: c.upsert_users(b, now=1.0) for c in processes])
    assert processes[0].get_user("u9-4") == {
        "user_id": "u9-4",
        "attributes": {"n": 4},
        "updated_at": 1.0,
    }


def test_ids_that_cannot_be_stored_are_not_found(catalog: SQLCatalog) -> None:
    """A path may carry any character, NUL included (which PostgreSQL refuses in text):
    looking it up finds nothing instead of failing."""
    bad = "a\x00b"
    assert catalog.get_item(bad) is None
    assert catalog.delete_item(bad, now=1.0) is False
    assert catalog.get_user(bad) is None
    assert catalog.delete_user(bad) is False
    assert catalog.get_key(bad) is None
    assert catalog.revoke_key(bad, now=1.0) is False
    assert catalog.get_filter(bad) is None
    assert catalog.delete_filter(bad) is False
    assert catalog.get_run(bad) is None
    assert catalog.claim_run(bad, now=1.0) is False
    assert catalog.get_erasure(bad) is None


# -- keys ----------------------------------------------------------------------------------


def key(key_id: str, created_at: float, **fields: Any) -> dict[str, Any]:
    return {
        "key_id": key_id,
        "name": f"name-{key_id}",
        "scope": "read",
        "salt": "s" * 32,
        "secret_hash": "h" * 64,
        "created_at": created_at,
        "sigv4_secret": None,
        "origins": None,
        "expires_at": None,
        **fields,
    }


def test_keys_are_added_listed_and_revoked_once(catalog: SQLCatalog) -> None:
    tracker = key(
        "k2", 2.0, scope="tracker", origins="https://a.example https://b.example", expires_at=9.5
    )
    catalog.add_key(tracker)
    sealed = "plain:" + "abc"  # a SigV4 secret as the key ring stores it unencrypted
    catalog.add_key(key("k1", 1.0, name="n" * 128, sigv4_secret=sealed))
    got = catalog.get_key("k2")
    assert got == {**tracker, "revoked_at": None}
    assert [k["key_id"] for k in catalog.list_keys()] == ["k1", "k2"]
    catalog.set_sigv4_secret("k2", "sealed:xyz")
    assert catalog.get_key("k2")["sigv4_secret"] == "sealed:xyz"  # type: ignore[index]
    assert catalog.revoke_key("k1", now=3.0) is True
    assert catalog.revoke_key("k1", now=4.0) is False
    assert catalog.revoke_key("nope", now=4.0) is False
    assert catalog.get_key("k1")["revoked_at"] == 3.0  # type: ignore[index]
    assert catalog.get_key("nope") is None


def test_a_key_id_is_unique_and_a_name_too_long_is_refused_alike(catalog: SQLCatalog) -> None:
    catalog.add_key(key("k1", 1.0))
    with pytest.raises(sa.exc.IntegrityError):
        catalog.add_key(key("k1", 2.0))
    with pytest.raises(InvalidInput, match="name"):
        catalog.add_key(key("k2", 2.0, name="n" * 129))
    assert [k["key_id"] for k in catalog.list_keys()] == ["k1"]


# -- filters -------------------------------------------------------------------------------


def test_filters_are_put_replaced_listed_and_deleted(catalog: SQLCatalog) -> None:
    first = catalog.put_filter("sections", 'EXCLUDE ItemID WHERE Items.CATEGORIES IN ("x")', 1.0)
    assert first == {
        "name": "sections",
        "expression": 'EXCLUDE ItemID WHERE Items.CATEGORIES IN ("x")',
        "created_at": 1.0,
        "updated_at": 1.0,
    }
    replaced = catalog.put_filter("sections", "INCLUDE ItemID WHERE Items.TAGS IN ($T)", 5.0)
    assert (replaced["created_at"], replaced["updated_at"]) == (1.0, 5.0)
    assert catalog.get_filter("sections") == replaced
    catalog.put_filter("another", 'EXCLUDE ItemID WHERE Items.AUTHOR = "a"', 6.0)
    assert [f["name"] for f in catalog.list_filters()] == ["another", "sections"]
    assert catalog.delete_filter("sections") is True
    assert catalog.delete_filter("sections") is False
    assert catalog.get_filter("sections") is None
    assert [f["name"] for f in catalog.list_filters()] == ["another"]


# -- model versions ------------------------------------------------------------------------


def version(name: str, created_at: float) -> dict[str, Any]:
    return {
        "version": name,
        "created_at": created_at,
        "recipe": "user-personalization",
        "run_id": "r1",
        "path": f"/models/{name}",
        "metrics": {"ndcg@10": 0.25, "per_recipe": {"trending-now": 0.1}},
        "info": {"items": 10},
    }


def test_exactly_one_model_version_is_live(catalog: SQLCatalog) -> None:
    assert catalog.live_model() is None
    catalog.add_model_version(version("v1", 1.0), make_live=True)
    catalog.add_model_version(version("v2", 2.0), make_live=False)
    live = catalog.live_model()
    assert live is not None
    assert (live["version"], live["live"], live["metrics"]) == (
        "v1",
        True,
        {"ndcg@10": 0.25, "per_recipe": {"trending-now": 0.1}},
    )
    catalog.add_model_version(version("v3", 3.0), make_live=True)
    listed = catalog.list_models()
    assert [(m["version"], m["live"]) for m in listed] == [
        ("v3", True),
        ("v2", False),
        ("v1", False),
    ]
    assert listed[0]["info"] == {"items": 10} and listed[0]["path"] == "/models/v3"
    assert [m["version"] for m in catalog.list_models(limit=1)] == ["v3"]


def test_concurrent_publishes_leave_one_live_version(open_catalog: OpenCatalog) -> None:
    workers = [open_catalog() for _ in range(4)]
    for rnd in range(5):
        race(
            [
                lambda w=w, r=rnd: workers[w].add_model_version(
                    version(f"v{r}-{w}", r * 10.0 + w), make_live=True
                )
                for w in range(4)
            ]
        )
        lives = [m["version"] for m in workers[0].list_models(limit=100) if m["live"]]
        assert len(lives) == 1, lives


# -- training runs -------------------------------------------------------------------------


def test_runs_are_created_updated_and_listed(catalog: SQLCatalog) -> None:
    first = catalog.create_run("schedule", now=1.0)
    assert {k: first[k] for k in ("state", "trigger", "created_at", "metrics", "published")} == {
        "state": "pending",
        "trigger": "schedule",
        "created_at": 1.0,
        "metrics": {},
        "published": None,
    }
    second = catalog.create_run("api", now=2.0)
    assert first["id"] != second["id"]
    catalog.update_run(
        first["id"],
        state="succeeded",
        step="publish",
        finished_at=3.5,
        metrics={"ndcg@10": 0.3, "candidates": ["a", "b"]},
        model_version="v1",
        published=False,
        last_seq=2**40,
    )
    done = catalog.get_run(first["id"])
    assert done is not None
    assert {
        k: done[k]
        for k in ("state", "step", "finished_at", "metrics", "model_version", "published")
    } == {
        "state": "succeeded",
        "step": "publish",
        "finished_at": 3.5,
        "metrics": {"ndcg@10": 0.3, "candidates": ["a", "b"]},
        "model_version": "v1",
        "published": False,
    }
    assert done["last_seq"] == 2**40
    assert [r["id"] for r in catalog.list_runs()] == [second["id"], first["id"]]
    assert [r["id"] for r in catalog.list_runs(states=("pending", "running"))] == [second["id"]]
    assert [r["id"] for r in catalog.list_runs(limit=1)] == [second["id"]]
    assert catalog.list_runs(states=()) == []
    assert catalog.get_run("nope") is None


def test_a_run_is_claimed_by_one_worker_only(open_catalog: OpenCatalog) -> None:
    workers = [open_catalog() for _ in range(3)]
    runs = [workers[0].create_run("api", now=float(n)) for n in range(10)]
    for run in runs:
        won = race([lambda w=w, r=run: w.claim_run(r["id"], now=7.0) for w in workers])
        assert sorted(won) == [False, False, True]
        claimed = workers[1].get_run(run["id"])
        assert claimed is not None
        assert (claimed["state"], claimed["started_at"]) == ("running", 7.0)
    assert workers[0].claim_run(runs[0]["id"], now=8.0) is False
    assert workers[0].claim_run("nope", now=8.0) is False


# -- audit log -----------------------------------------------------------------------------


def entry(n: int, target: str | None = None) -> dict[str, Any]:
    return {
        "at": 100.0 + n,
        "actor": f"admin ({n:012x})",
        "action": "PUT /v1/filters/{name}",
        "target": target or f"/v1/filters/f{n}",
        "source": "127.0.0.1",
        "status": 200,
        "request_id": f"req{n}",
    }


def test_audit_entries_come_newest_first_and_page_back(catalog: SQLCatalog) -> None:
    for n in range(25):
        catalog.audit(entry(n))
    newest = catalog.audit_entries(limit=10)
    assert [e["request_id"] for e in newest] == [f"req{n}" for n in range(24, 14, -1)]
    assert {k: newest[0][k] for k in entry(24)} == entry(24)
    assert isinstance(newest[0]["id"], int)
    pages, before = [], None
    while page := catalog.audit_entries(limit=10, before=before):
        pages.append([e["request_id"] for e in page])
        before = page[-1]["id"]
    assert [len(p) for p in pages] == [10, 10, 5]
    assert sum(pages, []) == [f"req{n}" for n in range(24, -1, -1)]


def test_an_audit_entry_is_kept_whatever_its_fields_hold(catalog: SQLCatalog) -> None:
    """An entry names a request's path and its key's name: over-long or NUL-bearing ones
    are cut and cleaned, never lost."""
    odd = dict(entry(1), actor="k" * 300 + " (id)", target="/v1/items/a\x00b" + "x" * 400)
    catalog.audit(odd)
    (got,) = catalog.audit_entries()
    assert got["actor"] == "k" * 160
    assert "\x00" not in got["target"] and got["target"].startswith("/v1/items/a")
    assert len(got["target"]) == 300


def test_scrubbing_the_audit_log_replaces_exact_targets(catalog: SQLCatalog) -> None:
    catalog.audit(entry(1, "/v1/users/u1"))
    catalog.audit(entry(2, "/v1/users/u1"))
    catalog.audit(entry(3, "/v1/users/u10"))
    assert catalog.scrub_audit(["/v1/users/u1", "/v1/users/zz"], "/v1/users/{user_id}") == 2
    targets = [e["target"] for e in catalog.audit_entries()]
    assert targets == ["/v1/users/u10", "/v1/users/{user_id}", "/v1/users/{user_id}"]


def vacuumed_tables(catalog: SQLCatalog) -> set[str]:
    """The PostgreSQL tables a VACUUM ran on (statistics arrive a moment later)."""
    query = sa.text("SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL")
    found: set[str] = set()
    for _ in range(50):
        with catalog.engine.connect() as conn:
            found = set(conn.execute(query).scalars())
        if found:
            return found
        time.sleep(0.1)
    return found


# -- erasures ------------------------------------------------------------------------------


def test_erasure_jobs_move_through_their_states(catalog: SQLCatalog) -> None:
    job = catalog.add_erasure({"user_id": "u1", "sessions": ["s1"]}, now=1.0)
    assert {k: job[k] for k in ("state", "created_at", "subject", "counts")} == {
        "state": "pending",
        "created_at": 1.0,
        "subject": {"user_id": "u1", "sessions": ["s1"]},
        "counts": {},
    }
    later = catalog.add_erasure({"user_id": "u2"}, now=2.0)
    assert catalog.get_erasure(job["id"]) == {**job, "finished_at": None, "error": None}
    assert [j["id"] for j in catalog.list_erasures()] == [job["id"], later["id"]]
    assert [j["id"] for j in catalog.list_erasures(["pending"], limit=1)] == [job["id"]]
    assert catalog.update_erasure(job["id"], expect="pending", state="lake", counts={"log": 3})
    assert not catalog.update_erasure(job["id"], expect="pending", state="failed")
    assert catalog.update_erasure(
        job["id"], expect="lake", state="done", subject=None, finished_at=3.0
    )
    done = catalog.get_erasure(job["id"])
    assert done is not None
    assert (done["state"], done["subject"], done["counts"], done["finished_at"]) == (
        "done",
        {},
        {"log": 3},
        3.0,
    )
    assert catalog.update_erasure(later["id"], error="online phase: OSError")
    assert catalog.get_erasure(later["id"])["error"] == "online phase: OSError"  # type: ignore[index]
    assert [j["id"] for j in catalog.list_erasures(["lake", "pending"])] == [later["id"]]
    assert not catalog.update_erasure("nope", state="done")


def test_compact_keeps_the_live_rows_and_drops_the_deleted(
    catalog: SQLCatalog, catalog_url: str
) -> None:
    needle = "reader-" + "gone-for-good"  # an id to look for in the database's bytes
    catalog.upsert_users([{"user_id": needle}, {"user_id": "kept"}], now=1.0)
    catalog.upsert_items([item("i1")], now=1.0)
    catalog.audit(entry(1, f"/v1/users/{needle}"))
    catalog.delete_user(needle)
    catalog.scrub_audit([f"/v1/users/{needle}"], "/v1/users/{user_id}")
    catalog.compact()
    assert catalog.get_user("kept") is not None and catalog.get_item("i1") is not None
    assert catalog.get_user(needle) is None
    if catalog_url.startswith("sqlite"):
        path = Path(catalog_url.removeprefix("sqlite:///"))
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert not [p for p in files if needle.encode() in p.read_bytes()]
    else:
        assert {"audit_log", "erasures", "users"} <= vacuumed_tables(catalog)
    catalog.upsert_users([{"user_id": "after"}], now=2.0)  # still writable
    assert catalog.get_user("after") is not None


def test_replicas_beat_and_acknowledge_erasures(catalog: SQLCatalog) -> None:
    catalog.beat("a", 100.0)
    catalog.beat("b", 100.0)
    catalog.beat("a", 150.0)  # a heartbeat again: still one row, seen later
    assert catalog.live_replicas(120.0) == {"a"}
    assert catalog.live_replicas(0.0) == {"a", "b"}
    job = catalog.add_erasure({"user_id": "u"}, 1.0)
    catalog.ack_erasure(job["id"], "a")
    catalog.ack_erasure(job["id"], "a")  # twice: one acknowledgement
    catalog.ack_erasure(job["id"], "b")
    assert catalog.erasure_acks(job["id"]) == {"a", "b"}
    catalog.drop_replica("x", older_than=120.0)  # b was not heard from since 100
    assert catalog.live_replicas(0.0) == {"a"} and catalog.erasure_acks(job["id"]) == {"a"}
    catalog.drop_replica("a")
    assert catalog.live_replicas(0.0) == set() and catalog.erasure_acks(job["id"]) == set()
    catalog.ack_erasure(job["id"], "c")
    catalog.drop_erasure_acks(job["id"])
    assert catalog.erasure_acks(job["id"]) == set()


def test_a_lease_has_one_holder_until_it_expires_or_is_given_up(catalog: SQLCatalog) -> None:
    first = catalog.take_lease("trainer", "a", now=100.0, seconds=60.0)
    assert first is not None
    assert catalog.take_lease("trainer", "b", now=130.0, seconds=60.0) is None  # a holds it
    assert catalog.take_lease("trainer", "a", now=150.0, seconds=60.0) == first  # renewed
    assert catalog.take_lease("trainer", "b", now=200.0, seconds=60.0) is None  # to 210 now
    taken = catalog.take_lease("trainer", "b", now=211.0, seconds=60.0)  # a went silent
    assert taken is not None and taken > first  # a new holder, a new fencing token
    assert catalog.take_lease("trainer", "a", now=212.0, seconds=60.0) is None
    catalog.drop_lease("trainer", "a")  # not a's to give up: nothing changes
    assert catalog.take_lease("trainer", "a", now=213.0, seconds=60.0) is None
    catalog.drop_lease("trainer", "b")
    assert catalog.take_lease("trainer", "a", now=214.0, seconds=60.0) == taken + 1
    assert catalog.take_lease("other", "b", now=214.0, seconds=60.0) is not None  # by name


def test_a_fenced_publication_needs_the_lease_still_held(catalog: SQLCatalog) -> None:
    token = catalog.take_lease("trainer", "a", now=100.0, seconds=60.0)
    assert token is not None
    catalog.add_model_version(version("v1", 1.0), make_live=True, fence=("trainer", token))
    assert catalog.live_model()["version"] == "v1"
    assert catalog.take_lease("trainer", "b", now=200.0, seconds=60.0) == token + 1
    with pytest.raises(Conflict, match="lease passed to another worker"):
        catalog.add_model_version(version("v2", 2.0), make_live=True, fence=("trainer", token))
    assert catalog.live_model()["version"] == "v1"  # a's late model: not recorded at all
    assert [m["version"] for m in catalog.list_models()] == ["v1"]
