"""The crash harness: events under load to a real `clickrec serve`, SIGKILL at random
moments, restart, and count what survived. Used by the end-to-end test (a few kills) and by
`bench/crash.py` (twenty and more); its server helpers start the other e2e tests' servers.
It lives with the tests, not in the package, because it needs httpx (a dev dependency).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from clickrec.backends.registry import open_data_keys, open_lake
from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.config import load_settings

CLI = [sys.executable, "-m", "clickrec.cli"]


@dataclass(frozen=True)
class CrashReport:
    kills: int
    acknowledged: int
    found: int  # acknowledged events found in the log
    lost: int  # acknowledged, not in the log
    duplicated: int  # stored more than once in the log
    archived: int  # rows in the lake
    archived_duplicated: int  # events in the lake more than once
    archived_missing: int  # events of the log not in the lake
    state_rebuilt: bool  # a reader's history is served after the last restart
    leftover_processes: int  # processes of this home still running at the end

    @property
    def ok(self) -> bool:
        return (
            self.lost == self.duplicated == self.archived_duplicated == self.archived_missing == 0
            and self.state_rebuilt
            and self.leftover_processes == 0
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_home(home: Path, env: Mapping[str, str] | None = None) -> str:
    """``clickrec init`` of ``home`` (with ``env``, e.g. other stores); its admin key."""
    init = subprocess.run(
        [*CLI, "init", "--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
        env=None if env is None else dict(env),
    )
    return next(line for line in init.stdout.splitlines() if line.startswith("ck_"))


def wait_for(check: Callable[[], object], timeout: float = 60.0, every: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("timed out waiting")


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


def start_server(
    home: Path,
    port: int,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    stdout: Any = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """``clickrec serve`` on ``port`` (and ``args``), once its /healthz answers."""
    proc = subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--port", str(port), *args],
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not subprocess.DEVNULL else subprocess.DEVNULL,
        env=None if env is None else dict(env),
    )

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"clickrec serve exited with {proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 60)
    except BaseException:
        stop_server(proc)
        raise
    return proc


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM (the server drains and its worker flushes), SIGKILL if it does not end in
    ``timeout`` seconds; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@contextlib.contextmanager
def serving(
    home: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    stdout: Any = subprocess.DEVNULL,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A running ``clickrec serve`` on a free port: (its URL, the process); stopped after."""
    port = free_port()
    proc = start_server(home, port, args, env, stdout)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop_server(proc)


def run(
    home: Path,
    kills: int,
    seed: int = 7,
    clients: int = 3,
    progress: Callable[[int, int], None] = lambda k, acked: None,
) -> CrashReport:
    """Initialise ``home``, then ``kills`` times: start a server, load it from ``clients``
    threads, SIGKILL it at a random moment. Restart once more, stop it with SIGTERM, and
    compare what was acknowledged with the log and the lake."""
    init = subprocess.run(
        [*CLI, "init", "--home", str(home)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CLICKREC_HOME": str(home)},
    )
    key = next(line for line in init.stdout.splitlines() if line.startswith("ck_"))
    headers = {"Authorization": f"Bearer {key}"}
    port = free_port()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    counter = iter(range(10**9))
    rng = random.Random(seed)

    def load(stop: threading.Event) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            while not stop.is_set():
                with lock:
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
                    with lock:
                        acknowledged.update(ids)

    for k in range(kills):
        proc = start_server(home, port)
        stop = threading.Event()
        threads = [threading.Thread(target=load, args=(stop,)) for _ in range(clients)]
        for t in threads:
            t.start()
        # Kill at a random moment once this round has had some load (slow machines too).
        wanted = len(acknowledged) + 150

        def loaded(wanted: int = wanted) -> bool:
            return len(acknowledged) >= wanted

        wait_for(loaded, timeout=60, every=0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()
        progress(k + 1, len(acknowledged))

    proc = start_server(home, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            user = http.get("/v1/users/u1", headers=headers)
            rebuilt = user.status_code == 200 and bool(user.json()["history"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    with contextlib.suppress(TimeoutError):  # workers of the killed servers notice and stop
        wait_for(lambda: not processes_using(home), timeout=90, every=0.5)
    log = SQLiteEventLog(home / "events.db")
    try:
        stored = log.read(0, 10**8).column("event_id").to_pylist()
    finally:
        log.close()
    settings = load_settings(home, environ={})
    lake = open_lake(settings, open_data_keys(settings))  # parts are encrypted: not DuckDB
    parts = [lake.read_part(path, ["event_id"]) for path in lake.parts()]
    archived = (
        pa.concat_tables(parts) if parts else pa.table({"event_id": pa.array([], pa.string())})
    )
    distinct = pc.count_distinct(archived["event_id"]).as_py() if archived.num_rows else 0
    in_lake = set(archived["event_id"].to_pylist())
    unique = set(stored)
    return CrashReport(
        kills=kills,
        acknowledged=len(acknowledged),
        found=len(acknowledged & unique),
        lost=len(acknowledged - unique),
        duplicated=len(stored) - len(unique),
        archived=archived.num_rows,
        archived_duplicated=archived.num_rows - distinct,
        archived_missing=len(unique - in_lake),
        state_rebuilt=rebuilt,
        leftover_processes=len(processes_using(home)),
    )
