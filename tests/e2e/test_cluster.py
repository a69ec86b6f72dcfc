"""`tools/cluster.py` (make cluster): the scale-out topology on one machine, from the real
redis-server, PostgreSQL, moto's S3 server and HAProxy. Events sent through the proxy are
read back through it, from either replica, and `down` leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests import pg, redisserver, s3server
from tests.crash import free_port, processes_using, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
PARTS = ["redis", "postgres", "s3", "replica-1", "replica-2", "worker", "proxy"]


def require_cluster() -> None:
    """Skip where a part is missing; fail instead with CLICKREC_REQUIRE_REDIS (as in CI)."""
    reasons = [
        None if shutil.which("haproxy") else "haproxy is not installed (apt-get install haproxy)",
        redisserver.unavailable(),
        pg.unavailable(),
        s3server.unavailable(),
    ]
    reason = "; ".join(r for r in reasons if r)
    if not reason:
        return
    if os.environ.get("CLICKREC_REQUIRE_REDIS"):
        pytest.fail(f"{reason}, and CLICKREC_REQUIRE_REDIS is set")
    pytest.skip(reason)


def cluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "cluster.py"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def running(pid: int, start: int) -> bool:
    """The process recorded as (pid, start time) still runs (a zombie does not count)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] not in ("Z", "X") and int(fields[19]) == start


def test_the_cluster_serves_through_its_proxy_and_stops_cleanly(tmp_path: Path) -> None:
    require_cluster()
    folder, port = tmp_path / "cluster", free_port()
    proxy = f"http://127.0.0.1:{port}"
    try:
        started = cluster("up", "--dir", str(folder), "--port", str(port))
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((folder / "cluster.json").read_text())
        parts = {part["name"]: part for part in state["parts"]}
        assert list(parts) == PARTS
        admin = (folder / "admin.key").read_text().strip()
        assert (folder / "admin.key").stat().st_mode & 0o777 == 0o600
        assert admin in started.stdout.splitlines()
        assert proxy in started.stdout and "standing in for S3" in started.stdout

        again = cluster("up", "--dir", str(folder), "--port", str(free_port()))
        assert again.returncode == 1 and "not empty" in again.stderr
        shown = cluster("status", "--dir", str(folder))
        assert shown.returncode == 0, shown.stdout
        assert all(f"{name} " in shown.stdout for name in PARTS)

        auth = {"Authorization": f"Bearer {admin}"}
        items = [f"p{k}" for k in range(5)]
        events = [{"user_id": "r1", "session_id": "s1", "item_id": item} for item in items]
        sent = httpx.post(f"{proxy}/v1/events", json={"events": events}, headers=auth, timeout=30)
        assert sent.status_code == 202, sent.text
        newest_first = items[::-1]
        for _ in range(8):  # a new connection each time: leastconn spreads them
            read = httpx.get(f"{proxy}/v1/users/r1", headers=auth, timeout=30)
            assert read.status_code == 200, read.text
            assert [h["item_id"] for h in read.json()["history"]] == newest_first
        for name in ("replica-1", "replica-2"):
            direct = httpx.get(f"{parts[name]['url']}/v1/users/r1", headers=auth, timeout=30)
            assert [h["item_id"] for h in direct.json()["history"]] == newest_first

        def answered_reads() -> set[str]:
            log = Path(parts["proxy"]["log"]).read_text()
            lines = [line for line in log.splitlines() if "GET /v1/users/r1 " in line]
            return {name for name in ("replica-1", "replica-2") for ln in lines if name in ln}

        # HAProxy's log names the replica that answered each read through it.
        wait_for(lambda: answered_reads() == {"replica-1", "replica-2"}, 30)

        stopped = cluster("down", "--dir", str(folder))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert [p for p in parts.values() if running(p["pid"], p["start"])] == []
        assert not folder.exists()
        places = [folder, *map(Path, state["extra_dirs"])]
        assert [pid for place in places for pid in processes_using(place)] == []
        assert not any(place.exists() for place in places)
    finally:
        if folder.exists():
            cluster("down", "--dir", str(folder))
