"""Two `clickrec serve` processes on the same stores (one home; its SQLite event log or a
Redis one): a click acknowledged by one is in the next answer of the other (read-your-writes
across replicas), and a reader erased through one is gone from both."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.crash import init_home, serving, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def replicas(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[str], str]]:
    """Two servers on the same stores: the home's SQLite log, or a Redis log."""
    env = dict(os.environ)
    if request.param == "redis":
        redis = request.getfixturevalue("redis_server")
        redis.flush()
        env["CLICKREC_STORES__EVENT_LOG"] = redis.url
    home = tmp_path_factory.mktemp("replicas") / "home"
    admin = init_home(home, env)
    with ExitStack() as stack:
        urls = [stack.enter_context(serving(home, env=env))[0] for _ in range(2)]
        yield urls, admin


def test_a_click_on_one_replica_is_in_the_next_answer_of_the_other(
    replicas: tuple[list[str], str],
) -> None:
    (a, b), admin = replicas
    auth = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(headers=auth, timeout=30) as http:
        for k in range(40):
            sent = http.post(
                f"{a}/v1/events",
                json={"events": [{"user_id": f"r{k}", "session_id": "s", "item_id": f"p{k}"}]},
            )
            assert sent.status_code == 202, sent.text
            seen = http.get(f"{b}/v1/users/r{k}", params={"limit": 1})
            assert seen.status_code == 200, f"try {k}: {seen.text}"
            assert seen.json()["history"][0]["item_id"] == f"p{k}"
            listed = http.get(f"{b}/v1/recommendations", params={"user_id": f"r{k}"}).json()
            assert f"p{k}" not in [i["item_id"] for i in listed["items"]]
        metrics = http.get(f"{b}/metrics").text
    behind = [ln for ln in metrics.splitlines() if ln.startswith("clickrec_answers_behind_log")]
    assert behind and float(behind[0].split()[-1]) == 0


def test_a_reader_erased_through_one_replica_is_gone_from_the_other(
    replicas: tuple[list[str], str],
) -> None:
    (a, b), admin = replicas
    auth = {"Authorization": f"Bearer {admin}"}
    events = [{"user_id": "gone", "session_id": "visit", "item_id": f"p{i}"} for i in range(5)]
    with httpx.Client(headers=auth, timeout=30) as http:
        assert http.post(f"{a}/v1/events", json={"events": events}).status_code == 202
        assert http.get(f"{b}/v1/users/gone").json()["history"]
        job = http.delete(f"{a}/v1/users/gone").json()

        def done() -> bool:
            return http.get(f"{b}/v1/erasures/{job['id']}").json()["state"] == "done"

        wait_for(done, 60)
        assert http.get(f"{b}/v1/users/gone").status_code == 404
        assert http.get(f"{a}/v1/users/gone").status_code == 404


def test_serve_with_processes_shares_the_port_and_survives_a_killed_process(
    tmp_path: Path,
) -> None:
    """`serve --processes 2`: every request, on a fresh connection to whichever process the
    kernel picks, sees the click sent just before; a killed process is replaced."""
    home = tmp_path / "home"
    admin = init_home(home)
    auth = {"Authorization": f"Bearer {admin}"}
    with serving(home, ["--processes", "2"]) as (url, proc):
        servers = wait_for(
            lambda: _api_children(proc.pid) if len(_api_children(proc.pid)) == 2 else None
        )
        for k in range(30):  # no keep-alive: each request may land on either process
            sent = httpx.post(
                f"{url}/v1/events",
                headers=auth,
                json={"events": [{"user_id": f"r{k}", "session_id": "s", "item_id": f"p{k}"}]},
            )
            assert sent.status_code == 202, sent.text
            seen = httpx.get(f"{url}/v1/users/r{k}", headers=auth, params={"limit": 1})
            assert seen.json()["history"][0]["item_id"] == f"p{k}"
        # A batch job runs in the process that took it; every process answers for it.
        lines = [{"user_id": f"r{k}", "num_results": 3} for k in range(30)]
        job = httpx.post(
            f"{url}/v1/batch-jobs",
            headers=auth,
            json={"kind": "recommendations", "lines": lines},
        ).json()
        states = [
            httpx.get(f"{url}/v1/batch-jobs/{job['id']}", headers=auth).json()["state"]
            for _ in range(20)
        ]
        assert set(states) <= {"pending", "running", "succeeded"}, states
        wait_for(
            lambda: (
                httpx.get(f"{url}/v1/batch-jobs/{job['id']}", headers=auth).json()["state"]
                == "succeeded"
            )
        )
        outputs = {
            httpx.get(f"{url}/v1/batch-jobs/{job['id']}/output", headers=auth).content
            for _ in range(10)
        }
        assert len(outputs) == 1 and len(outputs.pop().splitlines()) == 30
        os.kill(servers[0], signal.SIGKILL)
        wait_for(lambda: len(set(_api_children(proc.pid)) - {servers[0]}) == 2, 30)
        for _ in range(10):
            assert httpx.get(f"{url}/v1/users/r0", headers=auth).status_code == 200
    assert proc.returncode == 0
    assert _api_children(proc.pid) == []


def _api_children(parent: int) -> list[int]:
    """Pids of the API processes a `serve --processes` parent runs."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit():
                continue
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            if b"--no-worker" in cmd and (proc / "stat").read_text().split()[3] == str(parent):
                found.append(int(proc.name))
        except OSError:
            continue
    return sorted(found)
