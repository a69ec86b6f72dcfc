"""Import and training on a synthetic blog of about 1,000,000 interactions.

The blog comes from clickrec's own generator (``BlogSpec(users=23000, days=30)`` gives
about a million interactions), is written as CSV, imported with ``clickrec import items``
and ``clickrec import interactions``, and trained with ``clickrec train``; each command is
timed as a whole process (wall, CPU, peak memory). Baseline, in the same run: the time to
just load the same interactions CSV with DuckDB and with pyarrow, the floor any import or
training pass over this data starts from.

    .venv/bin/python bench/train.py [--users 23000] [--days 30] [--small] [--home DIR]

With ``--home DIR`` the home folder is kept, so a profiler can rerun one step, e.g.
``py-spy record -o train.svg -- .venv/bin/clickrec train --home DIR``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.csv as pacsv
from common import Home, log, report, row, run_cli, verdict

from clickrec.testing.synthetic import BlogSpec, generate_blog, write_blog

TARGET_TRAIN_S = 120.0


def load_baselines(path: Path) -> dict[str, float]:
    """Seconds to load the CSV into memory (an Arrow table) with DuckDB and with pyarrow."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    with duckdb.connect() as con:
        table = con.sql("SELECT * FROM read_csv_auto($p)", params={"p": str(path)})
        rows = table.to_arrow_table().num_rows
    out["duckdb_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rows_pa = pacsv.read_csv(path).num_rows
    out["pyarrow_s"] = time.perf_counter() - t0
    if rows != rows_pa:
        raise RuntimeError(f"DuckDB read {rows} rows, pyarrow {rows_pa}")
    out["rows"] = rows
    return out


def last_run(home: Path) -> dict[str, Any]:
    """The newest training run as the registry recorded it (its metrics say what it fit)."""
    from clickrec.backends.registry import open_catalog
    from clickrec.config import load_settings

    catalog = open_catalog(load_settings(home))
    try:
        runs = catalog.list_runs(limit=1)
    finally:
        catalog.close()
    return runs[0] if runs else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=23_000, help="BlogSpec.users")
    parser.add_argument("--days", type=int, default=30, help="BlogSpec.days")
    parser.add_argument("--posts-per-day", type=int, default=40, help="BlogSpec.posts_per_day")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="~10x fewer users, a quick check")
    parser.add_argument("--home", type=str, default=None, help="keep the home folder here")
    args = parser.parse_args()
    if args.small:
        args.users //= 10

    spec = BlogSpec(
        users=args.users, days=args.days, posts_per_day=args.posts_per_day, seed=args.seed
    )
    home = Home(args.home)
    steps: dict[str, Any] = {}
    try:
        log(f"generating {spec}")
        t0 = time.perf_counter()
        blog = generate_blog(spec)
        steps["generate_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        paths = write_blog(blog, home.path / "bench-data", "csv")
        steps["write_csv_s"] = time.perf_counter() - t0
        n_rows, n_items = blog.interactions.num_rows, blog.items.num_rows
        del blog
        log(f"{n_rows:,} interactions, {n_items:,} items → {paths['interactions'].parent}")

        base = load_baselines(paths["interactions"])
        log(f"baseline loads: DuckDB {base['duckdb_s']:.2f}s, pyarrow {base['pyarrow_s']:.2f}s")

        home.init()
        h = ["--home", str(home.path)]
        log("clickrec import items")
        items = run_cli(["import", "items", str(paths["items"]), *h], home.logs)
        log(f"  {items.wall_s:.1f}s; clickrec import interactions")
        inter = run_cli(["import", "interactions", str(paths["interactions"]), *h], home.logs)
        log(f"  {inter.wall_s:.1f}s; clickrec train")
        train = run_cli(["train", *h], home.logs)
        log(f"  {train.wall_s:.1f}s: {train.stdout.strip().splitlines()[0]}")
        run = last_run(home.path)
    finally:
        home.cleanup()

    metrics = run.get("metrics") or {}
    duck, pa_s = base["duckdb_s"], base["pyarrow_s"]
    rows = [
        row(
            "train wall (s)",
            train.wall_s,
            duck,
            f"≤ {TARGET_TRAIN_S:.0f}: {verdict(train.wall_s <= TARGET_TRAIN_S)}",
        ),
        row("train CPU (s)", train.cpu_s, None),
        row("train peak RSS (MB)", train.max_rss_mb, None),
        row("train: pipeline's own train_seconds", metrics.get("train_seconds"), None),
        row("import interactions wall (s)", inter.wall_s, pa_s),
        row("import interactions (rows/s)", n_rows / inter.wall_s, n_rows / pa_s),
        row("import interactions peak RSS (MB)", inter.max_rss_mb, None),
        row("import items wall (s)", items.wall_s, None),
        row("interactions", n_rows, base["rows"]),
        row("items", n_items, None),
        row("chosen recipe", metrics.get("chosen"), None),
        row("DuckDB: load the CSV (s)", duck, None),
        row("pyarrow: load the CSV (s)", pa_s, None),
        row("generate the blog (s)", steps["generate_s"], None),
        row("write the CSVs (s)", steps["write_csv_s"], None),
    ]
    report(
        "train",
        f"train: {n_rows:,} interactions, {n_items:,} items (BlogSpec users={spec.users}, "
        f"days={spec.days}); baseline: DuckDB (train row) / pyarrow (import rows) CSV loads",
        rows,
        {
            "args": vars(args),
            "steps": {k: round(v, 3) for k, v in steps.items()},
            "baselines": {k: round(v, 3) for k, v in base.items()},
            "commands": {
                "import_items": {"wall_s": items.wall_s, "cpu_s": items.cpu_s},
                "import_interactions": {
                    "wall_s": inter.wall_s,
                    "cpu_s": inter.cpu_s,
                    "max_rss_mb": inter.max_rss_mb,
                    "stdout": inter.stdout.strip(),
                },
                "train": {
                    "wall_s": train.wall_s,
                    "cpu_s": train.cpu_s,
                    "max_rss_mb": train.max_rss_mb,
                    "stdout": train.stdout.strip(),
                },
            },
            "run": {k: run.get(k) for k in ("id", "state", "model_version", "error", "metrics")},
        },
    )


if __name__ == "__main__":
    main()
