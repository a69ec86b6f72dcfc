"""Crash safety: SIGKILL the server under load, restart it, and lose nothing acknowledged."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from clickrec.backends.registry import open_data_keys, open_lake
from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.config import load_settings
from tests.e2e.test_server import CLI, cli, free_port, key_from, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def processes_using(home: Path) -> list[int]:
    """Pids whose command line names this home folder."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(home).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def start(home: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 60)
    return proc


def test_sigkill_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = key_from(cli(home, "init"))
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    acknowledged: set[str] = set()
    counter = iter(range(10**9))
    rng = random.Random(7)

    def load(stop: threading.Event) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while not stop.is_set():
                ids = [f"e{next(counter)}" for _ in range(20)]
                events = [
                    {
                        "event_id": i,
                        "user_id": f"u{int(i[1:]) % 37}",
                        "session_id": "s",
                        "item_id": f"p{int(i[1:]) % 53}",
                        "event_type": "read",
                    }
                    for i in ids
                ]
                try:
                    r = http.post("/v1/events", json={"events": events}, headers=headers)
                except httpx.TransportError:
                    continue  # the server is down: these were never acknowledged
                if r.status_code == 202:
                    acknowledged.update(ids)

    for _ in range(4):
        proc = start(home, port)
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(stop,)) for _ in range(3)]
        for t in threads:
            t.start()
        # Kill at a random moment once this round has had some load (slow machines too).
        wanted = len(acknowledged) + 150
        wait_for(lambda wanted=wanted: len(acknowledged) >= wanted, timeout=60, every=0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()

    proc = start(home, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            user = http.get("/v1/users/u1", headers=headers)
            assert user.status_code == 200 and user.json()["history"]  # state rebuilt
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0

    # Workers of the killed servers noticed and stopped; none is left behind.
    wait_for(lambda: not processes_using(home), timeout=90, every=0.5)
    assert len(acknowledged) > 500
    log = SQLiteEventLog(home / "events.db")
    try:
        stored = log.read(0, 10**7).column("event_id").to_pylist()
    finally:
        log.close()
    print(
        f"acknowledged {len(acknowledged)}, stored {len(stored)}, "
        f"lost {len(acknowledged - set(stored))}, duplicated {len(stored) - len(set(stored))}"
    )
    assert acknowledged <= set(stored)
    assert len(stored) == len(set(stored))
    settings = load_settings(home, environ={})
    lake = open_lake(settings, open_data_keys(settings))  # parts are encrypted: not DuckDB
    archived = pa.concat_tables([lake.read_part(path, ["event_id"]) for path in lake.parts()])
    count, distinct = archived.num_rows, pc.count_distinct(archived["event_id"]).as_py()
    assert count == distinct == len(stored)  # archived exactly once across the crashes
