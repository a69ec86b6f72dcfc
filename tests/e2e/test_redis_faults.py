"""Real `clickrec serve` processes on a Redis event log, under ingest, while redis-server or
a replica is SIGKILLed and started again: nothing acknowledged is lost or doubled, in the
log or in the lake, and no answer is a 5xx other than 503 while Redis is away."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from clickrec.backends.redis_log import RedisEventLog
from clickrec.backends.registry import open_data_keys, open_lake
from clickrec.config import load_settings
from tests.crash import free_port, init_home, serving, start_server, stop_server, wait_for
from tests.redisserver import server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_killing_redis_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    with contextlib.contextmanager(server)() as redis:
        env = {**os.environ, "CLICKREC_STORES__EVENT_LOG": redis.url}
        home = tmp_path / "home"
        admin = init_home(home, env)
        acknowledged: list[str] = []
        statuses: Counter[int] = Counter()
        answered: list[tuple[int, int]] = []
        stop = threading.Event()
        with serving(home, ["--train-interval", "3600"], env) as (url, _):

            def load() -> None:
                auth = {"Authorization": f"Bearer {admin}"}
                with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
                    n = 0
                    while not stop.is_set():
                        ids = [f"e{n + i}" for i in range(20)]
                        n += 20
                        events = [
                            {"event_id": e, "user_id": f"u{int(e[1:]) % 50}",
                             "session_id": "s", "item_id": f"p{int(e[1:]) % 97}"}
                            for e in ids
                        ]  # fmt: skip
                        try:
                            r = http.post("/v1/events", json={"events": events})
                        except httpx.TransportError:
                            statuses[0] += 1
                            continue
                        statuses[r.status_code] += 1
                        if r.status_code == 202:
                            acknowledged.extend(ids)

            loader = threading.Thread(target=load)
            loader.start()
            try:
                for _ in range(2):
                    wait_for(lambda: statuses[202] >= 20, 30)
                    before = statuses[202]
                    redis.kill()
                    time.sleep(0.5)
                    # Answers go on from the online state while the log is away.
                    recs = httpx.get(
                        f"{url}/v1/recommendations",
                        params={"user_id": "u1"},
                        headers={"Authorization": f"Bearer {admin}"},
                        timeout=30,
                    )
                    answered.append((recs.status_code, len(recs.json().get("items", []))))
                    redis.start()  # the same port, on its append-only file
                    wait_for(lambda b=before: statuses[202] > b + 20, 60)  # ingest resumed
            finally:
                stop.set()
                loader.join()
            # The worker archives everything to the lake once Redis is back.
            log = RedisEventLog(redis.url)
            try:
                wait_for(lambda: log.get_offset("archive") >= log.last_seq(), 60)
                stored = log.read(0, 10**7, ["event_id"]).column("event_id").to_pylist()
            finally:
                log.close()
        archived = _archived_ids(home, env)

    assert set(statuses) <= {202, 503}, statuses  # Redis away: 503, never a 500
    assert [status for status, _ in answered] == [200, 200]  # recommendations went on
    assert all(items > 0 for _, items in answered)
    assert statuses[503] > 0  # the kills did happen while events were being sent
    assert len(acknowledged) > 100
    assert set(acknowledged) <= set(stored) and len(stored) == len(set(stored))
    assert set(stored) == set(archived) and len(archived) == len(set(archived))


def test_killing_replicas_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Two replicas (each with its worker) on one Redis log; the load goes to both while
    each in turn is SIGKILLed (its worker stops with it) and started again. The survivor
    answers throughout; every acknowledged event is stored and archived exactly once."""
    with contextlib.contextmanager(server)() as redis:
        env = {**os.environ, "CLICKREC_STORES__EVENT_LOG": redis.url}
        home = tmp_path / "home"
        admin = init_home(home, env)
        ports = [free_port(), free_port()]
        procs = [start_server(home, port, ["--train-interval", "3600"], env) for port in ports]
        acknowledged: list[str] = []
        statuses: dict[int, Counter[int]] = {p: Counter() for p in ports}
        stop = threading.Event()

        def load(port: int, offset: int) -> None:
            auth = {"Authorization": f"Bearer {admin}"}
            with httpx.Client(headers=auth, timeout=30) as http:
                n = offset
                while not stop.is_set():
                    ids = [f"e{n + i}" for i in range(20)]
                    n += 20
                    events = [{"event_id": e, "user_id": f"u{n % 50}", "session_id": "s",
                               "item_id": f"p{n % 97}"} for e in ids]  # fmt: skip
                    try:
                        r = http.post(f"http://127.0.0.1:{port}/v1/events", json={"events": events})
                    except httpx.TransportError:
                        statuses[port][0] += 1  # the replica being killed
                        time.sleep(0.05)
                        continue
                    statuses[port][r.status_code] += 1
                    if r.status_code == 202:
                        acknowledged.extend(ids)

        loaders = [
            threading.Thread(target=load, args=(port, k * 10**8)) for k, port in enumerate(ports)
        ]
        for t in loaders:
            t.start()
        try:
            for round_ in range(2):
                victim = round_ % 2
                survivor = ports[1 - victim]
                before = statuses[survivor][202]
                wanted = 50 * (round_ + 1)
                wait_for(lambda w=wanted: sum(s[202] for s in statuses.values()) > w, 60)
                procs[victim].send_signal(signal.SIGKILL)
                procs[victim].wait(30)
                wait_for(lambda s=survivor, b=before: statuses[s][202] > b + 20, 60)
                procs[victim] = start_server(home, ports[victim], ["--train-interval", "3600"], env)
        finally:
            stop.set()
            for t in loaders:
                t.join()
        log = RedisEventLog(redis.url)
        try:
            wait_for(lambda: log.get_offset("archive") >= log.last_seq(), 60)
            stored = log.read(0, 10**7, ["event_id"]).column("event_id").to_pylist()
        finally:
            log.close()
            for proc in procs:
                stop_server(proc)
        archived = _archived_ids(home, env)

    answered = Counter[int]()
    for counts in statuses.values():
        answered.update(counts)
    assert set(answered) <= {0, 202}, answered  # refused connections only, never a 5xx
    assert len(acknowledged) > 200
    assert set(acknowledged) <= set(stored) and len(stored) == len(set(stored))
    assert set(stored) == set(archived) and len(archived) == len(set(archived))


def _archived_ids(home: Path, env: dict[str, str]) -> list[str]:
    """Every event id in the home's lake, once per row (duplicates kept)."""
    settings = load_settings(home, environ=env)
    lake = open_lake(settings, open_data_keys(settings))
    parts = [lake.read_part(path, ["event_id"]) for path in lake.parts()]
    return pa.concat_tables(parts).column("event_id").to_pylist() if parts else []
