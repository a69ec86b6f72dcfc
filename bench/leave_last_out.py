"""Leave-last-out on MovieLens 100K: the literature's protocol, so clickrec's figures sit
beside published ones.

Each reader's last rating by time is held out, everything else is fitted, the full catalog
is ranked for each reader with the films they rated excluded, and a target tied with other
films ranks below them all (``clickrec.evaluation.leave_last_out``). Scored: the training
pipeline's candidates as serving runs them, the baselines of
``clickrec.evaluation.baselines`` (item-kNN and ALS only with the optional ``implicit``),
EASE (numpy, a check that the protocol reproduces the literature's figures), and a small
grid over the long-memory recipe's knobs, tuned on a validation split carved from the
training part (each reader's last training rating) and scored once on the test split.

    .venv/bin/python bench/leave_last_out.py            # ~1 min
    .venv/bin/python bench/leave_last_out.py --no-grid  # the table only, ~10 s

Writes docs/leave_last_out.md and bench/out/leave_last_out.json. Without
../shared/data/ml_100k it says so and exits 0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from common import BENCH_DIR, OUT_DIR, log, machine

from clickrec.config import ServingSettings
from clickrec.evaluation import leave_last_out as llo
from clickrec.evaluation.live import LiveModel
from clickrec.importing import InteractionColumns
from clickrec.models.base import Interactions, RecipeParams
from clickrec.models.recipes import FitCache
from clickrec.models.scoring import top_n
from clickrec.training.dataset import to_interactions
from clickrec.training.offline import (
    BASELINE_POPULARITY,
    POPULARITY_ALL_TIME,
    default_candidates,
    leave_last_out,
    load_dataset,
)

ROOT = BENCH_DIR.parent
DATA = ROOT.parent / "shared" / "data" / "ml_100k" / "ml-100k.inter"
DOC = ROOT / "docs" / "leave_last_out.md"
COLUMNS = InteractionColumns(
    user_id="user_id:token",
    session_id=None,  # sessions are each reader's UTC day, as `clickrec evaluate` makes them
    item_id="item_id:token",
    event_type=None,
    timestamp="timestamp:float",
)
CLI = (
    "clickrec evaluate ../shared/data/ml_100k/ml-100k.inter --protocol leave-last-out "
    "--user-col user_id:token --item-col item_id:token --time-col timestamp:float"
)
SHOWN = ("hr@10", "ndcg@10", "hr@20", "mrr@20")
# Measured on this protocol with standard implementations (../shared/data/README.md).
LITERATURE = {
    "SASRec (softmax loss)": (0.181, 0.091),
    "sequential rules": (0.169, 0.090),
    "EASE": (0.149, 0.072),
    "iALS": (0.144, 0.074),
    "item-kNN": (0.132, 0.068),
    "most popular": (0.086, 0.044),
}
SASREC = LITERATURE["SASRec (softmax loss)"]
SERVING = ServingSettings()  # its defaults: how serving runs a recipe
LONG_TASTE = "user-personalization/long-taste"
# The grid: the long-memory recipe's similarity and history knobs, then its weights.
GRID = {
    "sequence_weight": (0.0, 0.5, 1.0, 2.0),
    "history_half_life": (1.0, 2.0, 4.0, 8.0),
    "cooccurrence": ("reader", "session"),
    "neighbours": (100, 200),
    "session_window": (50, 100),
}
WEIGHTS = {
    "personal_weight": (3.0, 10.0),
    "trending_weight": (0.0, 0.3),
    "trending_half_life_hours": (None, 24.0),
}
EASE_LAMBDAS = (100.0, 250.0, 500.0)


class EASE:
    """Steck's EASE (closed-form item-item regression on the binary user × item matrix):
    here only to check that the protocol gives the literature's figure for it."""

    def __init__(self, name: str, regularization: float) -> None:
        self.name = name
        self.regularization = regularization
        self._scores = np.zeros((0, 0))

    def fit(self, train: Interactions) -> None:
        ones = np.ones(len(train), dtype=np.float64)
        x = sp.csr_matrix((ones, (train.reader, train.item)), (train.n_readers, train.n_items))
        x.data[:] = 1.0
        gram = (x.T @ x).toarray()
        gram[np.diag_indices_from(gram)] += self.regularization
        inverse = np.linalg.inv(gram)
        weights = -inverse / np.diag(inverse)
        weights[np.diag_indices_from(weights)] = 0.0
        self._scores = np.asarray(x @ weights)

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        raise NotImplementedError("EASE here is fitted once")

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        values = self.scores(reader)
        values[exclude] = -np.inf
        return top_n(values, k)

    def scores(self, reader: int) -> np.ndarray:
        return self._scores[reader].copy()


def served(name: str, params: RecipeParams, cache: FitCache | None = None) -> LiveModel:
    """``user-personalization`` with ``params`` as serving runs it (its default trending
    half-life and history length), as ``clickrec evaluate`` runs the candidates."""
    return llo.ScoredRecipeModel(
        name,
        "user-personalization",
        params,
        SERVING.trending_half_life_hours,
        SERVING.history_length,
        cache=cache,
    )


def implicit_baselines() -> tuple[list[LiveModel], str | None]:
    """item-kNN and ALS from ``implicit`` when it is installed, else a note why not."""
    try:
        import implicit  # noqa: F401
    except ImportError:
        return (
            [],
            "item-kNN and ALS skipped: `implicit` is not installed (pip install -e .[quality])",
        )
    from clickrec.evaluation.baselines import ALSFoldIn, ItemKNN

    return [ItemKNN("item-kNN (implicit, cosine)"), ALSFoldIn("ALS (implicit, fold-in)")], None


def standard_error(rate: float, n: float) -> float:
    return math.sqrt(rate * (1.0 - rate) / n) if n > 0 else 0.0


def grid_search(
    data: Interactions, split: llo.LastItems, base: RecipeParams
) -> list[dict[str, Any]]:
    """Every GRID setting, then WEIGHTS around the best, on the validation split; the
    settings ranked by validation HR@10, best first (NDCG@10 breaks ties)."""
    valid_data = data.subset(split.train)
    valid = llo.last_items(valid_data)
    rows: list[dict[str, Any]] = []
    start = asdict(base)

    def score(grid: dict[str, tuple[Any, ...]], around: RecipeParams) -> None:
        cache: FitCache = {}
        scored = {json.dumps(r["changed"]) for r in rows}
        models: dict[str, tuple[RecipeParams, LiveModel]] = {}
        for values in itertools.product(*grid.values()):
            params = replace(around, **dict(zip(grid, values, strict=True)))
            name = json.dumps({k: v for k, v in asdict(params).items() if v != start[k]})
            if name not in scored and name not in models:
                models[name] = (params, served(name, params, cache))
        started = time.perf_counter()
        results = llo.run([model for _, model in models.values()], valid_data, valid)
        log(f"grid: {len(models)} settings in {time.perf_counter() - started:.1f} s")
        for name, (params, _) in models.items():
            rows.append(
                {"params": asdict(params), "changed": json.loads(name), "valid": results[name]}
            )

    def best() -> dict[str, Any]:
        return max(rows, key=lambda r: (r["valid"]["hr@10"], r["valid"]["ndcg@10"]))

    score(GRID, base)
    score(WEIGHTS, RecipeParams(**best()["params"]))
    rows.sort(key=lambda r: (-r["valid"]["hr@10"], -r["valid"]["ndcg@10"]))
    return rows


def changes(changed: dict[str, Any]) -> str:
    """What a setting changes from long-taste, as code."""
    if not changed:
        return "long-taste itself"
    return ", ".join(f"`{k}={v!r}`" for k, v in changed.items())


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def render(report: dict[str, Any]) -> str:
    n = report["readers"]
    lines = [
        "# Leave-last-out on MovieLens 100K",
        "",
        "The protocol of the sequential-recommendation literature (SASRec, RecBole's full "
        "ranking): each reader's last rating by time is held out (among ratings of the same "
        "second, the later in the file), everything else is fitted, the full catalog "
        f"({report['items']:,} films) is ranked for each of the {n:,} readers with the films "
        "they rated excluded, and a held-out film tied with others ranks below them all. "
        "Every rating counts as an interaction, whatever its value; sessions are each "
        "reader's UTC day. There is no time cut: other readers' later ratings are in the "
        'training part, and "now" for trending is the newest rating of the file (1998-04), '
        "so the trending terms of the recipes mean little here; `replay` measures serving.",
        "",
        "```sh",
        ".venv/bin/python bench/leave_last_out.py   # this page",
        CLI + "   # the candidates and popularity only",
        "```",
        "",
        f"With {n:,} readers, one standard error of HR@10 is about "
        f"{standard_error(0.2, n):.3f} near 0.2 and {standard_error(0.08, n):.3f} near 0.08.",
        "",
        "## Candidates, baselines, references",
        "",
        "| model | HR@10 | NDCG@10 | HR@20 | MRR@20 | literature HR@10 | literature NDCG@10 "
        "| fit + rank s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["rows"]:
        m, ref = row["metrics"], row.get("literature")
        lines.append(
            f"| {row['label']} | "
            + " | ".join(fmt(m.get(k)) if m else "–" for k in SHOWN)
            + f" | {fmt(ref[0]) if ref else '–'} | {fmt(ref[1]) if ref else '–'} | "
            + (f"{m['fit_s'] + m['rank_s']:.1f}" if m else "–")
            + " |"
        )
    lines += ["", *(f"- {note}" for note in report["notes"]), ""]
    best, se = report["best_candidate"], standard_error(SASREC[0], n)
    lines += [
        f"The best of the pipeline's candidates here, `{best['name']}`, scores HR@10 "
        f"{best['hr@10']:.3f} / NDCG@10 {best['ndcg@10']:.3f}: "
        f"{best['hr@10'] - SASREC[0]:+.3f} / {best['ndcg@10'] - SASREC[1]:+.3f} from SASRec's "
        f"reference ({(best['hr@10'] - SASREC[0]) / se:+.1f} standard errors of HR@10). "
        f"{len(report['below_popularity'])} of the {report['candidates'] - 1} other candidates "
        "score below all-time popularity.",
        "",
    ]
    grid = report.get("grid")
    if grid:
        lines += [
            "## The long-memory recipe's knobs",
            "",
            f"{grid['settings']} settings of `user-personalization` (sequence_weight × "
            "history_half_life × cooccurrence × neighbours × session_window around the "
            "pipeline's `long-taste`, then personal_weight × trending_weight × "
            "trending_half_life_hours around the best), each fitted on the training part "
            "less each reader's last training rating and scored on that rating "
            f"(validation); {grid['seconds']:.0f} s in all. The best five by validation "
            "HR@10, then scored once on the test split:",
            "",
            "| changed from long-taste | valid HR@10 | valid NDCG@10 | test HR@10 | test NDCG@10 |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for row in grid["top"]:
            lines.append(
                f"| {changes(row['changed'])} | {fmt(row['valid']['hr@10'])} | "
                f"{fmt(row['valid']['ndcg@10'])} | {fmt(row['test']['hr@10'])} | "
                f"{fmt(row['test']['ndcg@10'])} |"
            )
        b = grid["best"]
        lines += [
            "",
            f"Chosen: {changes(b['changed'])} — test HR@10 "
            f"{fmt(b['test']['hr@10'])}, NDCG@10 {fmt(b['test']['ndcg@10'])} (long-taste as the "
            f"pipeline has it: {fmt(grid['long_taste']['hr@10'])} / "
            f"{fmt(grid['long_taste']['ndcg@10'])}); fit {b['test']['fit_s']:.2f} s, "
            f"{n:,} readers ranked in {b['test']['rank_s']:.2f} s.",
            "",
            "Its parameters: `" + json.dumps(b["params"]) + "`",
            "",
            f"On test that is {b['test']['hr@10'] - grid['long_taste']['hr@10']:+.3f} HR@10 from "
            f"long-taste as it is "
            f"({(b['test']['hr@10'] - grid['long_taste']['hr@10']) / se:+.1f} standard errors); "
            f"long-taste itself is #{grid['long_taste_place']} of {grid['settings']} on "
            f"validation (HR@10 {grid['long_taste_valid']['hr@10']:.3f}).",
            "",
        ]
    lines += [
        f"Measured {report['machine']['when']} on {report['machine']['platform']}, "
        f"{report['machine']['cpus']} CPUs, Python {report['machine']['python']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-grid", action="store_true", help="skip the grid search")
    args = parser.parse_args()
    if not DATA.exists():
        print(f"{DATA} not found: MovieLens 100K is not on this machine; nothing to measure.")
        return 0
    started = time.perf_counter()
    table = load_dataset(DATA, COLUMNS)
    data = to_interactions(table)
    split = llo.last_items(data)
    n = len(split.readers)
    log(f"{len(data):,} ratings, {data.n_readers:,} readers, {data.n_items:,} films; {n} asked")

    # The candidates and all-time popularity exactly as `clickrec evaluate` scores them.
    cands = default_candidates()
    results = leave_last_out(table, cands, progress=log)
    notes: list[str] = []
    extra, why_not = implicit_baselines()
    if why_not:
        notes.append(why_not + "; the literature's figures for them are in the table.")
    else:
        notes.append("implicit's models are ranked on their top-20 lists: ties in their order.")
        results |= llo.run(extra, data, split, progress=log)

    # EASE's regularization tuned on the validation split, like the grid below.
    valid_data = data.subset(split.train)
    valid = llo.last_items(valid_data)
    tried = llo.run([EASE(f"{lam:g}", lam) for lam in EASE_LAMBDAS], valid_data, valid)
    lam = max(EASE_LAMBDAS, key=lambda v: tried[f"{v:g}"]["hr@10"])
    ease = f"check: EASE (numpy, λ={lam:g} chosen on validation)"
    results |= llo.run([EASE(ease, lam)], data, split)
    notes.append(
        "EASE is no part of clickrec: it checks that this protocol reproduces the "
        "literature's figure for the same model (as all-time popularity does)."
    )

    popular = LITERATURE["most popular"]
    rows: list[dict[str, Any]] = [
        {
            "label": f"`{c.name}`",
            "metrics": results[c.name],
            "literature": popular if c.name == POPULARITY_ALL_TIME else None,
        }
        for c in cands
    ]
    rows.append(
        {
            "label": BASELINE_POPULARITY,
            "metrics": results[BASELINE_POPULARITY],
            "literature": popular,
        }
    )
    rows += [{"label": m.name, "metrics": results[m.name], "literature": None} for m in extra]
    rows.append({"label": ease, "metrics": results[ease], "literature": LITERATURE["EASE"]})
    rows += [
        {"label": f"literature: {name}", "metrics": None, "literature": ref}
        for name, ref in LITERATURE.items()
    ]
    lead = max(cands, key=lambda c: results[c.name]["hr@10"])
    below = [
        c.name for c in cands if results[c.name]["hr@10"] < results[POPULARITY_ALL_TIME]["hr@10"]
    ]
    report: dict[str, Any] = {
        "best_candidate": {"name": lead.name, **results[lead.name]},
        "below_popularity": below,
        "candidates": len(cands),
        "readers": n,
        "items": data.n_items,
        "ratings": len(data),
        "rows": rows,
        "notes": notes,
        "machine": machine(),
    }

    if not args.no_grid:
        grid_started = time.perf_counter()
        long_taste = next(c for c in cands if c.name == LONG_TASTE)
        ranked = grid_search(data, split, long_taste.params)
        seconds = time.perf_counter() - grid_started
        top = ranked[:5]
        names = [json.dumps(r["changed"]) for r in top]
        models = [
            served(name, RecipeParams(**r["params"])) for name, r in zip(names, top, strict=True)
        ]
        tested = llo.run(models, data, split)
        for name, r in zip(names, top, strict=True):
            r["test"] = tested[name]
        place = next(i for i, r in enumerate(ranked) if not r["changed"])
        report["grid"] = {
            "settings": len(ranked),
            "seconds": seconds,
            "top": top,
            "best": top[0],
            "long_taste": results[LONG_TASTE],
            "long_taste_place": place + 1,
            "long_taste_valid": ranked[place]["valid"],
        }

    report["seconds"] = time.perf_counter() - started
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "leave_last_out.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    page = render(report)
    DOC.write_text(page)
    print(page)
    log(f"done in {report['seconds']:.0f} s; written {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
