"""`clickrec migrate`: the time to move an embedded home's event log to Redis.

A home gets ``--events`` events (``clickrec import interactions`` of a generated Parquet
file: readers, sessions, Zipf-skewed items), then ``clickrec migrate --event-log redis://…``
copies them (with their seqs and dedup ids) into a throwaway redis-server with the
durability the engine requires (``appendfsync always``), verifies both sides by count and
SHA-256, and switches the config file. Baseline, in the same run: reading every event of
the source log once through the same protocol (the copy reads the source twice and the
target once).

    .venv/bin/python bench/migrate.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from common import Home, log, report, row, run_cli
from scaleout import redis_memory, redis_server

from clickrec.backends.sqlite_log import SQLiteEventLog


def write_events(path: Path, n: int, users: int, items: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, n)
    table = pa.table(
        {
            "user_id": pa.array([f"u{u}" for u in user.tolist()]),
            "session_id": pa.array(
                [
                    f"s{u * 10 + s}"
                    for u, s in zip(user.tolist(), rng.integers(0, 5, n).tolist(), strict=True)
                ]
            ),  # noqa: E501
            "item_id": pa.array(
                [f"p{i}" for i in np.minimum(rng.zipf(1.3, n) - 1, items - 1).tolist()]
            ),  # noqa: E501
            "timestamp": np.sort(time.time() - rng.uniform(0, 30 * 86400, n)),
        }
    )
    pq.write_table(table, path)


def read_all(path: Path) -> tuple[int, float]:
    """(events, seconds) reading the whole SQLite log in pages of 10,000."""
    started = time.perf_counter()
    source = SQLiteEventLog(path)
    try:
        after = rows = 0
        while True:
            table = source.read(after, 10_000)
            if table.num_rows == 0:
                break
            rows += table.num_rows
            after = int(table.column("seq")[-1].as_py())
    finally:
        source.close()
    return rows, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=50_000)
    args = parser.parse_args()
    home = Home()
    try:
        home.init()
        data = Path(tempfile.mkdtemp(prefix="clickrec-bench-migrate-")) / "events.parquet"
        write_events(data, args.events, args.users, args.items)
        imported = run_cli(
            ["import", "interactions", str(data), "--home", str(home.path)], home.logs
        )
        log(f"imported {args.events:,} events in {imported.wall_s:.1f} s")
        rows, read_s = read_all(home.path / "events.db")
        log(f"reading them back: {read_s:.1f} s")
        with redis_server() as (url, _):
            moved = run_cli(["migrate", "--event-log", url, "--home", str(home.path)], home.logs)
            used, in_redis = redis_memory(url)
        log(f"migrate: {moved.wall_s:.1f} s")
    finally:
        home.cleanup()
    report(
        "migrate",
        "clickrec migrate: an embedded event log to Redis",
        [
            row(
                f"migrate {rows:,} events to Redis (copy + verify + switch), s",
                f"{moved.wall_s:.1f} ({rows / moved.wall_s:,.0f} events/s, peak {moved.max_rss_mb:.0f} MB)",  # noqa: E501
                f"reading them once from SQLite: {read_s:.1f} s",
            ),
            row("events in Redis after the move", f"{in_redis:,}", f"{rows:,} in the source"),
            row(
                "Redis memory per million events",
                f"{used / max(in_redis, 1) * 1e6 / 2**20:,.0f} MiB",
            ),  # noqa: E501
            row(
                "import of the same events (clickrec import interactions), s",
                f"{imported.wall_s:.1f}",
            ),  # noqa: E501
        ],
        {"args": vars(args)},
    )


if __name__ == "__main__":
    main()
