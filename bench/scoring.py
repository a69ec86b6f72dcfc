"""What each of the training pipeline's candidates costs to fit and to serve, at scale.

A synthetic blog with a large catalog (``--posts-per-day`` × ``--days`` posts, each in one
or two of 12 sections) and its readers' events; every candidate of the pipeline is fitted on
all of it (timed), bound to an online state fed with the same events, the catalog's
publication times and sections (as serving has them), and asked for ``--readers`` readers'
scores over the whole catalog, one request at a time (``Scorer.for_reader``: the
model-dependent part of ``GET /v1/recommendations``). Baseline, in the same run:
``trending-now``, which reads no history.

    .venv/bin/python bench/scoring.py [--users 10000] [--days 30] [--posts-per-day 1700]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import catalog_columns, log, report, row

from clickrec.models.base import RecipeParams
from clickrec.models.online import state_from
from clickrec.models.recipes import fit
from clickrec.models.scoring import Scorer
from clickrec.testing.synthetic import BlogSpec, generate_blog
from clickrec.training.dataset import to_interactions, training_table
from clickrec.training.pipeline import candidates

SERVING_TRENDING_HOURS = 6.0
HISTORY_LENGTH = 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--posts-per-day", type=int, default=1700)
    parser.add_argument("--readers", type=int, default=2000, help="requests timed per candidate")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    spec = BlogSpec(
        users=args.users, days=args.days, posts_per_day=args.posts_per_day, seed=args.seed
    )
    log(f"generating {spec}")
    blog = generate_blog(spec)
    data = to_interactions(training_table(blog.interactions))
    published, sections = catalog_columns(blog.items, data.item_ids)
    facts = {
        i: (None if np.isnan(p) else float(p), c)
        for i, p, c in zip(data.item_ids.tolist(), published.tolist(), sections, strict=True)
    }
    log(f"{len(data):,} events, {data.n_items:,} items, {data.n_readers:,} readers")
    state = state_from(data, facts, SERVING_TRENDING_HOURS, HISTORY_LENGTH)
    rng = np.random.default_rng(args.seed)
    asked = data.reader_ids[rng.choice(data.n_readers, args.readers, replace=False)].tolist()
    figures: dict[str, dict[str, float]] = {}
    for cand in candidates(RecipeParams()):
        started = time.perf_counter()
        artifact = fit(cand.recipe, data, cand.params)
        fit_s = time.perf_counter() - started
        scorer = Scorer(artifact, state)
        scorer.for_reader(asked[0])  # builds the shared trending and section caches
        took = np.empty(len(asked))
        for k, reader in enumerate(asked):
            t0 = time.perf_counter()
            scorer.for_reader(reader)
            took[k] = time.perf_counter() - t0
        figures[cand.name] = {
            "fit_s": fit_s,
            "p50_ms": 1000 * float(np.percentile(took, 50)),
            "p99_ms": 1000 * float(np.percentile(took, 99)),
            "neighbours": float(artifact.similarity.nnz),
        }
        log(f"{cand.name}: fit {fit_s:.1f}s, p50 {figures[cand.name]['p50_ms']:.2f} ms")
    base = figures["trending-now"]
    rows = []
    for name, f in figures.items():
        rows.append(row(f"{name}: score one reader p50 (ms)", f["p50_ms"], base["p50_ms"]))
        rows.append(row(f"{name}: p99 (ms)", f["p99_ms"], base["p99_ms"]))
        rows.append(row(f"{name}: fit (s)", f["fit_s"]))
    report(
        "scoring",
        f"scoring: each candidate over {data.n_items:,} items, {len(data):,} events, "
        f"{args.readers:,} readers asked (baseline: trending-now in the same run)",
        rows,
        {"figures": figures, "spec": spec.__dict__},
    )


if __name__ == "__main__":
    main()
