"""End to end: DELETE /v1/users/{id} on a real `clickrec serve` (server + worker processes)
leaves no byte of the reader's ids anywhere in the home folder, models included."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests._scan import where
from tests.crash import serving, stop_server, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLI = [sys.executable, "-m", "clickrec.cli"]
ENV = {**os.environ, "CLICKREC_ENCRYPTION__ENABLED": "false"}  # in clear: the scan is honest
GONE, GONE_SESSION, KEPT = "erase-e2e-5b7d", "visit-e2e-9f1c", "keep-e2e-2a4e"


def _cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [*CLI, *args, "--home", str(home)], capture_output=True, text=True, timeout=300, env=ENV
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _events(user: str, session: str, start: float) -> list[dict]:
    return [
        {"user_id": user, "session_id": session, "item_id": f"p{i:03d}", "timestamp": start + i}
        for i in range(30)
    ]


def test_an_erased_reader_leaves_no_byte_in_a_running_engines_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    admin_key = next(k for k in _cli(home, "init").splitlines() if k.startswith("ck_"))
    admin = {"Authorization": f"Bearer {admin_key}"}
    with serving(home, ["--train-interval", "1"], ENV) as (url, proc):
        with httpx.Client(base_url=url, timeout=30, headers=admin) as http:
            start = time.time() - 7200
            items = [{"item_id": f"p{i:03d}", "title": f"Post {i}"} for i in range(30)]
            assert http.put("/v1/items", json={"items": items}).status_code == 200
            events = _events(GONE, GONE_SESSION, start) + _events(KEPT, "visit-k", start)
            events += [
                {"user_id": f"r{k}", "session_id": f"s{k}", "item_id": f"p{(k + j) % 30:03d}",
                 "timestamp": start + 100 + j}
                for k in range(250) for j in range(5)
            ]  # fmt: skip
            for at in range(0, len(events), 1000):
                batch = {"events": events[at : at + 1000]}
                assert http.post("/v1/events", json=batch).status_code == 202
            run = http.post("/v1/training-runs").json()["id"]
            trained = wait_for(
                lambda: (
                    (r := http.get(f"/v1/training-runs/{run}").json())["state"]
                    in ("succeeded", "failed")
                    and r
                ),
                120,
            )
            assert trained["state"] == "succeeded", trained  # type: ignore[index]
            job = http.post(
                "/v1/batch-jobs",
                json={"kind": "recommendations", "lines": [{"user_id": GONE}, {"user_id": KEPT}]},
            ).json()["id"]
            wait_for(lambda: http.get(f"/v1/batch-jobs/{job}").json()["state"] == "succeeded")
            # The worker archives on its own; wait until the lake holds both readers.
            wait_for(lambda: all(where(home / "lake", [GONE, KEPT]).values()), 60)

            erasure = http.delete(f"/v1/users/{GONE}")
            assert erasure.status_code == 202, erasure.text
            path = f"/v1/erasures/{erasure.json()['id']}"
            done = wait_for(lambda: (r := http.get(path).json())["state"] == "done" and r, 60)
            assert done["counts"]["events"] == 30 and done["counts"]["lake_rows"] == 30  # type: ignore[index]

            found = where(home, [GONE, GONE_SESSION, KEPT])
            assert found[GONE] == set() and found[GONE_SESSION] == set(), found
            assert any(f.startswith("lake/") for f in found[KEPT])
            assert http.get(f"/v1/users/{GONE}").status_code == 404
        assert stop_server(proc) == 0
    after_stop = where(home, [GONE, GONE_SESSION])
    assert after_stop == {GONE: set(), GONE_SESSION: set()}
