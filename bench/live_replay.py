"""Quality the way users see it: a real `clickrec serve` fed a clickstream through its HTTP API.

The protocol of the evaluator in issue 12: the engine is trained at a time cut
(POST /v1/training-runs, waited for), every later event is sent in time order through
POST /v1/events with its original time, the engine retrains every few days of event time
(POST + wait), and just before each sampled first touch of an item by a reader the served
list for that reader is asked for (GET /v1/recommendations, 20 items). MRR@20 and HR@20 of
the touched item, beside a plain live-trending list computed here on the same stream
(exponentially decayed counts of every event, 1 h, 6 h and 24 h half-lives, the reader's
own touched items excluded).

    .venv/bin/python bench/live_replay.py [--datasets blog,blog-bare,news,ml,yoochoose]
        [--max-queries 1000] [--retrain-days 3] [--max-retrains N] [--cut 0.8] [--merge]
    .venv/bin/python bench/live_replay.py --render bench/out/live_replay.json  # report only

Writes bench/out/live_replay.json and docs/live_replay.md (the text between the notes
markers of an existing docs/live_replay.md is kept: the analysis of a run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from common import BENCH_DIR, OUT_DIR, Home, Server, log, machine

from clickrec.importing import InteractionColumns
from clickrec.testing.synthetic import BlogSpec, generate_blog
from clickrec.training.offline import load_dataset

ROOT = BENCH_DIR.parent
DATA = ROOT.parent / "shared" / "data"
DOC = ROOT / "docs" / "live_replay.md"
JSON_OUT = OUT_DIR / "live_replay.json"
DATASETS = ("blog", "blog-bare", "news", "ml", "yoochoose")
K = 20
HALF_LIVES = (1.0, 6.0, 24.0)  # the evaluator's live trending lists
# Also computed, for the diagnosis only: every half-life the engine's candidates may serve.
TRACKED = (1.0, 3.0, 6.0, 12.0, 24.0)
DAY = 86400.0
LOAD_BATCH = 1000  # events per POST before the cut: the API's most, as the evaluator sent
STREAM_BATCH = 1000  # at most, after it; usually the few events between two queries
WAIT_S = 300  # the API's longest long poll; asked again until the run has ended
ML_MAX_RETRAINS = 4  # ~20 s each: MovieLens's years after the cut are not a news stream
TRAIN_INTERVAL_S = 1.0  # how often the server's worker looks for a POSTed run
NOTES = ("<!-- notes -->", "<!-- /notes -->")


# -- the data sets -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Clickstream:
    """A data set as a site would send it: its events in time order and its catalog."""

    name: str
    title: str
    note: str
    events: pa.Table  # user_id (null: anonymous), session_id, item_id, event_type, timestamp
    items: list[dict[str, Any]] = field(default_factory=list)  # PUT /v1/items records
    anonymous: bool = False  # the readers are sessions, asked for by session_id
    max_retrains: int | None = None  # a longer stream stretches the retraining interval


def split_list(value: str | None, none: str = "") -> list[str]:
    """An "a|b" cell as a list (``none``, a data set's "nothing" marker, is no value)."""
    return [v for v in (value or "").split("|") if v and v != none]


def blog_items(items: pa.Table) -> list[dict[str, Any]]:
    """The synthetic catalog as PUT /v1/items records (publication times in Unix seconds)."""
    return [
        {
            "item_id": r["item_id"],
            "published_at": r["published_at"],
            "categories": split_list(r["categories"]),
            "tags": split_list(r["tags"]),
            "author": r["author"],
            "title": r["title"],
            "text": r["text"],
            "url": r["url"],
        }
        for r in items.to_pylist()
    ]


def blog(bare: bool) -> Clickstream:
    spec = BlogSpec(users=2000, seed=11)
    made = generate_blog(spec)
    return Clickstream(
        "blog-bare" if bare else "blog",
        f"synthetic blog, {spec.users:,} readers, {spec.days} days"
        + (", no catalog" if bare else ""),
        f"`generate_blog(BlogSpec(users={spec.users}, seed={spec.seed}))`: "
        f"{spec.posts_per_day} posts a day, post half-life {spec.half_life_hours:g} h; "
        + (
            "no catalog is sent"
            if bare
            else "the catalog (publication times, categories, tags, titles, texts) is sent "
            "through PUT /v1/items, each post when the stream reaches its publication time"
        ),
        made.interactions,
        [] if bare else blog_items(made.items),
    )


def news() -> Clickstream | None:
    preset = getattr(BlogSpec, "news", None)
    if preset is None:
        return None
    spec = preset(seed=11)
    made = generate_blog(spec)
    return Clickstream(
        "news",
        f"synthetic news site (`BlogSpec.news`), {spec.users:,} readers, {spec.days} days",
        f"`generate_blog(BlogSpec.news(seed={spec.seed}))`, shaped like the evaluator's news "
        "stream (docs/news_stats.md): most posts fade in hours, likes, bookmarks and "
        "comments follow reads; the catalog is sent through PUT /v1/items, each post when "
        "the stream reaches its publication time",
        made.interactions,
        blog_items(made.items),
    )


def movielens() -> Clickstream | None:
    folder = DATA / "ml_latest_small"
    if not folder.exists():
        return None
    events = load_dataset(folder / "ratings.csv", InteractionColumns(), "movielens")
    movies = pacsv.read_csv(
        folder / "movies.csv",
        convert_options=pacsv.ConvertOptions(column_types={"movieId": pa.string()}),
    )
    items = [
        {
            "item_id": m["movieId"],
            "title": m["title"],
            "categories": split_list(m["genres"], "(no genres listed)"),
        }
        for m in movies.to_pylist()
    ]
    return Clickstream(
        "ml",
        "MovieLens latest-small",
        "../shared/data/ml_latest_small/ratings.csv: every rating is an event of type "
        "`rating` (implicit feedback, whatever the score), sessions are user + UTC day; "
        "movies.csv is the catalog (title, genres as categories, no publication times), "
        "sent before the stream; its 4.4 years after the cut would be 530 retrains at 3 days: "
        f"at most {ML_MAX_RETRAINS} by default (--max-retrains)",
        events.drop_columns(["seq"]),
        items,
        max_retrains=ML_MAX_RETRAINS,
    )


def yoochoose() -> Clickstream | None:
    folder = DATA / "yoochoose_100k"
    if not folder.exists():
        return None
    parts = [
        load_dataset(folder / f"yoochoose-clicks-100k_{part}.txt", InteractionColumns(), "session")
        for part in ("train_full", "test")
    ]
    events = pa.concat_tables(parts).drop_columns(["seq"])
    events = events.take(np.argsort(events["timestamp"].to_numpy(), kind="stable"))
    return Clickstream(
        "yoochoose",
        "YOOCHOOSE clicks 100k",
        "../shared/data/yoochoose_100k, both files in time order: anonymous clicks "
        "(session_id = SessionId, no user_id), each session a reader asked for by its "
        "session_id; no catalog",
        events,
        anonymous=True,
    )


def load(name: str) -> Clickstream | None:
    if name in ("blog", "blog-bare"):
        return blog(bare=name == "blog-bare")
    return {"news": news, "ml": movielens, "yoochoose": yoochoose}[name]()


# -- the replay plan -------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """The replay as positions in the event table (which is in time order)."""

    times: np.ndarray
    reader: np.ndarray  # reader code per event
    item: np.ndarray  # item code per event
    reader_ids: np.ndarray
    item_ids: np.ndarray
    cut: float
    start: int  # the first event at or after the cut
    queries: np.ndarray  # sorted positions of the sampled first touches after the cut
    first_touches: int  # how many there were before sampling


def plan(stream: Clickstream, cut: float, max_queries: int, seed: int = 0) -> Plan:
    """Readers and items as codes; ``cut`` is a share of the events (< 1) or Unix seconds."""
    events = stream.events
    times = events["timestamp"].to_numpy()
    who = events["session_id" if stream.anonymous else "user_id"].to_numpy(zero_copy_only=False)
    reader_ids, reader = np.unique(who.astype(str), return_inverse=True)
    what = events["item_id"].to_numpy(zero_copy_only=False).astype(str)
    item_ids, item = np.unique(what, return_inverse=True)
    at = float(times[int(len(times) * cut)]) if cut < 1 else cut
    start = int(np.searchsorted(times, at, side="left"))
    keys = reader.astype(np.int64) * len(item_ids) + item
    _, first = np.unique(keys, return_index=True)
    touches = np.sort(first[first >= start])
    if len(touches) > max_queries:
        touches = np.sort(np.random.default_rng(seed).choice(touches, max_queries, replace=False))
    n = int(np.sum(first >= start))
    return Plan(times, reader, item, reader_ids, item_ids, at, start, touches, n)


class LiveTrending:
    """Exponentially decayed counts of every event per item, as of the newest event fed."""

    def __init__(self, n_items: int, half_life_hours: float) -> None:
        self.rate = math.log(2.0) / (half_life_hours * 3600.0)
        self.score = np.zeros(n_items)
        self.now: float | None = None

    def feed(self, items: np.ndarray, times: np.ndarray) -> None:
        if len(items) == 0:
            return
        end = float(times[-1])
        if self.now is not None:
            self.score *= math.exp(-self.rate * (end - self.now))
        np.add.at(self.score, items, np.exp(-self.rate * (end - times)))
        self.now = end

    def top(self, k: int, exclude: list[int]) -> np.ndarray:
        """The ``k`` items with the highest decayed counts (ties: lower code), none of
        ``exclude``, none never seen (a list may be shorter than ``k``)."""
        score = self.score.copy()
        score[exclude] = 0.0
        live = np.flatnonzero(score > 0.0)
        if len(live) > k:
            live = live[np.argpartition(-score[live], k)[:k]]
        return live[np.lexsort((live, -score[live]))]


# -- the server --------------------------------------------------------------------------------
class Api:
    """The calls of the replay, on one keep-alive connection."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(
            base_url=server.url, headers=server.headers(), timeout=WAIT_S + 60.0
        )
        self.events_sent = 0

    def close(self) -> None:
        self.client.close()

    def _checked(self, response: httpx.Response) -> Any:
        if response.status_code >= 300:
            raise RuntimeError(
                f"{response.request.method} {response.request.url.path}: "
                f"{response.status_code} {response.text[:500]}"
            )
        return response.json()

    def send_events(self, rows: list[dict[str, Any]]) -> None:
        body = json.dumps({"events": rows})
        answer = self._checked(self.client.post("/v1/events", content=body))
        if answer["accepted"] + answer["duplicates"] != len(rows):
            raise RuntimeError(f"POST /v1/events: {answer} for {len(rows)} events")
        self.events_sent += len(rows)

    def put_items(self, rows: list[dict[str, Any]]) -> None:
        for s in range(0, len(rows), 1000):
            self._checked(self.client.put("/v1/items", json={"items": rows[s : s + 1000]}))

    def recommend(self, reader: str, anonymous: bool) -> dict[str, Any]:
        who = "session_id" if anonymous else "user_id"
        params: dict[str, str | int] = {who: reader, "num_results": K}
        answer: dict[str, Any] = self._checked(
            self.client.get("/v1/recommendations", params=params)
        )
        return answer

    def train(self) -> dict[str, Any]:
        """POST a training run and wait until it has ended (and, if it published, until
        this server serves its model)."""
        run = self._checked(self.client.post("/v1/training-runs"))
        while run["state"] in ("pending", "running"):
            run = self._checked(
                self.client.get(f"/v1/training-runs/{run['id']}", params={"wait": WAIT_S})
            )
        return dict(run)

    def models(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._checked(self.client.get("/v1/models"))
        return answer

    def runs(self) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self._checked(self.client.get("/v1/training-runs"))["runs"]
        return runs


def run_summary(run: dict[str, Any], at: float, events: int, wall_s: float) -> dict[str, Any]:
    """What a training run said: its choice, its in-engine replay figures, publication."""
    m = run.get("metrics") or {}
    return {
        "event_time": at,
        "events_sent": events,
        "wall_s": round(wall_s, 2),
        "state": run["state"],
        "error": run.get("error"),
        "published": run.get("published"),
        "chosen": m.get("chosen"),
        "mrr@20": m.get("mrr@20"),
        "trending_mrr@20": m.get("trending_mrr@20"),
        "new_item_share": m.get("new_item_share"),
        "replay_queries": m.get("queries"),
        "window": m.get("window"),
        "candidates": {k: v.get("mrr@20") for k, v in (m.get("candidates") or {}).items()},
        "candidates_hr@20": {k: v.get("hr@20") for k, v in (m.get("candidates") or {}).items()},
        "gate": m.get("gate"),
    }


def live_model(models: dict[str, Any]) -> dict[str, Any]:
    """The live model's version, recipe and ``metrics.chosen`` from GET /v1/models."""
    for row in models["models"]:
        if row["live"]:
            m = row.get("metrics") or {}
            return {"version": row["version"], "recipe": row["recipe"], "chosen": m.get("chosen")}
    return {"version": None, "recipe": None, "chosen": None}


# -- one data set --------------------------------------------------------------------------
def rates(ranks: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float | int]:
    """MRR@K and HR@K of 1-based ranks (0: not listed), over ``mask`` if given."""
    r = ranks if mask is None else ranks[mask]
    if len(r) == 0:
        return {"n": 0, "mrr@20": float("nan"), "hr@20": float("nan")}
    hit = (r > 0) & (r <= K)
    return {
        "n": len(r),
        "mrr@20": float(np.where(hit, 1.0 / np.maximum(r, 1), 0.0).mean()),
        "hr@20": float(hit.mean()),
    }


def published_at(item: dict[str, Any]) -> float:
    when = item.get("published_at")
    return -math.inf if when is None else float(when)


def replay(stream: Clickstream, args: argparse.Namespace) -> dict[str, Any]:
    """Start a server in a fresh home, load, train, stream, ask, retrain; the figures."""
    p = plan(stream, args.cut, args.max_queries)
    rows = [{k: v for k, v in row.items() if v is not None} for row in stream.events.to_pylist()]
    items = sorted(stream.items, key=published_at)
    published = np.array([published_at(r) for r in items])  # -inf: unknown, sent at once
    span = float(p.times[p.queries[-1]] - p.cut)
    retrain_s = args.retrain_days * DAY
    cap = stream.max_retrains if args.max_retrains is None else args.max_retrains
    stretched = cap is not None and span / retrain_s > cap
    if stretched:
        assert cap is not None
        retrain_s = span / cap if cap > 0 else math.inf
    log(
        f"{stream.name}: {len(rows):,} events, cut at {iso(p.cut)} ({p.start:,} before it), "
        f"{len(p.queries):,} queries over {span / DAY:.1f} days, retrain every "
        f"{retrain_s / DAY:.2f} days{' (stretched)' if stretched else ''}"
    )
    home = Home(Path(args.home) / stream.name if args.home else None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    try:
        home.init()
        server = Server(home, train_interval=TRAIN_INTERVAL_S)
        with server:
            timings["server_start_s"] = server.startup_s
            api = Api(server)
            try:
                result = _drive(api, stream, p, rows, items, published, retrain_s, timings)
            finally:
                api.close()
    finally:
        home.cleanup()
    timings["total_s"] = time.perf_counter() - started
    result |= {
        "title": stream.title,
        "note": stream.note,
        "counts": {
            "events": len(rows),
            "readers": len(p.reader_ids),
            "items": len(p.item_ids),
            "catalog_items": len(stream.items),
            "anonymous": stream.anonymous,
        },
        "cut": p.cut,
        "cut_iso": iso(p.cut),
        "cut_share": args.cut,
        "events_before_cut": p.start,
        "first_touches_after_cut": p.first_touches,
        "queries": len(p.queries),
        "stream_days": span / DAY,
        "retrain_days": retrain_s / DAY,
        "retrain_stretched": stretched,
        "retrain_cap": cap,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "args": {k: v for k, v in vars(args).items() if k != "render"},
    }
    return result


def _drive(
    api: Api,
    stream: Clickstream,
    p: Plan,
    rows: list[dict[str, Any]],
    items: list[dict[str, Any]],
    published: np.ndarray,
    retrain_s: float,
    timings: dict[str, float],
) -> dict[str, Any]:
    n_items = len(p.item_ids)
    trending = [LiveTrending(n_items, h) for h in TRACKED]
    touched: list[list[int]] = [[] for _ in p.reader_ids]
    seen = np.zeros(n_items, dtype=bool)

    # Before the cut: the catalog as it was then, every event in batches of 1000.
    t0 = time.perf_counter()
    sent_items = int(np.searchsorted(published, p.cut, side="left"))
    api.put_items(items[:sent_items])
    for s in range(0, p.start, LOAD_BATCH):
        api.send_events(rows[s : min(s + LOAD_BATCH, p.start)])
    assert api.events_sent == p.start, "the load must stop at the cut"
    timings["load_s"] = time.perf_counter() - t0
    for tr in trending:
        tr.feed(p.item[: p.start], p.times[: p.start])
    for r, i in zip(p.reader[: p.start].tolist(), p.item[: p.start].tolist(), strict=True):
        touched[r].append(i)
    seen[p.item[: p.start]] = True
    seen_at_cut = seen.copy()
    log(f"  loaded {p.start:,} events in {timings['load_s']:.1f} s; training")

    runs: list[dict[str, Any]] = []
    lives: list[dict[str, Any]] = []

    def train(at: float, events: int) -> None:
        t = time.perf_counter()
        run = api.train()
        runs.append(run_summary(run, at, events, time.perf_counter() - t))
        lives.append(live_model(api.models()) | {"event_time": at})
        log(
            f"  run at {iso(at)}: {run['state']}, chosen {runs[-1]['chosen']}, "
            f"published {run.get('published')}, {runs[-1]['wall_s']:.1f} s"
        )

    t0 = time.perf_counter()
    train(p.cut, p.start)
    timings["first_train_s"] = time.perf_counter() - t0
    seen_at_train = seen.copy()

    pos = p.start
    trained_pos = p.start

    def feed(upto: int) -> None:
        nonlocal pos, sent_items
        while pos < upto:
            end = min(upto, pos + STREAM_BATCH)
            due = int(np.searchsorted(published, p.times[end - 1], side="right"))
            if due > sent_items:  # posts published by now, before the events that read them
                api.put_items(items[sent_items:due])
                sent_items = due
            api.send_events(rows[pos:end])
            for tr in trending:
                tr.feed(p.item[pos:end], p.times[pos:end])
            for r, i in zip(p.reader[pos:end].tolist(), p.item[pos:end].tolist(), strict=True):
                touched[r].append(i)
            seen[p.item[pos:end]] = True
            pos = end

    n = len(p.queries)
    served = np.zeros(n, dtype=np.int64)
    trend = np.zeros((len(TRACKED), n), dtype=np.int64)
    live_chosen: list[str] = []  # metrics.chosen of the model live at each query
    new_since_cut = np.zeros(n, dtype=bool)
    new_since_train = np.zeros(n, dtype=bool)
    cold = np.zeros(n, dtype=bool)
    already = np.zeros(n, dtype=np.int64)  # served items the reader had touched before
    history = np.zeros(n, dtype=np.int64)  # distinct items the reader had touched before
    recipes: Counter[str] = Counter()
    ask_ms: list[float] = []
    next_train = p.cut + retrain_s
    t0 = time.perf_counter()
    for q, qpos in enumerate(p.queries.tolist()):
        while p.times[qpos] >= next_train:
            feed(int(np.searchsorted(p.times, next_train, side="left")))
            if pos > trained_pos:
                train(next_train, pos)
                trained_pos = pos
                seen_at_train = seen.copy()
            next_train += retrain_s
        feed(qpos)
        assert api.events_sent == qpos, "every event before the query, none after it"
        reader, item = int(p.reader[qpos]), int(p.item[qpos])
        target = str(p.item_ids[item])
        t = time.perf_counter()
        answer = api.recommend(str(p.reader_ids[reader]), stream.anonymous)
        ask_ms.append((time.perf_counter() - t) * 1e3)
        listed = [row["item_id"] for row in answer["items"]]
        recipes[answer["recipe"]] += 1
        served[q] = listed.index(target) + 1 if target in listed else 0
        live_chosen.append(str(lives[-1]["chosen"]))
        mine = touched[reader]
        mine_ids = {str(x) for x in p.item_ids[mine]} if mine else set()
        already[q], history[q] = len(mine_ids.intersection(listed)), len(mine_ids)
        for h, tr in enumerate(trending):
            top = tr.top(K, mine)
            where = np.flatnonzero(top == item)
            trend[h, q] = int(where[0]) + 1 if len(where) else 0
        new_since_cut[q] = not seen_at_cut[item]
        new_since_train[q] = not seen_at_train[item]
        cold[q] = not mine
        if (q + 1) % 200 == 0:
            so_far = rates(served[: q + 1])["mrr@20"]
            log(f"  {q + 1:,}/{n:,} queries, served MRR@20 so far {so_far:.3f}")
    timings["stream_s"] = time.perf_counter() - t0
    timings["stream_events"] = pos - p.start
    timings["ask_p50_ms"] = float(np.percentile(ask_ms, 50))
    timings["ask_p99_ms"] = float(np.percentile(ask_ms, 99))
    timings["retrains"] = len(runs) - 1
    timings["train_s_total"] = sum(r["wall_s"] for r in runs)

    lists: dict[str, np.ndarray] = {"served": served}
    lists |= {f"trending {h:g} h": trend[TRACKED.index(h)] for h in HALF_LIVES}
    results = {
        name: {
            "all": rates(r),
            "new items": rates(r, new_since_train),
            "known items": rates(r, ~new_since_train),
            "cold readers": rates(r, cold),
        }
        for name, r in lists.items()
    }
    final = api.models()
    chosen = np.array(live_chosen)
    by_live = {
        name: {"served": rates(served, chosen == name)}
        | {f"trending {h:g} h": rates(trend[i], chosen == name) for i, h in enumerate(TRACKED)}
        for name in dict.fromkeys(live_chosen)
    }
    return {
        "results": results,
        "by_live_model": by_live,
        "per_query": {
            "position": p.queries.tolist(),
            "served_rank": served.tolist(),
            "trending_rank": {f"{h:g}": trend[i].tolist() for i, h in enumerate(TRACKED)},
            "live_chosen": live_chosen,
            "new_since_train": new_since_train.tolist(),
            "cold": cold.tolist(),
            "served_already_touched": already.tolist(),
        },
        "new_share_since_cut": float(new_since_cut.mean()),
        "new_share_since_train": float(new_since_train.mean()),
        "cold_share": float(cold.mean()),
        "served_already_touched_per_list": float(already.mean()),
        "served_lists_with_touched_items": float((already > 0).mean()),
        "history_median_when_touched_served": float(np.median(history[already > 0]))
        if (already > 0).any()
        else None,
        "history_median": float(np.median(history)),
        "recipes_answered": dict(recipes.most_common()),
        "runs": runs,
        "live_models": lives,
        "all_runs": [
            {k: r.get(k) for k in ("id", "trigger", "state", "published", "model_version")}
            for r in api.runs()
        ],
        "final_live": live_model(final),
    }


def memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return float("nan")


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))


# -- the report ------------------------------------------------------------------------------
def best_trending(r: dict[str, Any]) -> tuple[str, dict[str, float]]:
    name = max(
        (k for k in r["results"] if k.startswith("trending")),
        key=lambda k: r["results"][k]["all"]["mrr@20"],
    )
    return name, r["results"][name]["all"]


def served_label(r: dict[str, Any]) -> str:
    answered = ", ".join(f"`{k}` ×{v}" for k, v in r["recipes_answered"].items())
    chosen = sorted({m["chosen"] for m in r["live_models"] if m["chosen"]})
    return f"served (answers: {answered}; metrics.chosen: {', '.join(chosen) or '–'})"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "–"


def dataset_table(r: dict[str, Any]) -> list[str]:
    tname, tbest = best_trending(r)
    lines = [
        "| list | MRR@20 | HR@20 | MRR@20 new items | MRR@20 known items |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, res in r["results"].items():
        label = served_label(r) if name == "served" else f"live {name}"
        lines.append(
            f"| {label} | {res['all']['mrr@20']:.4f} | {res['all']['hr@20']:.4f} | "
            f"{res['new items']['mrr@20']:.4f} | {res['known items']['mrr@20']:.4f} |"
        )
    s = r["results"]["served"]
    lines.append(
        f"| **served / best trending** ({tname}) | "
        f"**{ratio(s['all']['mrr@20'], tbest['mrr@20'])}** "
        f"| **{ratio(s['all']['hr@20'], tbest['hr@20'])}** | "
        f"{ratio(s['new items']['mrr@20'], r['results'][tname]['new items']['mrr@20'])} | "
        f"{ratio(s['known items']['mrr@20'], r['results'][tname]['known items']['mrr@20'])} |"
    )
    return lines


def facts_line(r: dict[str, Any]) -> str:
    c, t = r["counts"], r["timings"]
    catalog = f", {c['catalog_items']:,} in the catalog" if c["catalog_items"] else ""
    return (
        f"{c['events']:,} events, {c['readers']:,} readers"
        f"{' (sessions)' if c['anonymous'] else ''}, {c['items']:,} items{catalog}. "
        f"Cut at {r['cut_iso']} UTC ({r['events_before_cut']:,} events before it); "
        f"{r['queries']:,} queries sampled from {r['first_touches_after_cut']:,} first touches "
        f"over {r['stream_days']:.1f} days; retrained every {r['retrain_days']:.2f} days of "
        f"event time ({int(t['retrains'])} retrains"
        f"{stretched_note(r)}"
        f"). Queried items new since the cut: {r['new_share_since_cut']:.1%}, new since the "
        f"last training: {r['new_share_since_train']:.1%}; queries by readers with no event "
        f"before: {r['cold_share']:.1%}. Served lists held "
        f"{r['served_already_touched_per_list']:.2f} items the reader had touched, on average"
        f"{touched_note(r)}."
    )


def stretched_note(r: dict[str, Any]) -> str:
    if not r["retrain_stretched"]:
        return ""
    return f", the interval stretched to keep to {r.get('retrain_cap')} retrains"


def touched_note(r: dict[str, Any]) -> str:
    share = r.get("served_lists_with_touched_items")
    if not share:
        return ""
    return (
        f" ({share:.1%} of the lists held one or more; those readers had touched a median "
        f"{r['history_median_when_touched_served']:,.0f} distinct items, all readers asked "
        f"for {r['history_median']:,.0f})"
    )


def timing_line(r: dict[str, Any]) -> str:
    t = r["timings"]
    return (
        f"Time: {t['total_s']:.0f} s in all; load {t['load_s']:.1f} s "
        f"({r['events_before_cut'] / t['load_s']:,.0f} events/s over HTTP), first training "
        f"{t['first_train_s']:.1f} s, stream {t['stream_s']:.1f} s "
        f"({int(t['stream_events']):,} events, {r['queries']:,} lists, "
        f"{int(t['retrains'])} retrains; {t['train_s_total']:.1f} s in training runs in all); "
        f"GET /v1/recommendations p50 {t['ask_p50_ms']:.1f} ms, p99 {t['ask_p99_ms']:.1f} ms."
    )


def runs_table(r: dict[str, Any]) -> list[str]:
    """Each POSTed run: when (event time), what it chose, its in-engine replay's MRR@20 for
    the choice and for the best plain trending, and whether it was published."""
    lines = [
        "| run at (event time) | events in | s | chosen | its replay MRR@20 | best trending "
        "in its replay | replay queries | new items there | published |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in r["runs"]:
        trend = {k: v for k, v in run["candidates"].items() if k.startswith("trending-now")}
        best = max(trend, key=lambda k: trend[k] or 0.0, default=None)
        share = run.get("new_item_share")
        lines.append(
            f"| {iso(run['event_time'])} | {run['events_sent']:,} | {run['wall_s']:.1f} | "
            f"`{run['chosen'] or run['state']}` | {num(run['mrr@20'])} | "
            f"{num(trend.get(best) if best else None)} ({best or '–'}) | "
            f"{num(run.get('replay_queries'), '.0f')} | "
            f"{'–' if share is None else f'{share:.1%}'} | {run['published']} |"
        )
    return lines


def live_model_table(r: dict[str, Any]) -> list[str]:
    """Served MRR@20 by the candidate live when each query was asked, beside live trending
    at each half-life the engine can serve, on the same queries."""
    by = r.get("by_live_model")
    if not by:
        return []
    heads = [f"trending {h:g} h" for h in TRACKED]
    lines = [
        "| live candidate at the query | queries | served MRR@20 | " + " | ".join(heads) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in heads) + " |",
    ]
    for name, res in sorted(by.items(), key=lambda kv: -kv[1]["served"]["n"]):
        lines.append(
            f"| `{name}` | {res['served']['n']:,} | {res['served']['mrr@20']:.4f} | "
            + " | ".join(f"{res[h]['mrr@20']:.4f}" for h in heads)
            + " |"
        )
    return lines


def candidates_table(r: dict[str, Any]) -> list[str]:
    """Every candidate's MRR@20 and HR@20 in the in-engine replay of the first and of the
    last POSTed run, and how many runs chose it."""
    first, last = r["runs"][0], r["runs"][-1]
    names = sorted({n for run in r["runs"] for n in run["candidates"]})
    chosen = Counter(run["chosen"] for run in r["runs"])
    lines = [
        "| candidate | first run MRR@20 | HR@20 | last run MRR@20 | HR@20 | chosen by |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in names:
        lines.append(
            f"| `{n}` | {num(first['candidates'].get(n))} | "
            f"{num(first['candidates_hr@20'].get(n))} | {num(last['candidates'].get(n))} | "
            f"{num(last['candidates_hr@20'].get(n))} | {chosen.get(n, 0)} |"
        )
    return lines


def num(value: float | None, spec: str = ".4f") -> str:
    return "–" if value is None else format(value, spec)


def paired_gap(r: dict[str, Any]) -> str:
    """Served minus the best trending MRR@20 over the same queries, with a 95 % interval
    (the mean of the per-query differences of reciprocal ranks, ± 1.96 standard errors)."""
    pq = r.get("per_query")
    if not pq:
        return "–"
    tname, _ = best_trending(r)
    served = reciprocal(np.array(pq["served_rank"]))
    trend = reciprocal(np.array(pq["trending_rank"][tname.split()[1]]))
    diff = served - trend
    half = 1.96 * diff.std(ddof=1) / math.sqrt(len(diff))
    return f"{diff.mean():+.4f} ± {half:.4f}"


def reciprocal(ranks: np.ndarray) -> np.ndarray:
    return np.where((ranks > 0) & (ranks <= K), 1.0 / np.maximum(ranks, 1), 0.0)


def summary_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "| data set | served MRR@20 | best trending MRR@20 | served / trending | "
        "difference (95 % CI) | served HR@20 | best trending HR@20 | new items | time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["datasets"].items():
        tname, tbest = best_trending(r)
        s = r["results"]["served"]["all"]
        lines.append(
            f"| {name} | {s['mrr@20']:.4f} | {tbest['mrr@20']:.4f} ({tname[9:]}) | "
            f"**{ratio(s['mrr@20'], tbest['mrr@20'])}** | {paired_gap(r)} | {s['hr@20']:.4f} | "
            f"{tbest['hr@20']:.4f} | {r['new_share_since_train']:.1%} | "
            f"{r['timings']['total_s']:.0f} s |"
        )
    for skipped, why in report.get("skipped", {}).items():
        lines.append(f"| {skipped} | skipped: {why} | | | | | | | |")
    return lines


def markdown(report: dict[str, Any], notes: str) -> str:
    m = report["machine"]
    a = report["args"]
    minutes = sum(r["timings"]["total_s"] for r in report["datasets"].values()) / 60
    lines = [
        "# Quality through the HTTP API (live replay)",
        "",
        "Written by " + " then ".join(f"`{c}`" for c in report.get("commands", [])) + " (the last "
        f"on {m['when']}; {m['cpus']} CPUs, "
        f"{m.get('memory_gb', '?')} GB, "
        f"{m['platform']}, Python {m['python']}) in {minutes:.1f} min in all. "
        "Tables are rewritten by each run; the notes section is kept.",
        "",
        "## Protocol",
        "",
        "The replay of issue 12's evaluator, through the door users use. For each data set a "
        "fresh home (`clickrec init`) and a real `clickrec serve` on a free port (rate limits "
        "lifted with `CLICKREC_LIMITS__*`, the worker checking for runs every "
        f"{TRAIN_INTERVAL_S:g} s). The catalog as it was at the cut goes through "
        "`PUT /v1/items`; the events before the cut (at "
        f"{a['cut']:g} {'of the events' if a['cut'] < 1 else '(Unix seconds)'}) through "
        f"`POST /v1/events` in batches of {LOAD_BATCH} with their original timestamps; then "
        "`POST /v1/training-runs` and `GET /v1/training-runs/{id}?wait=300` until it ended "
        "and the server serves its model. Every later event is then sent in time order, in "
        "the small batches between two queries; a post is sent to `PUT /v1/items` when the "
        "stream reaches its publication time. Just before each sampled query event (up to "
        f"{a['max_queries']:,} of the readers' first touches of an item after the cut, fixed "
        "seed) the served list is asked for: `GET /v1/recommendations?user_id=…&num_results=20` "
        "(`session_id=…` for anonymous streams), and the rank of the touched item is "
        f"recorded. Every {a['retrain_days']:g} days of event time the engine retrains "
        "(POST + wait); "
        + (
            f"where that would be more than {a['max_retrains']} retrains"
            if a["max_retrains"] is not None
            else f"where that would be more than {ML_MAX_RETRAINS} retrains on MovieLens"
        )
        + ", the interval is stretched to fit (the data set's section says so). Beside it, "
        "in the bench process on the same stream: "
        "live trending, exponentially decayed counts of every event per item with half-lives "
        "of 1 h, 6 h and 24 h, minus every item the reader touched (before the cut "
        "included). MRR@20 and HR@20 over the queries; **new items**: queried items no event "
        "touched before the last training; **known items**: the others. The engine is left "
        "as a user runs it: its own training triggers (the first run when 1,000 events are "
        "in, growth) also run.",
        "",
        "## Summary",
        "",
        *summary_table(report),
    ]
    lines += ["", NOTES[0], notes.strip("\n"), NOTES[1]]
    for name, r in report["datasets"].items():
        lines += [
            "",
            f"## {r['title']} (`{name}`)",
            "",
            r["note"] + ".",
            "",
            facts_line(r),
            "",
            *dataset_table(r),
            "",
            timing_line(r),
            "",
            "Each training run the replay POSTed, and what the engine's own replay (its "
            "selection, over the newest events of the data it trained on) said:",
            "",
            *runs_table(r),
            "",
            "Served MRR@20 by the candidate live when the query was asked, beside live "
            "trending on the same queries at every half-life the engine's candidates use:",
            "",
            *live_model_table(r),
            "",
            "The candidates in that replay, in the first and the last run:",
            "",
            *candidates_table(r),
            "",
            "Every run of the server (its own triggers included): "
            + ", ".join(f"{x['trigger']} {x['state']}" for x in r["all_runs"][::-1])
            + ".",
        ]
    return "\n".join(lines) + "\n"


def existing_notes() -> str:
    if not DOC.exists():
        return "\n(No analysis yet.)\n"
    text = DOC.read_text()
    start, end = text.find(NOTES[0]), text.find(NOTES[1])
    if start < 0 or end < start:
        return "\n(No analysis yet.)\n"
    return text[start + len(NOTES[0]) : end]


def print_tables(name: str, r: dict[str, Any]) -> None:
    print(f"\n### {r['title']} (`{name}`)\n", flush=True)
    print("\n".join(dataset_table(r)))
    print("\n" + facts_line(r))
    print("\n" + timing_line(r) + "\n")
    print("\n".join(runs_table(r)) + "\n")
    print("\n".join(live_model_table(r)) + "\n")
    print("\n".join(candidates_table(r)) + "\n", flush=True)


def write(report: dict[str, Any]) -> None:
    order = {name: k for k, name in enumerate(DATASETS)}
    report["datasets"] = dict(
        sorted(report["datasets"].items(), key=lambda kv: order.get(kv[0], len(order)))
    )
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps(report, indent=1, default=str) + "\n")
    DOC.write_text(markdown(report, existing_notes()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help=", ".join(DATASETS))
    parser.add_argument("--max-queries", type=int, default=1000)
    parser.add_argument("--retrain-days", type=float, default=3.0)
    parser.add_argument(
        "--max-retrains",
        type=int,
        default=None,
        help="at most this many retrains after the cut, a longer stream stretching the "
        f"interval (default: no cap, {ML_MAX_RETRAINS} on MovieLens)",
    )
    parser.add_argument(
        "--cut", type=float, default=0.8, help="share of the events before the cut, or Unix s"
    )
    parser.add_argument("--home", default=None, help="keep each data set's home under here")
    parser.add_argument(
        "--merge", action="store_true", help="keep the other data sets of the last JSON"
    )
    parser.add_argument("--render", type=Path, default=None, help="only rewrite the report")
    args = parser.parse_args()
    if args.render:
        rendered: dict[str, Any] = json.loads(args.render.read_text())
        DOC.write_text(markdown(rendered, existing_notes()))
        for name, r in rendered["datasets"].items():
            print_tables(name, r)
        print("\n".join(["### Summary", "", *summary_table(rendered)]))
        return
    report: dict[str, Any] = {
        "bench": "live_replay",
        "commands": [" ".join(["python bench/live_replay.py", *sys.argv[1:]])],
        "machine": machine() | {"memory_gb": memory_gb()},
        "args": vars(args),
        "datasets": {},
        "skipped": {},
    }
    if args.merge and JSON_OUT.exists():
        old = json.loads(JSON_OUT.read_text())
        report["datasets"] = old.get("datasets", {})
        report["skipped"] = old.get("skipped", {})
        report["commands"] = old.get("commands", []) + report["commands"]
    started = time.perf_counter()
    for name in args.datasets.split(","):
        stream = load(name)
        if stream is None:
            why = "no BlogSpec.news preset" if name == "news" else "its files are missing"
            log(f"{name}: skipped ({why})")
            report["skipped"][name] = why
            continue
        report["skipped"].pop(name, None)
        report["datasets"][name] = replay(stream, args)
        report["seconds"] = time.perf_counter() - started
        print_tables(name, report["datasets"][name])
        write(report)
    report["seconds"] = time.perf_counter() - started
    write(report)
    print("\n".join(["### Summary", "", *summary_table(report), ""]))
    print(f"(written to {JSON_OUT.relative_to(ROOT)} and {DOC.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
