"""The README's tour, run as written: the shell block between ``<!-- tour -->`` markers,
line by line in one bash session, against a real `clickrec serve` started the way `make run`
starts it. Only the port and the home are this test's own (``localhost:8080`` and ``var``
are rewritten); each step's output is checked against what the README's comment under it
says the reader will see."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.crash import serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "clickrec.cli"]
MARK = "@@step@@"


def tour_commands() -> list[str]:
    """The tour's commands, in order, comments dropped."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- tour -->\s*```sh\n(.*?)```\s*<!-- /tour -->", readme, re.S)
    assert block, "the README has no tour block"
    lines = [line.rstrip() for line in block.group(1).splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_the_tour_has_the_steps_the_test_checks() -> None:
    commands = tour_commands()
    assert commands[0].startswith("make demo")
    assert any("/v1/training-runs/$RUN" in c for c in commands)
    assert any(c.startswith("clickrec batch recommend") for c in commands)


def _script(commands: list[str], port: int, home: Path) -> str:
    """The tour with this test's port and home, a marker printed before each step."""
    steps = []
    for n, command in enumerate(commands):
        command = command.replace("localhost:8080", f"localhost:{port}")
        command = command.replace("var/admin.key", f"{home}/admin.key")
        if command.startswith("make demo"):
            command = f"make -s -C {REPO} demo"
        steps.append(f"echo '{MARK} {n}'\n{command}")
    return "set -euo pipefail\n" + "\n".join(steps) + "\n"


def _ids(answer: dict) -> list[str]:
    return [item["item_id"] for item in answer["items"]]


def test_the_readme_tour_shows_what_it_says(tmp_path: Path) -> None:
    home = tmp_path / "var"
    # The tour's own `export PATH="$PWD/.venv/bin:$PATH"` must be what finds `clickrec`:
    # the shell starts in a folder whose .venv is this interpreter's, without it on PATH.
    venv_bin = Path(sys.executable).parent
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p) != venv_bin]
    env = {**os.environ, "CLICKREC_HOME": str(home), "PATH": os.pathsep.join(path)}
    init = subprocess.run([*CLI, "init"], env=env, capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    assert (home / "admin.key").read_text().startswith("ck_")
    commands = tour_commands()
    with serving(home) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        done = subprocess.run(
            ["bash", "-c", _script(commands, port, home)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    parts = done.stdout.split(MARK)[1:]
    out = {int(p.split("\n", 1)[0]): p.split("\n", 1)[1].strip() for p in parts}

    def output_of(fragment: str, nth: int = 0) -> str:
        found = [n for n, c in enumerate(commands) if fragment in c]
        return out[found[nth]]

    trending = json.loads(output_of("/v1/trending"))
    assert len(trending["items"]) == 5
    assert all(i["reason"].startswith("trending") for i in trending["items"]), trending
    models = json.loads(output_of("/v1/models"))
    assert models["live_version"] == models["served_version"] is not None, models
    run = json.loads(output_of("training-runs/$RUN?wait"))
    assert run["state"] == "succeeded" and isinstance(run["published"], bool), run
    before = json.loads(output_of("LIST=$("))
    assert len(before["items"]) == 5 and all(i["reason"] for i in before["items"])
    assert json.loads(output_of("/v1/events")) == {"accepted": 1, "duplicates": 0}
    after = json.loads(output_of("/v1/recommendations?user_id=u000042", 1))
    read = _ids(before)[0]
    assert read not in _ids(after) and len(after["items"]) == 5
    assert set(_ids(before)[1:]) & set(_ids(after)), (before, after)
    batch = json.loads((tmp_path / "recs.jsonl").read_text().splitlines()[0])
    live = json.loads(output_of("/v1/recommendations?user_id=u000042", 2))
    assert (batch["model_version"], _ids(batch)) == (live["model_version"], _ids(live)), (
        batch,
        live,
    )
