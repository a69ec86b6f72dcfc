"""Does the request's context help? The replay protocol on a synthetic blog whose readers'
section tastes depend on their device, each recipe with and without contexts (the same
engine code: the online state, the scorer), and on a blog where devices carry no signal.

    .venv/bin/python bench/context.py [--users 2000] [--days 14] [--effects 2,0.8,0]

Every event carries ``{"device": "phone"|"desktop"}``; each query is asked with the
context of the event it is about (the request comes from the device the reader is on).
The baseline is the same recipe, fed and asked without contexts, in the same run.
Writes docs/context.md (and docs/context.png when matplotlib is installed).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import log, pyplot

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from clickrec.evaluation import replay as rp  # noqa: E402
from clickrec.evaluation.live import RecipeModel  # noqa: E402
from clickrec.models.base import RecipeParams  # noqa: E402
from clickrec.testing.synthetic import BlogSpec, generate_blog  # noqa: E402
from clickrec.training.dataset import to_interactions, training_table  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
HOLDOUT = 0.2
RECIPES = {
    "trending-now": ("trending-now", RecipeParams()),
    "user-personalization/within-trending": (
        "user-personalization",
        replace(RecipeParams(), blend="product"),
    ),
    "user-personalization": ("user-personalization", RecipeParams()),
}


def dataset(users: int, days: int, effect: float, seed: int) -> tuple:  # type: ignore[type-arg]
    spec = BlogSpec(users=users, days=days, seed=seed, device_effect=max(effect, 1e-9))
    table = generate_blog(spec).interactions.sort_by([("timestamp", "ascending")])
    contexts = [{"device": d} for d in table.column("device").to_pylist()]
    data = to_interactions(training_table(table))  # already in time order: as contexts
    return data, contexts


def evaluate(data, contexts, queries: int) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    cut = float(np.quantile(data.timestamp, 1.0 - HOLDOUT))
    stream = rp.first_touches(data, cut, queries, seed=0)
    cold = rp.Stream(
        stream.train, stream.events, stream.queries[stream.cold], stream.cold[stream.cold]
    )
    results: dict[str, dict[str, float]] = {}
    for name, (recipe, params) in RECIPES.items():
        for weight in (0.0, 1.0):
            label = f"{name} + context" if weight else name
            log(f"  {label}")
            model = RecipeModel(label, recipe, params, context_weight=weight)
            everyone = rp.run([model], data, stream, contexts=contexts)[label]
            strangers = (
                rp.run([model], data, cold, contexts=contexts)[label] if len(cold.queries) else {}
            )
            results[label] = {
                "hr@10": everyone["hr@10"],
                "mrr@20": everyone["mrr@20"],
                "cold hr@10": strangers.get("hr@10", float("nan")),
                "cold mrr@20": strangers.get("mrr@20", float("nan")),
                "queries": everyone["sampled"],
                "cold queries": float(len(cold.queries)),
                "replay_s": everyone["replay_s"],
            }
    return results


def gain(results: dict[str, dict[str, float]], name: str, metric: str) -> float:
    base, ctx = results[name][metric], results[f"{name} + context"][metric]
    return (ctx - base) / base * 100 if base > 0 else float("nan")


def markdown(
    runs: dict[str, dict[str, dict[str, float]]], args: argparse.Namespace, wall: float
) -> str:
    lines = [
        "# Context: does the request's device help?",
        "",
        f"`python bench/context.py --users {args.users} --days {args.days} "
        f"--effects {args.effects}` "
        f"({wall:.0f} s). Replay protocol (fit before the last {HOLDOUT:.0%} of the time, "
        "then every later event fed in order; before a sampled first touch of an item, the "
        "reader's top 20). Each recipe is run twice in the same run: fed and asked without "
        "contexts (the baseline) and with them (`context_weight` 1). *cold*: queries of "
        "readers with nothing read before (where only trending can help); there are few "
        "of them, so their columns are noisy. With 5,000 queries a change in MRR@20 under "
        "about 2 % is within noise.",
        "",
    ]
    for title, results in runs.items():
        lines += [
            f"## {title}",
            "",
            "| model | HR@10 | MRR@20 | cold HR@10 | cold MRR@20 |",
            "|---|---:|---:|---:|---:|",
        ]
        for label, r in results.items():
            cells = (r["hr@10"], r["mrr@20"], r["cold hr@10"], r["cold mrr@20"])
            lines.append(f"| {label} | " + " | ".join(f"{v:.4f}" for v in cells) + " |")
        any_run = next(iter(results.values()))
        lines += [
            "",
            f"{any_run['queries']:.0f} queries, {any_run['cold queries']:.0f} of them cold. "
            "Change with contexts, MRR@20 (all / cold): "
            + "; ".join(
                f"{name} {gain(results, name, 'mrr@20'):+.1f} % / "
                f"{gain(results, name, 'cold mrr@20'):+.1f} %"
                for name in RECIPES
            ),
            "",
        ]
    lines += [
        "The synthetic blog is clickrec's own generator (`BlogSpec.device_effect`: the spread "
        "of per-device section tastes, in log odds); the shared real data sets carry no "
        "context, so this measures the mechanism, not a promise about a given site. Where "
        "the context carries no signal (`effect 0`), the change shows what it costs.",
        "",
    ]
    return "\n".join(lines)


def plot(runs: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, (title, results) in zip(axes[0], runs.items(), strict=True):
        names = list(RECIPES)
        x = np.arange(len(names))
        for k, (suffix, metric) in enumerate(
            (
                ("", "mrr@20"),
                (" + context", "mrr@20"),
                ("", "cold mrr@20"),
                (" + context", "cold mrr@20"),
            )
        ):
            values = [results[n + suffix][metric] for n in names]
            ax.bar(x + (k - 1.5) * 0.2, values, 0.2, label=f"{metric}{suffix or ' (no context)'}")
        ax.set_xticks(x, [n.replace("user-personalization", "up") for n in names], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("MRR@20")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument(
        "--effects", default="2,0.8,0", help="device effects to run, comma-separated"
    )
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out-md", type=Path, default=DOCS / "context.md")
    parser.add_argument("--out-png", type=Path, default=DOCS / "context.png")
    args = parser.parse_args()
    started = time.perf_counter()
    runs = {}
    for effect in [float(e) for e in args.effects.split(",")]:
        title = f"device effect {effect:g} ({args.users} readers, {args.days} days)"
        log(title)
        data, contexts = dataset(args.users, args.days, effect, args.seed)
        runs[title + f", {len(data):,} events"] = evaluate(data, contexts, args.queries)
    text = markdown(runs, args, time.perf_counter() - started)
    print(text)
    args.out_md.write_text(text)
    plot(runs, args.out_png)


if __name__ == "__main__":
    main()
