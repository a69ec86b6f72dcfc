"""Crash harness: SIGKILL a real `clickrec serve` under ingest load N times (default 20) at
random moments, restart it, and count acknowledged / found / lost / duplicated events in
the log and in the lake. Lost and duplicated must be 0.

    .venv/bin/python bench/crash.py [--kills 20] [--seed 7] [--home DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from common import log, report, row, verdict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests/
from tests import crash  # noqa: E402 - after the path it lives on


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--home", type=str, default=None, help="keep the home folder here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clickrec-crash-") as tmp:
        home = Path(args.home) if args.home else Path(tmp) / "home"
        started = time.perf_counter()
        result = crash.run(
            home,
            args.kills,
            args.seed,
            args.clients,
            lambda k, acked: log(f"kill {k}/{args.kills}: {acked:,} events acknowledged so far"),
        )
        wall = time.perf_counter() - started
    rows = [
        row("SIGKILLs under load", result.kills, None, f"≥ 20: {verdict(result.kills >= 20)}"),
        row("events acknowledged (202)", result.acknowledged, None),
        row("acknowledged and found in the log", result.found, result.acknowledged),
        row("lost", result.lost, None, f"0: {verdict(result.lost == 0)}"),
        row(
            "duplicated in the log",
            result.duplicated,
            None,
            f"0: {verdict(result.duplicated == 0)}",
        ),
        row("rows in the lake", result.archived, None),
        row(
            "duplicated in the lake",
            result.archived_duplicated,
            None,
            f"0: {verdict(result.archived_duplicated == 0)}",
        ),
        row(
            "in the log, missing from the lake",
            result.archived_missing,
            None,
            f"0: {verdict(result.archived_missing == 0)}",
        ),
        row("online state rebuilt", str(result.state_rebuilt), None),
        row("processes left behind", result.leftover_processes, None, "0"),
        row("wall time (s)", round(wall, 1), None),
    ]
    report(
        "crash",
        f"crash: {result.kills} SIGKILLs of clickrec serve under load "
        "(baseline column: what was acknowledged)",
        rows,
        {"args": vars(args), "report": asdict(result), "wall_s": wall},
    )


if __name__ == "__main__":
    main()
