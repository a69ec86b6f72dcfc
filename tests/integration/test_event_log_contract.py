"""The contract every event log backend keeps; parametrized over the backends that exist."""

from __future__ import annotations

import asyncio
import itertools
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clickrec.backends.base import TRACEPARENT, AppendResult, EventLog
from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.core.errors import StoreUnavailable
from clickrec.core.schema import EVENT_SCHEMA
from tests import redisserver
from tests._scan import where

pytestmark = pytest.mark.integration


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], EventLog]:
    return lambda: SQLiteEventLog(tmp_path / "events.db")


def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], EventLog]:
    url = request.getfixturevalue("redis_url")  # skipped where there is no redis-server
    from clickrec.backends.redis_log import RedisEventLog

    return lambda: RedisEventLog(url)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Callable[[], EventLog]]] = {
    "sqlite": _sqlite,
    "redis": _redis,
}


@pytest.fixture(params=sorted(BACKENDS))
def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], EventLog]]:
    """Opens the backend's log (again on the same store at each call); closes them all."""
    opened: list[EventLog] = []
    open_log = BACKENDS[request.param](request, tmp_path)

    def make() -> EventLog:
        log = open_log()
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


def record(
    event_id: str,
    item: str = "i",
    user: str | None = "u",
    t: float = 1.0,
    session: str = "s",
) -> dict:
    return {
        "event_id": event_id,
        "timestamp": t,
        "user_id": user,
        "session_id": session,
        "item_id": item,
        "event_type": "read",
        "event_value": None,
        "recommendation_id": None,
        "impression": None,
        "context": None,
        "properties": None,
        "received_at": 2.0,
    }


def test_append_assigns_increasing_seqs_and_reads_back(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    assert log.last_seq() == 0
    result = log.append([record("a"), record("b", item="j")])
    assert result.seqs == [1, 2] and result.duplicates == 0
    rows = log.read(0, 10).to_pylist()
    assert [(r["seq"], r["event_id"], r["item_id"]) for r in rows] == [(1, "a", "i"), (2, "b", "j")]
    assert log.read(1, 10).num_rows == 1
    assert log.read_tail(1).column("event_id").to_pylist() == ["b"]


def test_duplicates_are_stored_once(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record("a")])
    result = log.append([record("a"), record("b"), record("b")])
    assert result.inserted == [1] and result.duplicates == 2
    assert log.read(0, 10).column("event_id").to_pylist() == ["a", "b"]


def test_concurrent_appends_lose_nothing(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()

    def writer(w: int) -> None:
        for b in range(20):
            log.append([record(f"{w}-{b}-{i}") for i in range(25)])

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seqs = log.read(0, 10_000).column("seq").to_pylist()
    assert seqs == list(range(1, 8 * 20 * 25 + 1))


def test_offsets_survive_reopening(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record("a"), record("b")])
    log.commit_offset("archive", 1)
    log.close()
    again = make_log()
    assert again.get_offset("archive") == 1 and again.get_offset("other") == 0
    assert again.last_seq() == 2


def test_acknowledged_events_survive_a_killed_process(tmp_path: Path) -> None:
    """SIGKILL right after append returns: every acknowledged event is on disk."""
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from clickrec.backends.sqlite_log import SQLiteEventLog\n"
        f"log = SQLiteEventLog(Path({str(tmp_path / 'events.db')!r}))\n"
        "for b in range(50):\n"
        "    log.append([dict(event_id=f'{b}-{i}', timestamp=1.0, user_id='u', session_id='s',"
        " item_id='i', event_type='read', received_at=1.0) for i in range(20)])\n"
        "    print(b, flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -9
    acknowledged = len(done.stdout.split()) * 20
    log = SQLiteEventLog(tmp_path / "events.db")
    try:
        assert acknowledged == 1000
        assert log.last_seq() == acknowledged
    finally:
        log.close()


def test_async_appends_from_one_loop_are_committed_together_and_in_order(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    seen: list[list[int]] = []
    log.before_commit = seen.append

    async def main() -> list[AppendResult]:
        batches = [[record(f"{b}-{i}", t=float(b)) for i in range(30)] for b in range(12)]
        batches[5].append(record("0-0"))  # a duplicate of an event earlier in the same group
        return await asyncio.gather(*(log.append_async(batch) for batch in batches))

    results = asyncio.run(main())

    assert [r.duplicates for r in results] == [0] * 5 + [1] + [0] * 6
    assert [s for r in results for s in r.seqs] == list(range(1, 12 * 30 + 1))
    assert len(seen) < 12  # fewer transactions than requests: batches waiting shared one
    rows = log.read(0, 1000).to_pylist()
    assert [r["event_id"] for r in rows[:31]] == [f"0-{i}" for i in range(30)] + ["1-0"]


def test_an_event_with_every_field_reads_back_as_sent(make_log) -> None:  # type: ignore[no-untyped-def]
    """Lean rows (ids only) and full rows (value, maps…) mixed in one append keep order."""
    log = make_log()
    full = record("full") | {
        "event_value": 2.5,
        "recommendation_id": "r1",
        "impression": '["a","b"]',
        "context": '{"device":"tv"}',
        "properties": '{"x":1}',
        "received_at": 9.0,
    }
    later = record("later") | {"received_at": 3.0}
    log.append([record("a"), full, record("b"), later])
    rows = log.read(0, 10).to_pylist()
    assert [r["event_id"] for r in rows] == ["a", "full", "b", "later"]
    assert {k: rows[1][k] for k in full} == full
    assert rows[0]["event_value"] is None and rows[0]["received_at"] == 2.0
    assert rows[3]["received_at"] == 3.0


@pytest.mark.parametrize("make_log", ["sqlite"], indirect=True)  # SQLite's own write lock
def test_async_append_waits_for_another_writer_instead_of_failing(make_log, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """While another process holds the write lock (an import), the loop's group is written
    once the lock is free; the loop itself is never blocked meanwhile."""
    log = make_log()
    other = sqlite3.connect(tmp_path / "events.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def main() -> AppendResult:
        nonlocal ticks
        task = asyncio.ensure_future(log.append_async([record("a"), record("b")]))
        for _ in range(20):  # the loop keeps running while the append waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not task.done()
        other.execute("COMMIT")
        return await task

    result = asyncio.run(main())
    other.close()
    assert ticks == 20
    assert result.seqs == [1, 2]
    assert log.read(0, 10).column("event_id").to_pylist() == ["a", "b"]


def test_appends_after_close_are_refused(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record("a")])
    log.close()
    with pytest.raises(StoreUnavailable):
        log.append([record("b")])
    with pytest.raises(StoreUnavailable):
        asyncio.run(log.append_async([record("c")]))


def test_duplicates_of_earlier_calls_are_found_after_reopening(make_log) -> None:  # type: ignore[no-untyped-def]
    """The dedup index is durable, and a server-made id (not looked up) still enters it."""
    log = make_log()
    log.append([record("a"), record("b")])
    log.close()
    again = make_log()
    result = again.append([record("b"), record("c"), record("d") | {"_fresh_id": True}])
    assert result.inserted == [1, 2] and result.seqs == [3, 4] and result.duplicates == 1
    assert again.append([record("d"), record("a")]).duplicates == 2
    assert again.read(0, 10).column("event_id").to_pylist() == ["a", "b", "c", "d"]


def test_reads_by_range_tail_seqs_and_columns(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record(e, item=f"item-{e}") for e in "abcde"])
    assert log.read(2, 2).column("seq").to_pylist() == [3, 4]
    assert log.read(5, 10).num_rows == 0
    narrow = log.read(0, 2, ["seq", "item_id"])
    assert narrow.to_pylist() == [{"seq": 1, "item_id": "item-a"}, {"seq": 2, "item_id": "item-b"}]
    assert log.read_tail(3).column("event_id").to_pylist() == ["c", "d", "e"]
    assert log.read_tail(10).num_rows == 5
    assert log.read_tail(2, ["event_id"]).to_pylist() == [{"event_id": "d"}, {"event_id": "e"}]
    found = log.read_seqs([4, 2, 9, 2])
    assert found.schema == EVENT_SCHEMA
    assert [(r["seq"], r["event_id"]) for r in found.to_pylist()] == [(2, "b"), (4, "d")]
    assert log.read_seqs([]).num_rows == 0
    with pytest.raises(ValueError, match="nope"):
        log.read(0, 10, ["seq", "nope"])


def test_dead_letters_are_parked_updated_moved_and_listed_in_seq_order(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record(str(i)) for i in range(1, 6)])
    log.park("archive", [(4, "4", "bad 4", 1), (2, "2", "bad 2", 1)], now=10.0)
    log.park("other", [(5, "5", "bad 5", 2)], now=11.0)
    log.park("archive", [(2, "2", "bad 2 again", 2)], now=12.0)  # updates, keeps parked_at

    letters = log.dead_letters()
    assert [d["seq"] for d in letters] == [2, 4, 5]
    assert letters[0] == {
        "seq": 2,
        "consumer": "archive",
        "event_id": "2",
        "error": "bad 2 again",
        "attempts": 2,
        "state": "parked",
        "parked_at": 10.0,
        "replayed_at": None,
    }
    assert [d["seq"] for d in log.dead_letters("archive")] == [2, 4]
    assert [d["seq"] for d in log.dead_letters(limit=2)] == [2, 4]
    assert [d["error"] for d in log.dead_letters(seqs=[5, 3])] == ["bad 5"]
    assert (log.count_dead_letters(), log.count_dead_letters("archive")) == (3, 2)

    assert log.set_dead_state([2], "replay") == 1
    assert log.count_dead_letters(states=("parked",)) == 2
    assert log.dead_letters(states=("replay",))[0]["seq"] == 2
    assert log.set_dead_state([2], "done", now=20.0) == 1
    assert [d["seq"] for d in log.dead_letters()] == [4, 5]  # done letters are not listed
    assert log.set_dead_state([2], "purged") == 0  # only parked or replaying ones move
    assert log.set_dead_state(None, "purged", now=30.0) == 2
    assert log.dead_letters() == [] and log.count_dead_letters() == 0
    every = log.dead_letters(states=("parked", "replay", "done", "purged"))
    assert [(d["seq"], d["state"], d["replayed_at"]) for d in every] == [
        (2, "done", 20.0),
        (4, "purged", 30.0),
        (5, "purged", 30.0),
    ]

    log.park("archive", [(2, "2", "bad 2 a third time", 3)], now=40.0)  # parked once more
    (again,) = log.dead_letters(seqs=[2])
    assert (again["state"], again["attempts"], again["parked_at"]) == ("parked", 3, 10.0)


def test_trace_links_of_traced_appends_overlap_ranges_and_are_pruned(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append([record("a") | {TRACEPARENT: "00-a-01"}, record("b")])  # seqs 1-2
    log.append([record("c")])  # 3, untraced
    log.append([record("d") | {TRACEPARENT: "00-d-01"}, record("e"), record("f")])  # 4-6
    log.append([record("a") | {TRACEPARENT: "00-dup-01"}])  # nothing new: no link
    first, second = (1, 2, "00-a-01"), (4, 6, "00-d-01")

    assert log.trace_links(1, 6, 10) == [first, second]
    assert log.trace_links(2, 4, 10) == [first, second]
    assert log.trace_links(3, 3, 10) == []
    assert log.trace_links(5, 9, 10) == [second]
    assert log.trace_links(1, 6, 1) == [first]
    assert "_traceparent" not in log.read(0, 10).column_names
    assert log.prune_trace_links(5) == 1  # 4-6 is not wholly at or below 5
    assert log.trace_links(1, 6, 10) == [second]
    assert log.prune_trace_links(6) == 1
    assert log.trace_links(1, 6, 10) == []


def test_erasing_a_reader_deletes_their_events_and_their_anonymous_sessions(make_log) -> None:  # type: ignore[no-untyped-def]
    log = make_log()
    log.append(
        [
            record("anon-before-login", user=None, session="s1"),  # 1: alice's session
            record("alice-1", user="alice", session="s1"),  # 2
            record("bob-1", user="bob", session="s2"),  # 3
            record("anon-other", user=None, session="s3"),  # 4: nobody's
            record("alice-2", user="alice", session="s4"),  # 5
            record("bob-in-s1", user="bob", session="s1"),  # 6: another reader, kept
            record("anon-after", user=None, session="s4"),  # 7: alice's session
        ]
    )
    log.park("archive", [(2, "alice-1", "boom", 3), (3, "bob-1", "boom", 3)], now=1.0)

    erased, sessions = log.erase_reader("alice")

    assert erased == 4 and sorted(sessions) == ["s1", "s4"]
    assert log.read(0, 100).column("event_id").to_pylist() == ["bob-1", "anon-other", "bob-in-s1"]
    assert log.read_seqs([1, 2, 5, 7]).num_rows == 0
    assert [d["seq"] for d in log.dead_letters()] == [3]
    assert log.erase_reader("alice") == (0, [])
    assert log.erase_reader("nobody") == (0, [])
    again = log.append([record("alice-1", user="alice")])  # its id left the log with it
    assert again.inserted == [0] and again.seqs == [8]


# -- Redis only ---------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[redisserver.RedisServer]:
    """A redis-server of this test's own (it gets killed), fsyncing every write."""
    yield from redisserver.server()


@pytest.fixture
def lax_redis() -> Iterator[redisserver.RedisServer]:
    """A redis-server that keeps no append-only file."""
    yield from redisserver.server(appendonly="no", appendfsync="everysec")


def test_redis_that_may_lose_acknowledged_events_is_refused(lax_redis) -> None:  # type: ignore[no-untyped-def]
    from clickrec.backends.redis_log import RedisEventLog

    with pytest.raises(StoreUnavailable) as refused:
        RedisEventLog(lax_redis.url)
    message = str(refused.value)
    assert "appendonly yes" in message and "appendfsync always" in message
    assert f"127.0.0.1:{lax_redis.port}" in message and "\n" not in message

    log = RedisEventLog(lax_redis.url + "?durability=none")  # a throwaway log: accepted
    try:
        assert log.append([record("a")]).seqs == [1]
    finally:
        log.close()


def test_acknowledged_events_survive_a_killed_redis_server(own_redis) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL redis-server while a thread appends: once it restarts on its append-only
    file, every acknowledged event is there, and the same log object goes on appending."""
    from clickrec.backends.redis_log import RedisEventLog

    log = RedisEventLog(own_redis.url)
    acknowledged: dict[int, str] = {}
    failures: list[StoreUnavailable] = []
    running = threading.Event()

    def writer() -> None:
        for b in itertools.count():
            batch = [record(f"{b}-{i}") for i in range(20)]
            try:
                result = log.append(batch)
            except StoreUnavailable as exc:
                failures.append(exc)
                return
            acknowledged.update(zip(result.seqs, (r["event_id"] for r in batch), strict=True))
            if b == 25:
                running.set()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert running.wait(60)
        own_redis.kill()
        thread.join(60)
        own_redis.start()
        stored = {r["seq"]: r["event_id"] for r in log.read(0, 1_000_000).to_pylist()}
        assert failures and len(acknowledged) > 25 * 20
        assert {seq: stored.get(seq) for seq in acknowledged} == acknowledged
        assert log.append([record("after")]).seqs == [log.last_seq()]
        assert log.last_seq() == max(stored) + 1
    finally:
        thread.join(60)
        log.close()


def test_an_unreachable_redis_is_named_without_its_password() -> None:
    redisserver.require_redis()
    from clickrec.backends.redis_log import RedisEventLog

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnavailable) as failed:
        RedisEventLog(f"redis://:hunter2@127.0.0.1:{port}/0")
    assert f"127.0.0.1:{port}" in str(failed.value) and "hunter2" not in str(failed.value)


def test_appends_fail_when_fewer_replicas_than_asked_confirm(redis_url: str) -> None:
    from clickrec.backends.redis_log import RedisEventLog

    log = RedisEventLog(redis_url + "?replicas=1&timeout_ms=50")  # the test server has none
    try:
        with pytest.raises(StoreUnavailable, match="replicas"):
            log.append([record("a")])
    finally:
        log.close()


def test_scrub_leaves_no_copy_of_an_erased_reader_in_the_server_files(
    redis_server, redis_url
) -> None:  # type: ignore[no-untyped-def]
    """XDEL alone keeps the deleted bytes in the stream, and so in the rewritten
    append-only file; scrub rewrites both."""
    from clickrec.backends.redis_log import RedisEventLog

    log = RedisEventLog(redis_url)
    try:
        log.append(
            [
                record(f"kept-event-{i}", user="kept-reader")
                if i % 3
                else record(f"erased-event-{i}", user="erased-reader")
                for i in range(300)
            ]
        )
        assert log.scrub()  # nothing erased yet: the files hold both readers
        needles = ["erased-reader", "erased-event-3", "kept-reader", "kept-event-4"]
        assert all(where(redis_server.root, needles).values())

        erased, _ = log.erase_reader("erased-reader")
        log.append([record("after-erasure", user="kept-reader")])
        assert log.scrub()

        found = where(redis_server.root, needles)
        assert found["erased-reader"] == set() and found["erased-event-3"] == set()
        assert found["kept-reader"] and found["kept-event-4"]
        assert erased == 100
        assert log.read(0, 1000).num_rows == 201
        assert log.append([record("next")]).seqs == [302]
    finally:
        log.close()


def test_events_appended_while_a_scrub_rewrites_the_stream_are_kept(redis_url: str) -> None:
    from clickrec.backends.redis_log import RedisEventLog

    log = RedisEventLog(redis_url)
    appended: list[int] = []
    running, stop = threading.Event(), threading.Event()

    def writer() -> None:
        for b in itertools.count():
            if stop.is_set():
                return
            appended.extend(log.append([record(f"during-{b}-{i}") for i in range(10)]).seqs)
            running.set()

    thread = threading.Thread(target=writer)
    try:
        for b in range(5):
            batch = [
                record(f"{b}-{i}", user="erased" if i % 10 == 0 else "kept") for i in range(1000)
            ]
            log.append(batch)
        assert log.erase_reader("erased")[0] == 500
        thread.start()
        assert running.wait(60)
        assert log.scrub()
    finally:
        stop.set()
        if thread.ident is not None:
            thread.join(60)
        log.close()
    log = RedisEventLog(redis_url)
    try:
        stored = log.read(0, 1_000_000).column("seq").to_pylist()
    finally:
        log.close()
    assert set(appended) <= set(stored) and len(stored) == 4500 + len(appended)
