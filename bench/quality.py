"""Recommendation quality: clickrec's recipes against baselines, on the same splits.

Data sets: MovieLens latest-small (temporal holdout + replay), YOOCHOOSE 100k (session
next click + replay, sessions as readers), the synthetic blog at three sizes (temporal
+ replay) and the synthetic news site (``BlogSpec.news``, temporal + replay), with its
catalog and without. Every model, clickrec's included, is tuned on a validation cut carved
from the training part only (the same protocol, one step earlier), with the same budget:
the configurations listed in ``specs()``, at most six each. The best configuration is then
refitted on the whole training part and scored once on the test part.

Writes docs/quality.md and docs/quality.png (bench/out with --small), and the raw figures
to bench/out/quality.json.

    .venv/bin/python bench/quality.py [--small] [--datasets ml,yoochoose,blog-s,news,...]
    .venv/bin/python bench/quality.py --render bench/out/quality.json  # report only
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: implicit wants 1 BLAS thread

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
from common import BENCH_DIR, OUT_DIR, catalog_columns, log, machine  # noqa: E402

from clickrec.evaluation import replay as rp  # noqa: E402
from clickrec.evaluation.baselines import (  # noqa: E402
    ALSFoldIn,
    BPRFoldIn,
    ItemKNN,
    LivePopularity,
    RandomItems,
)
from clickrec.evaluation.live import LiveModel, RecipeModel  # noqa: E402
from clickrec.evaluation.split import holdout  # noqa: E402
from clickrec.importing import InteractionColumns  # noqa: E402
from clickrec.models.base import Interactions, RecipeParams  # noqa: E402
from clickrec.testing.synthetic import BlogSpec, generate_blog  # noqa: E402
from clickrec.training.dataset import to_interactions, training_table  # noqa: E402
from clickrec.training.offline import ALL_TIME_HOURS, load_dataset  # noqa: E402
from clickrec.training.pipeline import candidates  # noqa: E402

ROOT = BENCH_DIR.parent
DATA = ROOT.parent / "shared" / "data"
HOLDOUT = 0.1  # share of event time (temporal, replay) or of sessions (validation next click)
HEADLINE = {"replay": "mrr@20", "next-click": "mrr@20", "temporal": "ndcg@10"}
SHOWN = {
    "replay": ("hr@5", "hr@10", "hr@20", "mrr@5", "mrr@10", "mrr@20"),
    "next-click": ("hr@5", "hr@10", "hr@20", "mrr@10", "mrr@20"),
    "temporal": ("ndcg@10", "precision@10", "recall@10", "mrr@20", "hit_rate@20"),
}
BLOG_USERS = {"blog-s": 500, "blog-m": 2000, "blog-l": 8000}
SMALL_BLOG_USERS = {"blog-s": 150, "blog-m": 300, "blog-l": 600}
# The news preset (BlogSpec.news: shaped like a real news stream, docs/news_stats.md) as
# (users, days), with the catalog and told interactions only.
NEWS_SIZE = {"news": (2500, 335), "news-bare": (2500, 335)}
SMALL_NEWS_SIZE = {"news": (800, 120), "news-bare": (800, 120)}
DATASETS = ("ml", "yoochoose", *BLOG_USERS, *NEWS_SIZE)


@dataclass(frozen=True)
class Budget:
    """How many queries each protocol asks, on the test part and on validation."""

    events: int = 5000  # replay: first touches asked
    val_events: int = 2000
    sessions: int = 5000  # next click: sessions whose clicks are predicted
    val_sessions: int = 2000
    readers: int = 2000  # temporal: test readers ranked
    val_readers: int = 2000
    share: float = 1.0  # of the readers (sessions) of the public data sets kept


SMALL = Budget(300, 100, 100, 40, 300, 300, 0.2)


# -- the models and their tuning budgets ------------------------------------------------------
Config = dict[str, Any]


@dataclass(frozen=True)
class Spec:
    """A model family: its configurations (tried on validation) and how to build one."""

    name: str
    configs: list[Config]
    make: Callable[[str, Config, Catalog], LiveModel]


@dataclass(frozen=True)
class Catalog:
    """What a site's catalog tells the engine about the data set's items, in item-index
    order: publication times (NaN: unknown) and categories. Only clickrec's recipes use
    it, as serving does; the baselines see interactions only."""

    published_at: np.ndarray | None = None
    categories: list[list[str]] | None = None


def recipe(kind: str) -> Callable[[str, Config, Catalog], LiveModel]:
    def make(name: str, c: Config, catalog: Catalog) -> LiveModel:
        serving = {"trending_half_life_hours", "history_length"}
        params = replace(RecipeParams(), **{k: v for k, v in c.items() if k not in serving})
        return RecipeModel(
            name,
            kind,
            params,
            trending_half_life_hours=c.get("trending_half_life_hours", 6.0),
            history_length=c.get("history_length", 50),
            published_at=catalog.published_at,
            categories=catalog.categories,
        )

    return make


HALF_LIVES = [1.0, 6.0, 24.0, 168.0, 720.0, 8760.0]  # an hour to a year
SERVING_TRENDING_HOURS = 6.0  # serving.trending_half_life_hours's default
CHOSEN = "clickrec (auto: the pipeline's choice)"
# The same, told nothing by the catalog (no categories, no publication times): how much of
# the lead comes from what the site says about its items.
CHOSEN_BARE = "clickrec (auto, interactions only)"


def pipeline_candidate(name: str, c: Config, catalog: Catalog) -> LiveModel:
    """One of the training pipeline's own candidates, as serving runs it."""
    cand = next(k for k in candidates(RecipeParams()) if k.name == c["candidate"])
    return RecipeModel(
        name,
        cand.recipe,
        cand.params,
        trending_half_life_hours=SERVING_TRENDING_HOURS,
        published_at=catalog.published_at,
        categories=catalog.categories,
    )


def specs() -> list[Spec]:
    all_time = {"half_life_hours": ALL_TIME_HOURS, "trending_half_life_hours": ALL_TIME_HOURS}
    return [
        # The pipeline's candidates (six), chosen on validation: what the engine serves.
        Spec(
            CHOSEN,
            [{"candidate": k.name} for k in candidates(RecipeParams())],
            pipeline_candidate,
        ),
        Spec(
            CHOSEN_BARE,
            [{"candidate": k.name} for k in candidates(RecipeParams())],
            lambda n, c, _: pipeline_candidate(n, c, Catalog()),
        ),
        Spec(
            "clickrec trending-now",
            [{"trending_half_life_hours": h} for h in HALF_LIVES],
            recipe("trending-now"),
        ),
        Spec("clickrec user-personalization (defaults)", [{}], recipe("user-personalization")),
        Spec("clickrec popularity-count (all-time)", [all_time], recipe("popularity-count")),
        Spec(
            "live trending",
            [{"half_life_hours": h} for h in HALF_LIVES],
            lambda n, c, _: LivePopularity(n, **c),
        ),
        # Live trending at 1, 6 and 24 h, untuned: what a site showing a plain trending
        # list gets, whichever half-life the validation would pick.
        *(
            Spec(
                f"live trending {h:g} h",
                [{"half_life_hours": h}],
                lambda n, c, _: LivePopularity(n, **c),
            )
            for h in (1.0, 6.0, 24.0)
        ),
        Spec("popularity (all-time)", [{}], lambda n, c, _: LivePopularity(n)),
        Spec("random", [{}], lambda n, c, _: RandomItems(n)),
        Spec(
            "ALS (fold-in)",
            [
                {"factors": f, "regularization": r, "alpha": a}
                for f, r, a in [
                    (32, 0.01, 1.0),
                    (64, 0.05, 1.0),
                    (64, 0.05, 10.0),
                    (128, 0.1, 1.0),
                    (128, 0.1, 10.0),
                    (128, 1.0, 40.0),
                ]
            ],
            lambda n, c, _: ALSFoldIn(n, **c),
        ),
        Spec(
            "BPR (fold-in)",
            [
                {"factors": f, "learning_rate": lr, "regularization": r, "iterations": it}
                | ({"recent": recent} if recent else {})
                for f, lr, r, it, recent in [
                    (64, 0.01, 0.01, 100, None),
                    (64, 0.05, 0.01, 100, None),
                    (128, 0.05, 0.01, 200, None),
                    (64, 0.05, 0.001, 100, 20),
                    (128, 0.01, 0.001, 200, None),
                    (32, 0.1, 0.01, 100, None),
                ]
            ],
            lambda n, c, _: BPRFoldIn(n, **c),
        ),
        Spec(
            "item-kNN cosine",
            [{"neighbours": k} for k in (10, 20, 50, 100, 200, 500)],
            lambda n, c, _: ItemKNN(n, "cosine", **c),
        ),
        Spec(
            "item-kNN BM25",
            [{"neighbours": k, "bm25_b": b} for b in (0.75, 0.2) for k in (20, 100, 500)],
            lambda n, c, _: ItemKNN(n, "bm25", **c),
        ),
    ]


# -- data sets -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    data: Interactions
    protocols: tuple[str, ...]
    note: str
    test_sessions: np.ndarray | None = None  # bool per event (next click): test sessions
    catalog: Catalog = Catalog()


def keep_share(table: pa.Table, column: str, share: float, seed: int = 0) -> pa.Table:
    """Rows of a random ``share`` of the distinct values of ``column`` (a subsample)."""
    values = pc.unique(table.column(column))
    rng = np.random.default_rng(seed)
    kept = values.take(pa.array(np.flatnonzero(rng.random(len(values)) < share)))
    return table.filter(pc.is_in(table.column(column), value_set=kept))


def movielens(share: float) -> Dataset:
    table = load_dataset(
        DATA / "ml_latest_small" / "ratings.csv", InteractionColumns(), "movielens"
    )
    if share < 1.0:
        table = keep_share(table, "user_id", share)
    data = to_interactions(training_table(table))
    movies = pacsv.read_csv(
        DATA / "ml_latest_small" / "movies.csv",
        convert_options=pacsv.ConvertOptions(column_types={"movieId": pa.string()}),
    )
    return Dataset(
        "ml",
        "MovieLens latest-small",
        data,
        ("temporal", "replay"),
        "every rating is an interaction (implicit feedback, whatever the score); "
        "sessions are user + UTC day; the catalog gives genres as categories",
        catalog=Catalog(
            categories=catalog_columns(
                movies, data.item_ids, "movieId", None, "genres", "(no genres listed)"
            )[1]
        ),
    )


def yoochoose(share: float) -> Dataset:
    folder = DATA / "yoochoose_100k"
    cols = InteractionColumns()
    train = load_dataset(folder / "yoochoose-clicks-100k_train_full.txt", cols, "session")
    test = load_dataset(folder / "yoochoose-clicks-100k_test.txt", cols, "session")
    if share < 1.0:
        train, test = keep_share(train, "session_id", share), keep_share(test, "session_id", share)
    both = pa.concat_tables([train, test])
    data = to_interactions(training_table(both))
    test_readers = pc.binary_join_element_wise("s:", pc.unique(test.column("session_id")), "")
    is_test = np.isin(data.reader_ids, np.asarray(test_readers.to_pylist(), dtype=str))
    return Dataset(
        "yoochoose",
        "YOOCHOOSE clicks 100k",
        data,
        ("next-click", "replay"),
        "every session is an anonymous reader; next click: the given train/test files; "
        "replay: the cut is the first test click",
        test_sessions=is_test[data.reader],
    )


def blog(name: str, users: int) -> Dataset:
    spec = BlogSpec(users=users, seed=11)
    made = generate_blog(spec)
    data = to_interactions(training_table(made.interactions))
    return Dataset(
        name,
        f"synthetic blog, {users} users",
        data,
        ("temporal", "replay"),
        f"clickrec.testing.synthetic, {spec.days} days, {spec.posts_per_day} posts a day, "
        f"post half-life {spec.half_life_hours:g} h, seed {spec.seed}; the catalog gives "
        "publication times and categories",
        catalog=Catalog(*catalog_columns(made.items, data.item_ids)),
    )


def news(name: str, users: int, days: int) -> Dataset:
    """The news preset; ``news-bare`` tells clickrec nothing of its catalog."""
    spec = BlogSpec.news(users=users, days=days, seed=11)
    made = generate_blog(spec)
    data = to_interactions(training_table(made.interactions))
    bare = name.endswith("-bare")
    return Dataset(
        name,
        f"synthetic news site, {users} users, {days} days"
        + (", interactions only" if bare else ""),
        data,
        ("temporal", "replay"),
        f"clickrec.testing.synthetic BlogSpec.news, {spec.posts_per_day} posts a day, most "
        f"reads hours after publication and a long tail, likes, bookmarks and comments after "
        f"reads, seed {spec.seed}; "
        + (
            "the catalog is withheld from every model"
            if bare
            else "the catalog gives publication times and categories"
        ),
        catalog=Catalog() if bare else Catalog(*catalog_columns(made.items, data.item_ids)),
    )


# -- protocols: validation inside the training part, then the test ------------------------
@dataclass(frozen=True)
class Task:
    """One protocol on one data set: a scorer of models, and the same one a step earlier."""

    score: Callable[[list[LiveModel]], dict[str, dict[str, float]]]
    validate: Callable[[list[LiveModel]], dict[str, dict[str, float]]]
    facts: dict[str, float]


def replay_task(ds: Dataset, budget: Budget) -> Task:
    data = ds.data
    if ds.test_sessions is not None:
        cut = float(data.timestamp[ds.test_sessions].min())
    else:
        cut = float(np.quantile(data.timestamp, 1.0 - HOLDOUT))
    stream = rp.first_touches(data, cut, budget.events, seed=0)
    seen = np.zeros(data.n_items, dtype=bool)
    seen[data.item[stream.train]] = True
    targets = data.item[stream.events[stream.queries]]
    val = data.subset(stream.train)
    val_cut = float(np.quantile(val.timestamp, 1.0 - HOLDOUT))
    val_stream = rp.first_touches(val, val_cut, budget.val_events, seed=1)
    return Task(
        lambda models: rp.run(models, data, stream),
        lambda models: rp.run(models, val, val_stream),
        {
            "sampled": float(len(stream.queries)),
            "replayed": float(len(stream.events)),
            "cold_share": float(stream.cold.mean()),
            "new_item_share": float((~seen[targets]).mean()),
            "val_sampled": float(len(val_stream.queries)),
        },
    )


def next_click_task(ds: Dataset, budget: Budget) -> Task:
    assert ds.test_sessions is not None
    data = ds.data
    stream = rp.session_clicks(data, ds.test_sessions, budget.sessions, seed=0)
    val = data.subset(~ds.test_sessions)
    late = rp.late_sessions(val, HOLDOUT)
    val_stream = rp.session_clicks(val, late, budget.val_sessions, seed=1)
    return Task(
        lambda models: rp.run(models, data, stream),
        lambda models: rp.run(models, val, val_stream),
        {
            "sampled": float(len(stream.queries)),
            "replayed": float(len(stream.events)),
            "val_sampled": float(len(val_stream.queries)),
        },
    )


def temporal_task(ds: Dataset, budget: Budget) -> Task:
    """The former training pipeline's holdout (``evaluation.split.holdout``): a time cut, or each
    recent reader's last event where fewer than 50 readers span the cut."""
    data = ds.data
    split, kind = holdout(data, HOLDOUT)
    val = data.subset(split.train)
    val_split, val_kind = holdout(val, HOLDOUT)
    return Task(
        lambda models: rp.holdout(models, data, split, budget.readers),
        lambda models: rp.holdout(models, val, val_split, budget.val_readers, seed=1),
        {
            "test_readers": float(min(budget.readers, len(split.test_readers))),
            "val_readers": float(min(budget.val_readers, len(val_split.test_readers))),
            "last_event": float(kind == "last-event"),
            "val_last_event": float(val_kind == "last-event"),
        },
    )


def evaluate(task: Task, protocol: str, label: str, catalog: Catalog) -> dict[str, Any]:
    """Tune every spec on validation, refit the best on the whole training part, score."""
    metric = HEADLINE[protocol]
    out: dict[str, Any] = {}
    for spec in specs():
        started = time.perf_counter()
        tried: list[dict[str, Any]] = []
        best = spec.configs[0]
        if len(spec.configs) > 1:
            models = [
                spec.make(f"{spec.name} #{i}", c, catalog) for i, c in enumerate(spec.configs)
            ]
            val = task.validate(models)
            tried = [
                {"config": c, metric: val[m.name][metric]}
                for c, m in zip(spec.configs, models, strict=True)
            ]
            best = max(tried, key=lambda t: t[metric])["config"]
        test = task.score([spec.make(spec.name, best, catalog)])[spec.name]
        elapsed = time.perf_counter() - started
        log(f"{label} {protocol:10s} {spec.name:42s} {metric} {test[metric]:.4f}  ({elapsed:.1f}s)")
        out[spec.name] = {"config": best, "validation": tried, "test": test, "seconds": elapsed}
    return out


# -- the report ------------------------------------------------------------------------------
def config_text(config: Config) -> str:
    short = {
        "trending_half_life_hours": "trend½",
        "half_life_hours": "½",
        "trending_weight": "tw",
        "history_half_life": "hist½",
        "history_length": "hist",
        "personal_weight": "pw",
        "blend": "blend",
        "regularization": "reg",
        "learning_rate": "lr",
        "iterations": "it",
        "neighbours": "K",
        "bm25_b": "B",
    }
    if not config:
        return "defaults"

    def text(v: Any) -> str:
        if isinstance(v, str):
            return v
        return "all-time" if v >= ALL_TIME_HOURS else f"{v:g}"

    return ", ".join(f"{short.get(k, k)} {text(v)}" for k, v in config.items())


def metric_table(results: dict[str, Any], shown: tuple[str, ...]) -> list[str]:
    best = {k: max(r["test"][k] for r in results.values()) for k in shown}
    lines = [
        "| model | " + " | ".join(shown) + " | fit s | ms/answer | tuned config |",
        "| --- | " + " | ".join("---:" for _ in shown) + " | ---: | ---: | --- |",
    ]
    for name, r in results.items():
        cells = []
        for k in shown:
            v = r["test"][k]
            text = f"{v:.4f}"
            cells.append(f"**{text}**" if v == best[k] and v > 0 else text)
        cells += [f"{r['test'].get('fit_s', 0.0):.1f}", f"{answer_ms(r['test']):.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {config_text(r['config'])} |")
    return lines


def answer_ms(test: dict[str, float]) -> float:
    """Milliseconds per answer on the test part: the replay's time (every event fed, every
    query asked) or the holdout's ranking time, over the questions asked."""
    asked = test.get("sampled") or test.get("test_readers") or 1.0
    return 1000.0 * test.get("replay_s", test.get("rank_s", 0.0)) / asked


def protocol_line(protocol: str, facts: dict[str, float]) -> str:
    if protocol == "replay":
        return (
            f"Replay: {facts['replayed']:,.0f} events after the cut fed to every model in time "
            f"order; {facts['sampled']:,.0f} first touches asked "
            f"({facts['cold_share']:.1%} by readers with nothing before them"
            + (
                f"; {facts['new_item_share']:.1%} of items no model was fitted on"
                if "new_item_share" in facts
                else ""
            )
            + "); validation "
            f"{facts['val_sampled']:,.0f}."
        )
    if protocol == "next-click":
        return (
            f"Next click: {facts['replayed']:,.0f} test clicks replayed, "
            f"{facts['sampled']:,.0f} predicted (a repeat of a session's item is a miss); "
            f"validation {facts['val_sampled']:,.0f}."
        )
    how = (
        "too few readers span the time cut, so the pipeline holds out each recent reader's "
        "last event (if new to them); everything else trains"
        if facts["last_event"]
        else "fit before the time cut, the items each reader touched first after it are the targets"
    )
    return (
        f"Temporal holdout (the training pipeline's own): {how}; "
        f"{facts['test_readers']:,.0f} test readers; validation {facts['val_readers']:,.0f}."
    )


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Recommendation quality",
        "",
        f"Written by `bench/quality.py{' --small' if report['small'] else ''}` on "
        f"{report['machine']['when']} ({report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}) in {report['seconds'] / 60:.1f} min. Do not edit.",
        "",
        "Every model sees the same split. **replay**: fit before a global time cut at 90% "
        "of event time, then every later event is fed to each model in time order, as "
        "live traffic; before each sampled event that is a reader's first touch of an item "
        "the model ranks the full catalog for that reader (everything the reader touched "
        "excluded, for every model) and it is a hit if the item is in the top k. "
        "**next-click**: the same over test sessions, before each click after a session's "
        "first. **temporal**: fit before the cut, rank once per reader active on both sides, "
        "score the items new to them after it. Each model is tuned on the same protocol "
        "one step earlier, inside the training part (its last 10%), choosing among at most "
        "six configurations listed in `bench/quality.py` by the headline metric "
        "(replay MRR@20, next-click MRR@20, temporal NDCG@10); the choice is refitted on the "
        "whole training part. Baselines with nothing to say for a reader (no history, few "
        "scored items) fill their list with all-time popular items. Best per column in bold. "
        "**fit s**: fitting on the training part; **ms/answer**: the test's time over its "
        "questions (for replay and next click it includes feeding every event, as serving "
        "does), on this machine, single-threaded BLAS.",
        "",
        "## Headline",
        "",
    ]
    cols = [(d, p) for d, r in report["datasets"].items() for p in r["protocols"]]
    lines.append("| model | " + " | ".join(f"{d} {p} {HEADLINE[p]}" for d, p in cols) + " |")
    lines.append("| --- | " + " | ".join("---:" for _ in cols) + " |")
    names = [
        n
        for n in specs_names()
        if all(n in p for r in report["datasets"].values() for p in r["protocols"].values())
    ]
    best = {
        (d, p): max(r["test"][HEADLINE[p]] for r in report["datasets"][d]["protocols"][p].values())
        for d, p in cols
    }
    for name in names:
        cells = []
        for d, p in cols:
            v = report["datasets"][d]["protocols"][p][name]["test"][HEADLINE[p]]
            cells.append(f"**{v:.4f}**" if v == best[(d, p)] else f"{v:.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Margin of the pipeline's choice over the best baseline (the target is +10 %):",
        "",
    ]
    lines += [f"- {line}" for line in margin_lines(report)]
    for d, r in report["datasets"].items():
        c = r["counts"]
        lines += [
            "",
            f"## {r['title']} (`{d}`)",
            "",
            f"{c['users']:,} readers, {c['items']:,} items, {c['events']:,} events ({r['note']}).",
        ]
        for p, results in r["protocols"].items():
            lines += ["", f"### {p}", "", protocol_line(p, r["facts"][p]), ""]
            lines += metric_table(results, SHOWN[p])
    return "\n".join(lines) + "\n"


def print_headline(report: dict[str, Any]) -> None:
    """The report's headline table and margins, on standard output."""
    text = markdown(report)
    start = text.index("## Headline")
    end = text.find("\n## ", start + 1)
    print(text[start : end if end >= 0 else len(text)].rstrip() + "\n", flush=True)


def margin_lines(report: dict[str, Any]) -> list[str]:
    """Per data set and protocol: the chosen candidate, its headline figure and how far it
    is ahead of the best baseline (every model whose name does not start with clickrec)."""
    out = []
    for d, r in report["datasets"].items():
        for p, results in r["protocols"].items():
            metric = HEADLINE[p]
            ours = results[CHOSEN]
            rivals = {
                k: v["test"][metric] for k, v in results.items() if not k.startswith("clickrec")
            }
            rival = max(rivals, key=lambda k: rivals[k])

            line = (
                f"{d} {p} {metric}: {ours['test'][metric]:.4f} "
                f"(`{ours['config'].get('candidate', '?')}`) vs {rival} {rivals[rival]:.4f}: "
                f"**{gain(ours['test'][metric], rivals[rival])}**"
            )
            bare = results.get(CHOSEN_BARE)
            if bare is not None:
                v = bare["test"][metric]
                line += f"; interactions only {v:.4f} ({gain(v, rivals[rival])})"
            out.append(line)
    return out


def gain(value: float, rival: float) -> str:
    return f"{value / rival - 1.0:+.1%}" if rival > 0 else "n/a"


def specs_names() -> list[str]:
    return [s.name for s in specs()]


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(report["datasets"])
    names = [
        n
        for n in specs_names()
        if all(n in p for d in datasets for p in report["datasets"][d]["protocols"].values())
    ]
    panels = [
        ("replay MRR@20", [(d, "replay") for d in datasets]),
        (
            "the other protocol: next-click MRR@20 (yoochoose), temporal NDCG@10 (the others)",
            [
                (d, next(p for p in report["datasets"][d]["protocols"] if p != "replay"))
                for d in datasets
            ],
        ),
    ]
    fig, axes = plt.subplots(2, 1, figsize=(max(8.0, 2.2 * len(datasets)), 9.5))
    width = 0.8 / len(names)
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(names)))
    for ax, (title, cells) in zip(axes, panels, strict=True):
        for i, name in enumerate(names):
            values = [
                report["datasets"][d]["protocols"][p][name]["test"][HEADLINE[p]] for d, p in cells
            ]
            ax.bar(
                np.arange(len(cells)) + (i - len(names) / 2 + 0.5) * width,
                values,
                width,
                label=name,
                color=colours[i],
            )
        ax.set_xticks(np.arange(len(cells)), [f"{d}\n{p}" for d, p in cells])
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0.0, 0.09, 1.0, 1.0))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- main --------------------------------------------------------------------------------------
def load(name: str, small: bool, share: float) -> Dataset | None:
    users = SMALL_BLOG_USERS if small else BLOG_USERS
    if name in users:
        return blog(name, users[name])
    sizes = SMALL_NEWS_SIZE if small else NEWS_SIZE
    if name in sizes:
        return news(name, *sizes[name])
    needed = {"ml": DATA / "ml_latest_small", "yoochoose": DATA / "yoochoose_100k"}[name]
    if not needed.exists():
        log(f"{name}: {needed} is missing, skipped")
        return None
    return movielens(share) if name == "ml" else yoochoose(share)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="a quick check (~1 min)")
    parser.add_argument("--datasets", default=",".join(DATASETS), help=", ".join(DATASETS))
    parser.add_argument("--out", type=Path, default=None, help="docs (bench/out with --small)")
    parser.add_argument(
        "--render", type=Path, default=None, help="only rewrite the report from a raw JSON"
    )
    args = parser.parse_args()
    if args.render is not None:
        report = json.loads(args.render.read_text())
        out_dir = args.out or (OUT_DIR if report["small"] else ROOT / "docs")
        (out_dir / "quality.md").write_text(markdown(report))
        plot(report, out_dir / "quality.png")
        print_headline(report)
        return
    chosen = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = set(chosen) - set(DATASETS)
    if unknown:
        parser.error(f"unknown data sets {sorted(unknown)}; choose from {', '.join(DATASETS)}")
    out_dir: Path = args.out or (OUT_DIR if args.small else ROOT / "docs")
    budget = SMALL if args.small else Budget()
    started = time.perf_counter()
    report: dict[str, Any] = {"small": args.small, "machine": machine(), "datasets": {}}
    for name in chosen:
        ds = load(name, args.small, budget.share)
        if ds is None:
            continue
        data = ds.data
        counts = {"users": data.n_readers, "items": data.n_items, "events": len(data)}
        log(
            f"{name}: {counts['users']:,} readers, {counts['items']:,} items, "
            f"{counts['events']:,} events"
        )
        entry: dict[str, Any] = {
            "title": ds.title,
            "note": ds.note,
            "counts": counts,
            "protocols": {},
            "facts": {},
        }
        for protocol in ds.protocols:
            make_task = {
                "replay": replay_task,
                "next-click": next_click_task,
                "temporal": temporal_task,
            }[protocol]
            task = make_task(ds, budget)
            entry["facts"][protocol] = task.facts
            entry["protocols"][protocol] = evaluate(task, protocol, name, ds.catalog)
        report["datasets"][name] = entry
    report["seconds"] = time.perf_counter() - started
    if not report["datasets"]:
        raise SystemExit("no data set to evaluate")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    raw = OUT_DIR / ("quality-small.json" if args.small else "quality.json")
    raw.write_text(json.dumps(report, indent=1, default=float) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quality.md").write_text(markdown(report))
    plot(report, out_dir / "quality.png")
    print_headline(report)
    log(
        f"done in {report['seconds'] / 60:.1f} min: {out_dir / 'quality.md'}, "
        f"{out_dir / 'quality.png'}, {raw}"
    )


if __name__ == "__main__":
    main()
