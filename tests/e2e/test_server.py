"""End to end: a real `clickrec serve` process, driven over real HTTP and the real CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from clickrec.backends.registry import open_data_keys, open_lake
from clickrec.config import load_settings
from tests.crash import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLI = [sys.executable, "-m", "clickrec.cli"]


def cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [*CLI, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CLICKREC_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def key_from(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("ck_"))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str], subprocess.Popen]]:
    home = tmp_path / "home"
    admin = key_from(cli(home, "init"))
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--home", str(home), "--port", str(port), "--train-interval", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 60)
        yield url, home, {"Authorization": f"Bearer {admin}"}, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_keys_items_events_train_recommend_click(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, home, admin, proc = server
    ingest = {
        "Authorization": f"Bearer {key_from(cli(home, 'keys', 'create', '--scope', 'ingest'))}"
    }
    read = {"Authorization": f"Bearer {key_from(cli(home, 'keys', 'create', '--scope', 'read'))}"}
    with httpx.Client(base_url=url, timeout=30) as http:
        _scenario(http, home, tmp_path, admin, ingest, read, proc)


def _scenario(http, home, tmp_path, admin, ingest, read, proc) -> None:  # type: ignore[no-untyped-def]
    # History is imported with the CLI while the server runs; the server tails it.
    demo = tmp_path / "demo"
    subprocess.run(
        [
            *CLI,
            "demo",
            "generate",
            "--out",
            str(demo),
            "--users",
            "400",
            "--days",
            "7",
            "--posts-per-day",
            "25",
        ],
        check=True,
        capture_output=True,
    )
    cli(home, "import", "items", str(demo / "items.csv"))
    imported = cli(home, "import", "interactions", str(demo / "interactions.csv"))
    total = int(imported.split()[0])
    assert total > 1000

    assert http.get("/v1/trending", headers=ingest).status_code == 403
    trending = wait_for(lambda: http.get("/v1/trending", headers=read).json()["items"])
    assert trending

    # Training through the API; the server swaps to the new model without a restart.
    run = http.post("/v1/training-runs", headers=admin)
    assert run.status_code == 202
    run_id = run.json()["id"]
    done = wait_for(
        lambda: (
            (r := http.get(f"/v1/training-runs/{run_id}", headers=admin).json())["state"]
            in ("succeeded", "failed")
            and r
        ),
        timeout=120,
    )
    assert done["state"] == "succeeded", done
    # Published even if the automatic run at the threshold (on part of the import) came
    # first: the gate scores the live configuration on this run's own holdout.
    assert done["published"], done["metrics"].get("gate")
    version = done["model_version"]
    reader = {"user_id": "e2e-reader", "session_id": "e2e-session", "num_results": 10}
    before = wait_for(
        lambda: (
            (b := http.get("/v1/recommendations", params=reader, headers=read).json())[
                "model_version"
            ]
            == version
            and b
        )
    )
    assert len(before["items"]) == 10

    clicked = before["items"][2]["item_id"]
    sent = http.post(
        "/v1/events",
        headers=ingest,
        json={
            "events": [
                {
                    "user_id": "e2e-reader",
                    "session_id": "e2e-session",
                    "item_id": clicked,
                    "event_type": "read",
                    "event_value": 42.0,
                }
            ]
        },
    )
    assert sent.status_code == 202 and sent.json() == {"accepted": 1, "duplicates": 0}
    after = http.get("/v1/recommendations", params=reader, headers=read).json()
    assert clicked not in [i["item_id"] for i in after["items"]]
    assert [i["item_id"] for i in after["items"]] != [i["item_id"] for i in before["items"]]

    status = http.get("/v1/models", headers=admin).json()
    assert status["live_version"] == version == status["served_version"]

    # A batch job's output is a file in the home too.
    job = http.post(
        "/v1/batch-jobs",
        headers=read,
        json={"kind": "recommendations", "lines": [{"user_id": "e2e-reader"}]},
    )
    assert job.status_code == 202, job.text
    job_url = f"/v1/batch-jobs/{job.json()['id']}"
    wait_for(lambda: http.get(job_url, headers=read).json()["state"] == "succeeded")

    # The archive consumer puts every event in the lake exactly once.
    lake = home / "lake" / "events"
    wait_for(lambda: any(lake.glob("*/*.parquet")), timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    settings = load_settings(home, environ={})
    parts = open_lake(settings, open_data_keys(settings))  # encrypted: read through the lake
    seqs = pa.concat_tables([parts.read_part(path, ["seq"]) for path in parts.parts()])
    assert (seqs.num_rows, pc.count_distinct(seqs["seq"]).as_py()) == (total + 1, total + 1)

    # After the whole run (init, import, serve, train, archive): every reader's history and
    # every key's secret is this user's alone.
    assert home.stat().st_mode & 0o777 == 0o700
    made = list(home.rglob("*"))
    for kind in (".parquet", ".db", ".jsonl"):  # lake parts, SQLite stores, batch outputs
        assert any(p.suffix == kind for p in made), kind
    loose = {
        str(p.relative_to(home)): oct(p.stat().st_mode & 0o777)
        for p in made
        if p.stat().st_mode & 0o777 != (0o700 if p.is_dir() else 0o600)
    }
    assert loose == {}  # folders 0700, files 0600


def test_numbers_past_any_integer_leave_the_connection_usable(server) -> None:  # type: ignore[no-untyped-def]
    """Over one real keep-alive connection: an overflowing query number is a 422, and the
    next request on the same connection is answered (it was a 500 and a reset)."""
    url, _, admin, _ = server
    port = int(url.rsplit(":", 1)[1])
    auth = admin["Authorization"]
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        statuses = []
        for path in (
            "/v1/audit-log?before=99999999999999999999999",
            "/v1/audit-log?limit=18446744073709551617",
            "/v1/trending?num_results=1e400",
            "/healthz",
        ):
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: {auth}\r\n\r\n".encode()
            )
            status = reader.readline().split()[1]
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)
            statuses.append(int(status))
    assert statuses == [422, 422, 422, 200]


def test_bad_input_never_gets_a_5xx(server) -> None:  # type: ignore[no-untyped-def]
    url, _, admin, _ = server
    with httpx.Client(base_url=url, timeout=30) as http:
        _never_5xx(http, admin)


def _never_5xx(http: httpx.Client, admin: dict[str, str]) -> None:
    bodies = [
        b"",
        b"null",
        b"[]",
        b"{}",
        b'{"events": null}',
        b'{"events": [1, 2]}',
        b'{"events": [{"session_id": 5, "item_id": {}}]}',
        b"\xff\xfe",
        b'{"a": ' * 500,
    ]
    for path in ("/v1/events", "/v1/rankings"):
        for body in bodies:
            r = http.post(path, content=body, headers={**admin, "content-type": "application/json"})
            assert 400 <= r.status_code < 500, (path, body[:20], r.status_code, r.text)
            assert "error" in r.json()
    for query in ("num_results=abc", "num_results=-1", "user_id=" + "x" * 300, "category="):
        r = http.get(f"/v1/recommendations?session_id=s&{query}", headers=admin)
        assert 400 <= r.status_code < 500, (query, r.status_code)
    r = http.put(
        "/v1/items",
        content=b'{"items": [{"item_id": "x", "published_at": "soon"}]}',
        headers={**admin, "content-type": "application/json"},
    )
    assert r.status_code == 422
    assert http.get("/v1/items/%00", headers=admin).status_code == 404
    assert "server" not in {k.lower() for k in http.get("/healthz").headers}
