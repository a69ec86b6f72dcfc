"""Soak: ingest and recommendations together at steady rates for a long run (default 30 min).

Set-up (under a minute at the defaults): a synthetic blog from clickrec's own generator
(``--users`` readers over ``--days`` days, ``--posts-per-day`` posts, ending now), imported
with ``clickrec import items`` and ``clickrec import interactions`` while no server runs;
then a real ``clickrec serve`` (rate limits lifted; its worker archives and trains as it
would in production), one training run through POST /v1/training-runs, and a wait until
that model is served and the archive has caught up.

Then, for ``--minutes``, at fixed open-loop rates (each latency runs from the request's
scheduled time, as in serve.py, so a stall counts against every request it delays):

- ingest: POST /v1/events, ``--ingest-rate`` events/s in batches of ``--batch``: sessions
  of known readers (as active as in the history) and of new anonymous ones, reading recent
  posts mostly in their favourite section; some events are clicks on a recent
  recommendation and carry its recommendation_id; a new post is published every minute
  (PUT /v1/items) and read from then on;
- recommendations: ``--rec-rate`` requests/s, mixed as REC_MIX says: known readers, new
  readers, similar items, trending, known readers with a filter;
- baseline, same run: GET /healthz at HEALTHZ_RATE per second.

Every 10 s one sample: throughput, p50/p99 per kind, errors by status, RSS of the server
and of its worker, the archive consumer lag and the served model (from /metrics). Memory
is flat when neither process grows by 10% or more from the end of the warm-up (the first
20% of the run) to its peak after it. Exit status 1 if it is not, or if more than 0.1% of
requests failed.

    .venv/bin/python bench/soak.py                       # 30 min → docs/soak.md, docs/soak.png
    .venv/bin/python bench/soak.py --minutes 3 --users 2000 \\
        --out-md /tmp/soak/soak.md --out-png /tmp/soak/soak.png --out-json /tmp/soak/soak.json
    .venv/bin/python bench/soak.py --home DIR            # keep the set-up, then
    .venv/bin/python bench/soak.py --home DIR --reuse    # soak again without it
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import shlex
import signal
import sys
import textwrap
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from common import (
    BENCH_DIR,
    OUT_DIR,
    Home,
    RawClient,
    Server,
    descendants,
    fmt,
    log,
    machine,
    markdown_table,
    proc_cpu_seconds,
    proc_rss_mb,
    pyplot,
    row,
    run_cli,
    verdict,
)
from serve import archive_caught_up, filter_queries

from clickrec.testing.synthetic import BlogSpec, generate_blog, write_blog

ROOT = BENCH_DIR.parent
DAY, HOUR = 86400.0, 3600.0
SAMPLE_S = 10.0
WARMUP_SHARE = 0.2
MAX_GROWTH = 0.10  # RSS growth after the warm-up that still counts as flat
MAX_ERROR_RATE = 0.001
HEALTHZ_RATE = 5.0
REQUEST_TIMEOUT_S = 30.0
NUM_RESULTS = 25
ACTIVE_SESSIONS = 1000  # sessions reading at any time; an event picks one at random
SESSION_EVENTS = 5.0  # mean events per session
# Of new sessions: anonymous readers never seen before. Most of a media site's traffic is
# anonymous; known readers come back now and then (a few thousand readers cannot send
# 500 events/s for half an hour). --new-reader-share changes it.
NEW_READER_SHARE = 0.7
REC_CLICK_SHARE = 0.05  # of events: a click on a recent recommendation, with its id
SECTION_SHARE = 0.7  # of reads: in the session's favourite section
RECENT_DAYS = 3.0  # posts older than this are no longer read
HALF_LIFE_H = 12.0  # of a post's readership
REC_MIX = {
    "rec_known": 0.45,
    "rec_new": 0.15,
    "similar": 0.2,
    "trending": 0.1,
    "rec_filtered": 0.1,
}
REC_KINDS = tuple(REC_MIX)
# serve.filter_queries sends filter=bench with two $SECTIONS per request.
SOAK_FILTER = (
    "INCLUDE ItemID WHERE Items.CATEGORIES IN ($SECTIONS) "
    '| EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")'
)


# -- who reads what --------------------------------------------------------------------------
@dataclass(slots=True)
class Session:
    session_id: str
    user_id: str | None  # None: an anonymous reader, new to the site
    section: str
    left: int  # events before it ends


@dataclass(slots=True)
class Post:
    item_id: str
    published_at: float
    section: str
    quality: float


class Readership:
    """Sessions of known and new readers over recent posts; new posts as they are published."""

    def __init__(
        self, posts: list[Post], readers: list[str], activity: list[int], tag: str, seed: int
    ) -> None:
        self.rng = random.Random(seed)
        self.tag = tag
        self.posts = posts
        self.sections = sorted({p.section for p in posts})
        self.readers = readers
        self.reader_cum = list(itertools.accumulate(activity))
        self.counter = itertools.count()
        self.new_reader_share = NEW_READER_SHARE
        # (reader, recommendation_id, items) of recent answers: some get clicked.
        self.recommended: deque[tuple[str, str, list[str]]] = deque(maxlen=1000)
        self.reweigh(time.time())
        self.sessions = [self.new_session() for _ in range(ACTIVE_SESSIONS)]

    def reweigh(self, now: float) -> None:
        """Readership weights of the recent posts (quality × decay), overall and per section."""
        recent = [p for p in self.posts if now - p.published_at < RECENT_DAYS * DAY]
        recent = recent or self.posts[-100:]
        weights = [
            p.quality * 2.0 ** (-(now - p.published_at) / (HALF_LIFE_H * HOUR)) for p in recent
        ]
        self.recent = [p.item_id for p in recent]
        self.recent_cum = list(itertools.accumulate(weights))
        by_section: dict[str, tuple[list[str], list[float]]] = defaultdict(lambda: ([], []))
        for p, w in zip(recent, weights, strict=True):
            by_section[p.section][0].append(p.item_id)
            by_section[p.section][1].append(w)
        self.by_section = {
            s: (ids, list(itertools.accumulate(ws))) for s, (ids, ws) in by_section.items()
        }

    def known_reader(self) -> str:
        return self.rng.choices(self.readers, cum_weights=self.reader_cum)[0]

    def popular_post(self) -> str:
        return self.rng.choices(self.recent, cum_weights=self.recent_cum)[0]

    def new_session(self) -> Session:
        n = next(self.counter)
        user = None if self.rng.random() < self.new_reader_share else self.known_reader()
        return Session(
            f"s-{self.tag}-{n}",
            user,
            self.rng.choice(self.sections),
            1 + int(self.rng.expovariate(1.0 / (SESSION_EVENTS - 1.0))),
        )

    def read(self, section: str) -> str:
        ids_cum = self.by_section.get(section)
        if ids_cum and self.rng.random() < SECTION_SHARE:
            return self.rng.choices(ids_cum[0], cum_weights=ids_cum[1])[0]
        return self.popular_post()

    def events(self, n: int, now: float) -> list[dict[str, Any]]:
        """The next ``n`` events, timed within the last second."""
        out = []
        for _ in range(n):
            event: dict[str, Any] = {
                "event_id": f"e-{self.tag}-{next(self.counter)}",
                "timestamp": round(now - self.rng.random(), 3),
            }
            if self.recommended and self.rng.random() < REC_CLICK_SHARE:
                user, rec_id, items = self.recommended.pop()
                event |= {
                    "user_id": user,
                    "session_id": f"s-{self.tag}-{user}",
                    "item_id": self.rng.choice(items[:5]),
                    "event_type": "click",
                    "recommendation_id": rec_id,
                }
                out.append(event)
                continue
            k = self.rng.randrange(len(self.sessions))
            s = self.sessions[k]
            kind = self.rng.choices(("view", "read", "click"), (0.3, 0.55, 0.15))[0]
            event |= {"session_id": s.session_id, "item_id": self.read(s.section)}
            event["event_type"] = kind
            if s.user_id is not None:
                event["user_id"] = s.user_id
            if kind == "read":
                seconds = self.rng.lognormvariate(math.log(60.0), 0.8)
                event["event_value"] = round(min(max(seconds, 10.0), 300.0), 1)
            out.append(event)
            s.left -= 1
            if s.left <= 0:
                self.sessions[k] = self.new_session()
        return out

    def new_reader_query(self, seq: int) -> str:
        """A reader new to the site: an unseen user id, or an anonymous session now reading."""
        if seq % 2:
            anonymous = [s for s in self.rng.sample(self.sessions, 20) if s.user_id is None]
            if anonymous:
                return f"session_id={anonymous[0].session_id}"
        return f"user_id=n-{self.tag}-{seq}"

    def new_post(self, now: float) -> dict[str, Any]:
        n = next(self.counter)
        section = self.rng.choice(self.sections)
        item_id = f"live-{self.tag}-{n}"
        return {
            "item_id": item_id,
            "published_at": now,
            "categories": [section],
            "author": "Soak Desk",
            "title": f"Live post {n} on {section}",
            "url": f"https://blog.example/posts/{item_id}",
        }

    def published(self, item: dict[str, Any]) -> None:
        quality = self.rng.lognormvariate(0.0, 1.2)
        self.posts.append(
            Post(item["item_id"], item["published_at"], item["categories"][0], quality)
        )
        self.reweigh(item["published_at"])


def load_readership(data_dir: Path, tag: str, seed: int) -> Readership:
    """Posts and readers of the imported blog, readers weighted by their past events."""
    items = pacsv.read_csv(data_dir / "items.csv").to_pydict()
    rng = random.Random(seed)
    posts = [
        Post(i, float(t), str(c).split("|")[0], rng.lognormvariate(0.0, 1.2))
        for i, t, c in zip(
            items["item_id"], items["published_at"], items["categories"], strict=True
        )
    ]
    users = pacsv.read_csv(data_dir / "interactions.csv").column("user_id")
    counts = pc.value_counts(users).to_pylist()
    readers = [str(c["values"]) for c in counts]
    activity = [int(c["counts"]) for c in counts]
    return Readership(posts, readers, activity, tag, seed)


# -- open-loop load and its windows ----------------------------------------------------------
class HttpStatus(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


async def call(client: RawClient, method: str, path: str, body: bytes = b"") -> bytes:
    status, payload = await client.request(method, path, body)
    if not 200 <= status < 300:
        raise HttpStatus(status, payload)
    return payload


class Window:
    """What answered (latencies in seconds, units) and what failed since the last sample."""

    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.units: Counter[str] = Counter()
        self.empty: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.send_lags: list[float] = []


# A request: its kind, and the answer to await (units delivered; raises on a failure).
Request = Callable[[int], tuple[str, Awaitable[int]]]


class Load:
    """Open-loop request streams feeding one window at a time."""

    def __init__(self) -> None:
        self.window = Window()
        self.error_samples: list[str] = []

    def take(self) -> Window:
        window, self.window = self.window, Window()
        return window

    def fail(self, kind: str, what: str, detail: str) -> None:
        self.window.errors[f"{kind} {what}"] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{kind}: {detail[:300]}")

    async def one(self, request: Request, seq: int, scheduled: float) -> None:
        self.window.send_lags.append(time.perf_counter() - scheduled)
        kind, answer = request(seq)
        try:
            units = await asyncio.wait_for(answer, REQUEST_TIMEOUT_S)
        except HttpStatus as exc:
            self.fail(kind, str(exc.status), str(exc))
            return
        except TimeoutError:
            self.fail(kind, "timeout", f"no answer in {REQUEST_TIMEOUT_S:.0f}s")
            return
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none hidden
            self.fail(kind, type(exc).__name__, f"{type(exc).__name__}: {exc}")
            return
        self.window.latencies[kind].append(time.perf_counter() - scheduled)
        self.window.units[kind] += units
        if units == 0:
            self.window.empty[kind] += 1

    async def paced(self, request: Request, rate: float, start: float, stop: float) -> None:
        """Start ``request(seq)`` at a random point of its slot ``[seq, seq + 1) / rate``
        after ``start`` until ``stop``, never waiting for answers; then wait for the last
        answers. The random point keeps streams of commensurate rates from lining up (every
        healthz on top of an ingest batch). Done tasks are dropped as they finish, so a long
        run holds only the requests in flight."""
        if rate <= 0:
            return
        jitter = random.Random(rate)
        pending: set[asyncio.Task[None]] = set()
        for seq in itertools.count():
            scheduled = start + (seq + jitter.random()) / rate
            if scheduled >= stop:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(request, seq, scheduled))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)


def pct(values: list[float] | np.ndarray, q: float) -> float:
    """A percentile of latencies in seconds, in milliseconds (nan when there are none)."""
    return float(np.percentile(values, q)) * 1e3 if len(values) else float("nan")


def parse_metrics(text: str) -> dict[str, Any]:
    """The archive consumer lag and the served model version from a Prometheus exposition."""
    out: dict[str, Any] = {"archive_lag": None, "model_version": None}
    for line in text.splitlines():
        if line.startswith('clickrec_consumer_lag_events{consumer="archive"}'):
            out["archive_lag"] = int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("clickrec_model_info{") and 'version="' in line:
            out["model_version"] = line.split('version="', 1)[1].split('"', 1)[0]
    return out


# -- the soak --------------------------------------------------------------------------------
class Soak:
    """The request streams of one soak, and its samples (one every SAMPLE_S seconds)."""

    def __init__(self, server: Server, readership: Readership, args: argparse.Namespace) -> None:
        self.server = server
        self.readers = readership
        self.args = args
        self.load = Load()
        self.samples: list[dict[str, Any]] = []
        self.raw: list[dict[str, np.ndarray]] = []  # latencies (s) per kind, per sample
        rng = random.Random(args.seed)
        self.rec_kinds = rng.choices(REC_KINDS, weights=list(REC_MIX.values()), k=10_000)
        self.filters = filter_queries(10_000, args.seed)
        self.published = 0

    def clients(self) -> dict[str, RawClient]:
        h = self.server.headers()
        sizes = {"ingest": 8, "recs": 32, "healthz": 2, "admin": 2}
        return {name: RawClient(self.server.url, h, n) for name, n in sizes.items()}

    async def run(self) -> None:
        clients = self.clients()
        try:
            await self._run(clients)
        finally:
            for client in clients.values():
                await client.__aexit__()

    async def _run(self, c: dict[str, RawClient]) -> None:
        args = self.args
        batches_per_s = args.ingest_rate / args.batch

        def ingest(seq: int) -> tuple[str, Awaitable[int]]:
            async def send() -> int:
                body = orjson.dumps({"events": self.readers.events(args.batch, time.time())})
                return int(
                    orjson.loads(await call(c["ingest"], "POST", "/v1/events", body))["accepted"]
                )

            return "events", send()

        def recommend(seq: int) -> tuple[str, Awaitable[int]]:
            kind = self.rec_kinds[seq % len(self.rec_kinds)]
            return kind, self.recommendation(c["recs"], kind, seq)

        def healthz(seq: int) -> tuple[str, Awaitable[int]]:
            async def send() -> int:
                await call(c["healthz"], "GET", "/healthz")
                return 1

            return "healthz", send()

        def publish(seq: int) -> tuple[str, Awaitable[int]]:
            async def send() -> int:
                item = self.readers.new_post(time.time())
                await call(c["admin"], "PUT", "/v1/items", orjson.dumps({"items": [item]}))
                self.readers.published(item)
                self.published += 1
                return 1

            return "publish", send()

        self.t0 = time.perf_counter()
        self.last = (self.t0, self.cpu_now())
        stop = self.t0 + args.minutes * 60.0
        streams = [
            self.load.paced(ingest, batches_per_s, self.t0, stop),
            self.load.paced(recommend, args.rec_rate, self.t0, stop),
            self.load.paced(healthz, HEALTHZ_RATE, self.t0, stop),
            self.load.paced(publish, 1.0 / args.publish_every, self.t0, stop),
            self.sampler(c["admin"], stop),
        ]
        await asyncio.gather(*streams)
        late = self.load.take()  # answers that came after the last sample: counted in it
        if self.samples:
            last = self.samples[-1]
            last["requests"] += sum(map(len, late.latencies.values())) + late.errors.total()
            for key, n in late.errors.items():
                last["errors"][key] = last["errors"].get(key, 0) + n

    async def recommendation(self, client: RawClient, kind: str, seq: int) -> int:
        r = self.readers
        user = None
        if kind in ("rec_known", "rec_filtered"):
            user = r.known_reader()
            path = f"/v1/recommendations?user_id={user}&num_results={NUM_RESULTS}"
            if kind == "rec_filtered":
                path += self.filters[seq % len(self.filters)]
        elif kind == "rec_new":
            path = f"/v1/recommendations?{r.new_reader_query(seq)}&num_results={NUM_RESULTS}"
        elif kind == "similar":
            path = f"/v1/items/{r.popular_post()}/similar?num_results=10"
        else:
            path = f"/v1/trending?num_results={NUM_RESULTS}"
        answer = orjson.loads(await call(client, "GET", path))
        items = [i["item_id"] for i in answer["items"]]
        if kind == "rec_known" and items:
            r.recommended.append((user, answer["recommendation_id"], items[:10]))
        return len(items)

    def cpu_now(self) -> dict[str, float]:
        """CPU seconds so far of the server, its worker(s) and this load generator."""
        worker = 0.0
        for pid in descendants(self.server.pid):
            with contextlib.suppress(OSError):  # a worker may exit between the two reads
                worker += proc_cpu_seconds(pid)
        return {
            "server": proc_cpu_seconds(self.server.pid),
            "worker": worker,
            "client": time.process_time(),
        }

    async def sampler(self, admin: RawClient, stop: float) -> None:
        for k in itertools.count(1):
            at = self.t0 + k * SAMPLE_S
            if at > stop + 1e-6:
                return
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            await self.sample(admin)

    async def sample(self, admin: RawClient) -> None:
        now, cpu = time.perf_counter(), self.cpu_now()
        window = self.load.take()
        span = now - self.last[0]
        cpu_pct = {k: round(100.0 * (v - self.last[1][k]) / span, 1) for k, v in cpu.items()}
        self.last = (now, cpu)
        lat = {k: np.asarray(v) for k, v in window.latencies.items()}
        lat["recs"] = np.concatenate([lat.get(k, np.empty(0)) for k in REC_KINDS])
        metrics: dict[str, Any] = {"archive_lag": None, "model_version": None}
        try:
            metrics = parse_metrics((await call(admin, "GET", "/metrics")).decode())
        except Exception as exc:  # noqa: BLE001 - a failed scrape is an error like any other
            window.errors[f"metrics {getattr(exc, 'status', type(exc).__name__)}"] += 1
        # The long-lived worker apart from its training runs' children: a run's memory is
        # transient (given back when the child exits) and reported on its own.
        workers = descendants(self.server.pid)
        worker_rss = training_rss = 0.0
        for pid in workers:
            with contextlib.suppress(OSError):
                if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    worker_rss += proc_rss_mb(pid)
                else:
                    training_rss += proc_rss_mb(pid)
        sample = {
            "t_s": round(now - self.t0, 2),
            "window_s": round(span, 2),
            "events_per_s": round(window.units["events"] / span, 1),
            "recs_per_s": round(len(lat["recs"]) / span, 1),
            "healthz_per_s": round(len(lat.get("healthz", ())) / span, 1),
            "latency_ms": {
                k: {"n": len(v), "p50": round(pct(v, 50), 2), "p99": round(pct(v, 99), 2)}
                for k, v in sorted(lat.items())
            },
            "empty": dict(window.empty),
            "errors": dict(window.errors),
            "requests": sum(len(v) for k, v in lat.items() if k != "recs")
            + sum(window.errors.values()),
            "send_lag_p99_ms": round(pct(window.send_lags, 99), 2),
            "server_rss_mb": round(proc_rss_mb(self.server.pid), 1),
            "worker_rss_mb": round(worker_rss, 1) if workers else None,
            "training_rss_mb": round(training_rss, 1),
            "worker_pids": workers,
            "cpu_pct": cpu_pct,
            "loadavg_1m": os.getloadavg()[0],  # the machine's: other work skews latencies
            "posts_published": self.published,
            **metrics,
        }
        self.samples.append(sample)
        self.raw.append(lat)
        rec = sample["latency_ms"]["recs"]
        log(
            f"t={sample['t_s']:5.0f}s  events/s {sample['events_per_s']:6.0f}  "
            f"recs/s {sample['recs_per_s']:5.1f}  p50 {rec['p50']:6.2f} p99 {rec['p99']:7.2f} ms  "
            f"RSS server {sample['server_rss_mb']:.0f} "
            f"worker {sample['worker_rss_mb'] or 0:.0f} MB  "
            f"lag {fmt(sample['archive_lag'])}  errors {sum(window.errors.values())}"
        )


# -- set-up ----------------------------------------------------------------------------------
def build(home: Home, args: argparse.Namespace) -> dict[str, Any]:
    """Generate the blog (ending now) and import it while no server runs; returns timings."""
    now = time.time()
    spec = BlogSpec(
        users=args.users,
        days=args.days,
        posts_per_day=args.posts_per_day,
        seed=args.seed,
        start=math.floor(now - args.days * DAY - HOUR),
    )
    log(f"generating {spec}")
    t0 = time.perf_counter()
    blog = generate_blog(spec)
    paths = write_blog(blog, home.path / "bench-data", "csv")
    setup: dict[str, Any] = {
        "spec": {"users": spec.users, "days": spec.days, "posts_per_day": spec.posts_per_day},
        "items": blog.items.num_rows,
        "events": blog.interactions.num_rows,
        "generate_s": round(time.perf_counter() - t0, 2),
    }
    del blog
    home.init()
    h = ["--home", str(home.path)]
    setup["import_items_s"] = round(
        run_cli(["import", "items", str(paths["items"]), *h], home.logs).wall_s, 2
    )
    imp = run_cli(["import", "interactions", str(paths["interactions"]), *h], home.logs)
    setup["import_interactions_s"] = round(imp.wall_s, 2)
    log(f"imported {setup['items']:,} items and {setup['events']:,} events in {imp.wall_s:.1f}s")
    return setup


def train_once(server: Server, timeout_s: float = 900.0) -> dict[str, Any]:
    """One training run through the API (or the one the worker already started), until its
    model is the one the server serves."""
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=30.0) as client:
        models = client.get("/v1/models").json()
        if models["live_version"] and models["live_version"] == models["served_version"]:
            return {"train_s": 0.0, "model_version": models["live_version"], "trained": False}
        runs = client.get("/v1/training-runs").json()["runs"]
        active = [r for r in runs if r["state"] in ("pending", "running")]
        run_id = active[0]["id"] if active else client.post("/v1/training-runs").json()["id"]
        log(f"training run {run_id} ({'the worker’s own' if active else 'POST /v1/training-runs'})")
        while True:
            run = client.get(f"/v1/training-runs/{run_id}").json()
            if run["state"] == "failed":
                raise RuntimeError(f"training run {run_id} failed: {run['error']}")
            models = client.get("/v1/models").json()
            live = models["live_version"]
            if run["state"] == "succeeded" and live and live == models["served_version"]:
                break
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"no model served after {timeout_s:.0f}s: run {run}")
            time.sleep(1.0)
        resp = client.put("/v1/filters/bench", content=orjson.dumps({"expression": SOAK_FILTER}))
        if resp.status_code != 200:
            raise RuntimeError(f"PUT /v1/filters/bench: HTTP {resp.status_code}: {resp.text[:300]}")
    return {
        "train_s": round(time.perf_counter() - started, 2),
        "model_version": live,
        "trained": True,
    }


async def wait_for_archive(server: Server) -> float:
    async with RawClient(server.url, server.headers(), 1) as client:
        return await archive_caught_up(client)


def training_runs(server: Server, since: float) -> list[dict[str, Any]]:
    """Training runs created since ``since`` (Unix seconds): trigger, state, and when they
    started and finished, in seconds into the soak."""
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=30.0) as client:
        runs = client.get("/v1/training-runs").json()["runs"]

    def offset(t: float | None) -> float | None:
        return round(t - since, 1) if t else None

    return [
        {
            "trigger": r["trigger"],
            "state": r["state"],
            "started_s": offset(r["started_at"]),
            "finished_s": offset(r["finished_at"]),
            "model_version": r["model_version"],
        }
        for r in sorted(runs, key=lambda r: r["created_at"])
        if r["created_at"] >= since
    ]


# -- the report ------------------------------------------------------------------------------
def flatness(samples: list[dict[str, Any]], key: str, warmup_s: float) -> dict[str, Any]:
    """RSS at the end of the warm-up, its peak after, at the end, the growth and the trend."""
    points = [(s["t_s"], s[key]) for s in samples if s.get(key) is not None]
    before = [v for t, v in points if t <= warmup_s + 1e-6]
    after = [(t, v) for t, v in points if t > warmup_s + 1e-6]
    if not before or not after:
        return {"warmup_end_mb": None, "max_after_mb": None, "end_mb": None, "growth_pct": None}
    start, peak = before[-1], max(v for _, v in after)
    times, values = np.array(after).T
    slope = float(np.polyfit(times, values, 1)[0]) * HOUR if len(after) > 1 else float("nan")
    return {
        "warmup_end_mb": start,
        "max_after_mb": peak,
        "end_mb": points[-1][1],
        "growth_pct": round(100.0 * (peak - start) / start, 2),
        "trend_mb_per_hour": round(slope, 1),
    }


def minute_rows(soak: Soak) -> list[dict[str, Any]]:
    """One row per minute of the run: its samples merged (percentiles over its requests)."""
    by_minute: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(soak.samples):
        by_minute[int(math.ceil(s["t_s"] / 60.0 - 1e-9)) - 1].append(i)
    rows = []
    for minute, idx in sorted(by_minute.items()):
        ss = [soak.samples[i] for i in idx]
        span = sum(s["window_s"] for s in ss)

        def lat(kind: str, idx: list[int] = idx) -> np.ndarray:
            return np.concatenate([soak.raw[i].get(kind, np.empty(0)) for i in idx])

        recs, health, events = lat("recs"), lat("healthz"), lat("events")
        lags = [s["archive_lag"] for s in ss if s["archive_lag"] is not None]
        rows.append(
            {
                "minute": minute + 1,
                "events_per_s": sum(s["events_per_s"] * s["window_s"] for s in ss) / span,
                "recs_per_s": len(recs) / span,
                "recs_p50": pct(recs, 50),
                "recs_p99": pct(recs, 99),
                "healthz_p50": pct(health, 50),
                "healthz_p99": pct(health, 99),
                "ingest_p99": pct(events, 99),
                "server_mb": ss[-1]["server_rss_mb"],
                "worker_mb": ss[-1]["worker_rss_mb"],
                "lag": max(lags) if lags else None,
                "errors": sum(sum(s["errors"].values()) for s in ss),
                "model": ss[-1]["model_version"],
            }
        )
    return rows


def minute_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| min | events/s | recs/s | recs p50 ms | recs p99 ms | healthz p50 / p99 ms "
        "| ingest p99 ms | server RSS MB | worker RSS MB | archive lag | errors | model |"
    )
    lines = [
        head,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        cells = [
            str(r["minute"]),
            fmt(r["events_per_s"]),
            fmt(r["recs_per_s"]),
            fmt(r["recs_p50"]),
            fmt(r["recs_p99"]),
            f"{fmt(r['healthz_p50'])} / {fmt(r['healthz_p99'])}",
            fmt(r["ingest_p99"]),
            fmt(r["server_mb"]),
            fmt(r["worker_mb"]),
            fmt(r["lag"]),
            fmt(r["errors"]),
            str(r["model"] or "–"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(soak: Soak, args: argparse.Namespace) -> dict[str, Any]:
    duration = args.minutes * 60.0
    warmup = max(WARMUP_SHARE * duration, SAMPLE_S)  # at least one sample to start from
    after = [i for i, s in enumerate(soak.samples) if s["t_s"] > warmup + 1e-6]

    def lat(kind: str) -> np.ndarray:
        return np.concatenate([soak.raw[i].get(kind, np.empty(0)) for i in after] or [np.empty(0)])

    span = sum(soak.samples[i]["window_s"] for i in after) or float("nan")
    requests = sum(s["requests"] for s in soak.samples)
    errors: Counter[str] = Counter()
    for s in soak.samples:
        errors.update(s["errors"])
    by_status: Counter[str] = Counter()
    for key, n in errors.items():
        by_status[key.rsplit(" ", 1)[1]] += n
    server = flatness(soak.samples, "server_rss_mb", warmup)
    worker = flatness(soak.samples, "worker_rss_mb", warmup)
    growths = [m["growth_pct"] for m in (server, worker)]
    flat = all(g is not None and g < 100.0 * MAX_GROWTH for g in growths)
    error_rate = sum(errors.values()) / requests if requests else float("nan")
    lags = [
        soak.samples[i]["archive_lag"] for i in after if soak.samples[i]["archive_lag"] is not None
    ]
    models = [s["model_version"] for s in soak.samples if s["model_version"]]
    return {
        "warmup_s": warmup,
        "after_warmup": {
            "events_per_s": sum(
                soak.samples[i]["events_per_s"] * soak.samples[i]["window_s"] for i in after
            )
            / span,
            "kinds": {
                k: {"n": len(lat(k)), "p50_ms": pct(lat(k), 50), "p99_ms": pct(lat(k), 99)}
                for k in ("recs", *REC_KINDS, "events", "healthz", "publish")
            },
            "recs_per_s": len(lat("recs")) / span,
            "healthz_per_s": len(lat("healthz")) / span,
            "worst_window_p99_ms": {
                k: max(
                    (
                        soak.samples[i]["latency_ms"].get(k, {}).get("p99", float("nan"))
                        for i in after
                    ),
                    default=float("nan"),
                )
                for k in ("recs", "events", "healthz")
            },
            "archive_lag_max": max(lags) if lags else None,
            "send_lag_p99_ms_max": max(
                (soak.samples[i]["send_lag_p99_ms"] for i in after), default=float("nan")
            ),
        },
        "requests": requests,
        "errors": sum(errors.values()),
        "errors_by_kind_and_status": dict(errors),
        "errors_by_status": dict(by_status),
        "error_rate": error_rate,
        "empty_answers": dict(sum((Counter(s["empty"]) for s in soak.samples), Counter())),
        "server_rss": server,
        "worker_rss": worker,
        "memory_flat": flat,
        "errors_ok": error_rate <= MAX_ERROR_RATE,
        "models_served": list(dict.fromkeys(models)),
        "training_peak_mb": max(
            (x.get("training_rss_mb") or 0.0 for x in soak.samples), default=0.0
        ),
        "posts_published": soak.published,
        "error_samples": soak.load.error_samples,
    }


def summary_rows(s: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    a = s["after_warmup"]
    k = a["kinds"]
    rows = [
        row("ingest: events/s", a["events_per_s"], None, f"{args.ingest_rate:.0f}"),
        row(
            "recommendations: requests/s (baseline: healthz/s)",
            a["recs_per_s"],
            a["healthz_per_s"],
            f"{args.rec_rate:.0f}",
        ),
        row("recommendations p50 (ms)", k["recs"]["p50_ms"], k["healthz"]["p50_ms"]),
        row("recommendations p99 (ms)", k["recs"]["p99_ms"], k["healthz"]["p99_ms"]),
        row(
            "worst 10-s window p99, recommendations (ms)",
            a["worst_window_p99_ms"]["recs"],
            a["worst_window_p99_ms"]["healthz"],
        ),
        row(
            f"ingest p50 (ms), POST of {args.batch} events",
            k["events"]["p50_ms"],
            k["healthz"]["p50_ms"],
        ),
        row(
            f"ingest p99 (ms), POST of {args.batch} events",
            k["events"]["p99_ms"],
            k["healthz"]["p99_ms"],
        ),
    ]
    for kind in REC_KINDS:
        rows.append(
            row(f"  {kind}: p50 / p99 (ms)", f"{fmt(k[kind]['p50_ms'])} / {fmt(k[kind]['p99_ms'])}")
        )
    for name in ("server", "worker"):
        m = s[f"{name}_rss"]
        growth = m["growth_pct"]
        ok = growth is not None and growth < 100.0 * MAX_GROWTH
        rows += [
            row(
                f"{name} RSS: end of warm-up / max after / end (MB)",
                f"{fmt(m['warmup_end_mb'])} / {fmt(m['max_after_mb'])} / {fmt(m['end_mb'])}",
            ),
            row(
                f"{name} RSS growth after warm-up (%)",
                growth,
                None,
                f"< {100 * MAX_GROWTH:.0f}: {verdict(ok)}",
            ),
            row(
                f"{name} RSS trend after warm-up (MB/hour, linear fit)", m.get("trend_mb_per_hour")
            ),
        ]
    rows.append(
        row(
            "training runs' children: peak RSS (MB, given back when they end)",
            s["training_peak_mb"],
        )
    )
    by_status = ", ".join(f"{k}: {v}" for k, v in sorted(s["errors_by_status"].items())) or "none"
    rows += [
        row("requests, all kinds", s["requests"]),
        row(f"errors ({by_status})", s["errors"], None, "–"),
        row(
            "error rate (%)",
            100.0 * s["error_rate"],
            None,
            f"≤ {100 * MAX_ERROR_RATE:.1f}: {verdict(s['errors_ok'])}",
        ),
        row("archive lag, max after warm-up (events)", a["archive_lag_max"]),
        row("models served during the soak", len(s["models_served"])),
        row("posts published during the soak", s["posts_published"]),
        row("client send lag, worst 10-s p99 (ms)", a["send_lag_p99_ms_max"]),
    ]
    return rows


def plot(doc: dict[str, Any], path: Path) -> bool:
    plt = pyplot()
    if plt is None:
        return False

    samples = doc["samples"]
    t = [s["t_s"] / 60.0 for s in samples]

    def series(kind: str, q: str) -> list[float]:
        return [s["latency_ms"].get(kind, {}).get(q, float("nan")) for s in samples]

    fig, (thr, lat, mem) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    thr.plot(t, [s["events_per_s"] for s in samples], color="C0", label="ingest events/s")
    thr.set_ylabel("events/s")
    recs_ax = thr.twinx()
    recs_ax.plot(t, [s["recs_per_s"] for s in samples], color="C1", label="recommendations/s")
    recs_ax.set_ylabel("requests/s")
    # Different headroom on the two axes, so two rates on target do not draw one line.
    args = doc["args"]
    thr.set_ylim(0, 1.25 * max(args["ingest_rate"], 1.0))
    recs_ax.set_ylim(0, 1.6 * max(args["rec_rate"], 1.0))
    handles = thr.get_legend_handles_labels()[0] + recs_ax.get_legend_handles_labels()[0]
    thr.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=8)
    thr.set_title("\n".join(textwrap.wrap(doc["title"], 100)), fontsize=10)
    thr.set_xlim(0, args["minutes"])

    lat.plot(t, series("recs", "p50"), color="C1", label="recommendations p50")
    lat.plot(t, series("recs", "p99"), color="C1", ls="--", label="recommendations p99")
    lat.plot(t, series("events", "p99"), color="C0", ls="--", label="ingest p99")
    lat.plot(t, series("healthz", "p50"), color="grey", label="healthz p50 (baseline)")
    lat.plot(t, series("healthz", "p99"), color="grey", ls="--", label="healthz p99 (baseline)")
    lat.set_yscale("log")
    lat.set_ylabel("latency per 10 s (ms)")
    lat.legend(loc="upper left", fontsize=7, ncol=3, framealpha=0.8)

    mem.plot(t, [s["server_rss_mb"] for s in samples], color="C3", label="server RSS")
    mem.plot(t, [s["worker_rss_mb"] for s in samples], color="C4", label="worker RSS")
    mem.set_ylabel("MB")
    mem.set_xlabel("minutes")
    mem.set_ylim(bottom=0)
    warmup = doc["summary"]["warmup_s"] / 60.0
    changes = [
        s["t_s"] / 60.0
        for prev, s in itertools.pairwise(samples)
        if s["model_version"] and s["model_version"] != prev["model_version"]
    ]
    runs = [
        (r["started_s"] / 60.0, (r["finished_s"] or doc["args"]["minutes"] * 60.0) / 60.0)
        for r in doc["training_runs"]
        if r["started_s"] is not None
    ]
    for ax in (thr, lat, mem):
        ax.axvline(warmup, color="black", ls=":", lw=1)
        for x in changes:
            ax.axvline(x, color="C2", alpha=0.6, lw=1)
        for start, end in runs:
            ax.axvspan(start, end, color="C2", alpha=0.12, lw=0)
        ax.grid(alpha=0.3)
    mem.text(warmup, 0, " end of warm-up", fontsize=8, va="bottom")
    if runs:
        mem.fill_between([], [], color="C2", alpha=0.12, label="training run (in the worker)")
    if changes:
        mem.plot([], [], color="C2", alpha=0.6, label="new model served")
    mem.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def markdown(doc: dict[str, Any], rows: list[dict[str, Any]], minutes: str, png: str | None) -> str:
    s, setup = doc["summary"], doc["setup"]
    growth = {k: fmt(s[f"{k}_rss"]["growth_pct"]) for k in ("server", "worker")}
    verdicts = (
        f"memory {'flat' if s['memory_flat'] else 'NOT flat'} (RSS growth after the warm-up: "
        f"server {growth['server']}%, worker {growth['worker']}%; limit "
        f"{100 * MAX_GROWTH:.0f}%), errors {fmt(100 * s['error_rate'])}% of requests "
        f"(limit {100 * MAX_ERROR_RATE:.1f}%)."
    )
    lines = [
        "# Soak: ingest and recommendations together",
        "",
        doc["title"] + ".",
        "",
        f"**{'PASS' if doc['passed'] else 'FAIL'}**: {verdicts}",
        "",
        "```sh",
        doc["command"],
        "```",
        "",
        f"Machine: {doc['machine']['platform']}, {doc['machine']['cpus']} CPUs, Python "
        f"{doc['machine']['python']}, {doc['machine']['when']}. Set-up: a synthetic blog of "
        f"{setup['items']:,} posts and {setup['events']:,} events by "
        f"{setup['spec']['users']:,} readers over {setup['spec']['days']} days, imported, then "
        f"one training run (model {setup.get('model_version')}). The server's worker archives and "
        "trains as usual during the soak (training runs below). Latency runs from each request's "
        "scheduled time (open loop). Figures below are after the warm-up (first "
        f"{100 * WARMUP_SHARE:.0f}% of the run, {s['warmup_s'] / 60:.1f} min); the baseline "
        f"column is GET /healthz at {HEALTHZ_RATE:.0f}/s in the same run.",
        "",
        markdown_table(rows),
        "",
        "Training runs during the soak: "
        + (
            "; ".join(
                f"{r['trigger']}, {r['state']}, started at {fmt((r['started_s'] or 0) / 60)} "
                f"min, {fmt((r['finished_s'] or math.nan) - (r['started_s'] or 0))} s"
                for r in doc["training_runs"]
            )
            or "none"
        )
        + ".",
        "",
        "## Minute by minute",
        "",
        "Percentiles over the minute's requests; RSS at the end of the minute; the archive "
        "consumer lag (from /metrics) is the minute's maximum.",
        "",
        minutes,
        "",
    ]
    if png:
        lines += [f"![throughput, latency and memory over the soak]({png})", ""]
    lines += [f"Raw samples (one per {SAMPLE_S:.0f} s): `{doc['json']}`.", ""]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------
def interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C, so the server and its worker are stopped on the way out."""
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak")
    parser.add_argument("--ingest-rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--batch", type=int, default=50, help="events per POST /v1/events")
    parser.add_argument("--rec-rate", type=float, default=100.0, help="recommendation requests/s")
    parser.add_argument(
        "--publish-every", type=float, default=60.0, help="seconds between new posts"
    )
    parser.add_argument("--users", type=int, default=5000, help="readers in the seeded history")
    parser.add_argument("--days", type=int, default=14, help="days of seeded history")
    parser.add_argument("--posts-per-day", type=int, default=40)
    parser.add_argument(
        "--train-interval", type=float, default=5.0, help="the worker's trainer checks (s)"
    )
    parser.add_argument(
        "--new-reader-share",
        type=float,
        default=NEW_READER_SHARE,
        help="share of new sessions by anonymous readers never seen before",
    )
    parser.add_argument(
        "--session-idle-minutes",
        type=float,
        default=5.0,
        help="the engine's serving.session_idle_minutes for this run (its default: 30)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--home", type=str, default=None, help="keep the home folder here")
    parser.add_argument(
        "--reuse", action="store_true", help="with --home of an earlier run: skip the set-up"
    )
    parser.add_argument("--out-md", type=Path, default=ROOT / "docs" / "soak.md")
    parser.add_argument("--out-png", type=Path, default=ROOT / "docs" / "soak.png")
    parser.add_argument("--out-json", type=Path, default=OUT_DIR / "soak.json")
    args = parser.parse_args()
    if args.minutes <= 0 or args.batch < 1 or args.ingest_rate < 0 or args.rec_rate < 0:
        parser.error("--minutes and --batch must be positive, the rates not negative")
    if args.reuse and not (args.home and (Path(args.home) / "bench-setup.json").exists()):
        parser.error("--reuse needs --home DIR of an earlier run (its bench-setup.json)")
    if not args.reuse and args.home and (Path(args.home) / "bench-setup.json").exists():
        parser.error(f"{args.home} holds an earlier set-up: add --reuse, or give an empty folder")
    return args


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, interrupt)
    command = shlex.join([".venv/bin/python", "bench/soak.py", *sys.argv[1:]])
    home = Home(args.home)
    interrupted = False
    try:
        if args.reuse:
            setup = json.loads((home.path / "bench-setup.json").read_text()) | {"reused": True}
            home.key = (home.path / "admin.key").read_text().strip()
            log(f"reusing the set-up in {home.path}")
        else:
            setup = build(home, args)
        tag = f"{int(time.time())}"
        readership = load_readership(home.path / "bench-data", tag, args.seed)
        readership.new_reader_share = args.new_reader_share
        # Anonymous sessions leave the online state once idle this long (the engine's
        # default is 30 min): shorter than the warm-up, so the state reaches its bounds in it.
        os.environ["CLICKREC_SERVING__SESSION_IDLE_MINUTES"] = str(args.session_idle_minutes)
        with Server(home, train_interval=args.train_interval) as server:
            log(f"server up in {server.startup_s:.1f}s at {server.url} (pid {server.pid})")
            setup |= train_once(server)
            if not args.reuse:
                (home.path / "bench-setup.json").write_text(json.dumps(setup, indent=1))
            setup["archive_wait_s"] = round(asyncio.run(wait_for_archive(server)), 2)
            log(
                f"model {setup['model_version']} served, archive caught up: "
                f"soaking for {args.minutes:g} min"
            )
            soak = Soak(server, readership, args)
            started = time.time()
            try:
                asyncio.run(soak.run())
            except KeyboardInterrupt:
                interrupted = True
                log("interrupted: stopping the server")
            runs = [] if interrupted else training_runs(server, started)
    finally:
        home.cleanup()
    if not soak.samples:
        log("no sample taken")
        return 130 if interrupted else 1

    summary = summarize(soak, args)
    passed = summary["memory_flat"] and summary["errors_ok"] and not interrupted
    rows = summary_rows(summary, args)
    minutes = minute_table(minute_rows(soak))
    title = (
        f"soak: {args.minutes:g} min of POST /v1/events at {args.ingest_rate:.0f} events/s "
        f"({args.batch} per request) and recommendations at {args.rec_rate:.0f} requests/s "
        f"(mixed), a new post every {args.publish_every:.0f} s; "
        f"{args.new_reader_share:.0%} of sessions by new anonymous readers, "
        f"sessions end after {args.session_idle_minutes:g} idle minutes"
    )
    json_path = args.out_json
    doc = {
        "bench": "soak",
        "title": title,
        "command": command,
        "machine": machine(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "setup": setup,
        "interrupted": interrupted,
        "passed": passed,
        "summary": summary,
        "training_runs": runs,
        "json": str(json_path.relative_to(ROOT) if json_path.is_relative_to(ROOT) else json_path),
        "samples": soak.samples,
    }
    print(f"\n### {title}\n\n{markdown_table(rows)}\n\n{minutes}\n")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    log(f"raw samples → {json_path}")
    if interrupted:
        log(f"interrupted: {args.out_md} and {args.out_png} left as they were")
        return 130
    drawn = plot(doc, args.out_png)
    png = None
    if drawn:
        png = (
            str(args.out_png.relative_to(args.out_md.parent))
            if args.out_png.is_relative_to(args.out_md.parent)
            else str(args.out_png)
        )
        log(f"plot → {args.out_png}")
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.write_text(markdown(doc, rows, minutes, png))
    log(f"report → {args.out_md}; {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
