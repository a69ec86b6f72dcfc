"""Serving latency: GET /v1/recommendations at a fixed request rate (open loop).

Set-up, timed and reported too: a catalog of ``--items`` posts (PUT /v1/items, 1000 per
request), ``--users`` readers with about ``--events-per-user`` events each over those posts,
with a popularity skew and topical tastes (``clickrec import interactions``), and
``clickrec train`` so a model is live. Then requests are scheduled at fixed times, ``--rate``
per second, and each latency is measured from its scheduled time (no coordinated
omission). Baseline, in the same run: GET /healthz of the same server at the same rate.

    .venv/bin/python bench/serve.py [--rate 200] [--duration 30] [--small]
    .venv/bin/python bench/serve.py --home DIR            # keep the set-up, then
    .venv/bin/python bench/serve.py --home DIR --reuse    # measure again without it

The order is: server up on an empty log → PUT the items → server down → import the
interactions → train → server up again (it rebuilds its online state from the log) →
wait until its worker has archived the imported backlog (GET /readyz reports
archive_lag 0; ``--no-wait`` measures at once) → warm up → measure. Importing while no
server runs keeps the server's trainer from starting a "threshold" run (it does once the
log has ``min_interactions`` events and no run has succeeded) during the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from common import (
    Home,
    LoadResult,
    RawClient,
    Server,
    log,
    make_client,
    open_loop,
    proc_rss_mb,
    report,
    row,
    run_cli,
    verdict,
)

TARGET_P99_MS = 20.0
TARGET_FILTER_MS = 3.0  # "a filter may add at most a few milliseconds at 50,000 items"
DAY = 86400.0
TOPICAL_SHARE = 0.9
CATEGORIES = [
    "politics",
    "sport",
    "tech",
    "business",
    "science",
    "health",
    "culture",
    "travel",
    "food",
    "world",
    "opinion",
    "climate",
]


def ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")


def generate(
    n_items: int, n_users: int, events_per_user: float, topics: int, now: float, seed: int
) -> tuple[list[dict[str, Any]], pa.Table]:
    """Items (as API dicts) and interactions (a table), vectorized with numpy.

    Every user gets at least one event, so there are exactly ``n_users`` distinct readers.
    Items are published over the last 14 days; each event comes some hours after its
    item's publication.
    """
    rng = np.random.default_rng(seed)
    published = np.round(now - rng.uniform(3600.0, 14 * DAY, n_items), 3)
    primary = rng.integers(0, len(CATEGORIES), n_items)
    second = (primary + rng.integers(1, len(CATEGORIES), n_items)) % len(CATEGORIES)
    has_second = rng.random(n_items) < 0.3
    items = [
        {
            "item_id": f"p{i}",
            "published_at": float(published[i]),
            "categories": [CATEGORIES[p], CATEGORIES[s]] if two else [CATEGORIES[p]],
        }
        for i, (p, s, two) in enumerate(
            zip(primary.tolist(), second.tolist(), has_second.tolist(), strict=True)
        )
    ]

    per_user = 1 + rng.poisson(events_per_user - 1.0, n_users)
    user = np.repeat(np.arange(n_users), per_user)
    n = len(user)
    # Popularity: a Zipf-like law over a random rank. Taste: items belong to one of
    # ``topics`` small topics and each reader takes TOPICAL_SHARE of their reads from a
    # favourite one, so sessions co-occur by topic and personalization has a signal.
    rank = rng.permutation(n_items)
    weight = 1.0 / (rank + 10.0) ** 1.1
    item = rng.choice(n_items, size=n, p=weight / weight.sum())
    topic = rng.integers(0, topics, n_items)
    favourite = topic[rng.integers(0, n_items, n_users)][user]
    topical = np.flatnonzero(rng.random(n) < TOPICAL_SHARE)
    by_topic = np.argsort(topic, kind="stable")
    starts = np.searchsorted(topic[by_topic], np.arange(topics + 1))
    # Within its topic, a read picks an item uniformly: popularity stays a global trait.
    lo, hi = starts[favourite[topical]], starts[favourite[topical] + 1]
    item[topical] = by_topic[lo + (rng.random(len(topical)) * (hi - lo)).astype(np.int64)]
    ts = np.minimum(published[item] + rng.exponential(0.5 * DAY, n), now - 1.0)
    ts = np.round(ts, 3)
    day = np.floor(ts / DAY).astype(np.int64)
    kind = np.array(["view", "click", "read"])[rng.choice(3, n, p=[0.5, 0.3, 0.2])]
    order = np.argsort(ts, kind="stable")
    table = pa.table(
        {
            "user_id": ids("u", user[order]),
            "session_id": pc.binary_join_element_wise(
                ids("s", user[order]), pc.cast(pa.array(day[order]), pa.string()), "-"
            ),
            "item_id": ids("p", item[order]),
            "event_type": pa.array(kind[order]),
            "timestamp": pa.array(ts[order]),
        }
    )
    return items, table


def put_items(server: Server, items: list[dict[str, Any]], batch: int) -> float:
    """PUT the catalog in batches; returns seconds taken."""
    started = time.perf_counter()
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=120.0) as client:
        for start in range(0, len(items), batch):
            body = orjson.dumps({"items": items[start : start + batch]})
            resp = client.put("/v1/items", content=body)
            if resp.status_code != 200:
                raise RuntimeError(f"PUT /v1/items: HTTP {resp.status_code}: {resp.text[:300]}")
    return time.perf_counter() - started


# The filter of the filtered phase: the sections a reader follows (a parameter), the last
# seven days, and nothing the reader already clicked (their live interactions).
BENCH_FILTER = (
    "INCLUDE ItemID WHERE Items.CATEGORIES IN ($SECTIONS) "
    "| EXCLUDE ItemID WHERE Items.PUBLISHED_AT < {cutoff} "
    '| EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("click")'
)


def filter_queries(n: int, seed: int) -> list[str]:
    """Per request: the filter and two sections as its $SECTIONS value, URL-encoded."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(CATEGORIES), (n, 2)).tolist()
    return [
        "&filter=bench&filter_values="
        + quote(orjson.dumps({"SECTIONS": f'"{CATEGORIES[a]}","{CATEGORIES[b]}"'}).decode())
        for a, b in picks
    ]


def recommendations(n_users: int, n_results: int, seed: int, extra: list[str] | None = None) -> Any:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, 1_000_000).tolist()
    empty = [0]

    async def request(client: RawClient, seq: int) -> int:
        path = f"/v1/recommendations?user_id=u{users[seq % len(users)]}&num_results={n_results}"
        if extra:
            path += extra[seq % len(extra)]
        status, body = await client.request("GET", path)
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        got = len(orjson.loads(body)["items"])
        if got == 0:
            empty[0] += 1
        return got

    request.empty = empty  # type: ignore[attr-defined]
    return request


async def get_healthz(client: RawClient, seq: int) -> int:
    status, _ = await client.request("GET", "/healthz")
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    return 1


async def archive_caught_up(client: RawClient, timeout_s: float = 900.0) -> float:
    """Wait until /readyz reports no archive lag; returns the seconds waited.

    After an import, the server's worker copies the whole backlog from the log to the lake
    when it starts; measuring during that copy would measure the copy (see --no-wait).
    """
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        status, body = await client.request("GET", "/readyz")
        lag = orjson.loads(body).get("checks", {}).get("archive_lag") if status == 200 else None
        if lag == 0:
            break
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def measure(server: Server, args: argparse.Namespace, readers: int) -> dict[str, Any]:
    rec = recommendations(readers, args.num_results, args.seed)
    async with make_client(server, args.connections) as client:
        archive_wait_s = 0.0
        if not args.no_wait:
            log("waiting for the archive to catch up (GET /readyz: archive_lag == 0)")
            archive_wait_s = await archive_caught_up(client)
            log(f"archive caught up after {archive_wait_s:.1f}s")
        status, body = await client.request(
            "GET", f"/v1/recommendations?user_id=u0&num_results={args.num_results}"
        )
        first = orjson.loads(body)
        log(f"first answer: HTTP {status}, recipe {first.get('recipe')!r}")
        log(f"warm-up: {args.warmup:.0f}s at {args.rate:.0f}/s")
        await open_loop(client, rec, args.rate, args.warmup, server.pid)
        log(f"measuring recommendations: {args.duration:.0f}s at {args.rate:.0f}/s")
        recs = await open_loop(client, rec, args.rate, args.duration, server.pid)
        log(f"baseline: GET /healthz, {args.duration:.0f}s at {args.rate:.0f}/s")
        health = await open_loop(client, get_healthz, args.rate, args.duration, server.pid)
        body = orjson.dumps({"expression": BENCH_FILTER.format(cutoff=time.time() - 7 * DAY)})
        status, answer = await client.request("PUT", "/v1/filters/bench", body)
        if status != 200:
            raise RuntimeError(f"PUT /v1/filters/bench: HTTP {status}: {answer[:300]!r}")
        filtered = recommendations(readers, args.num_results, 1, filter_queries(10_000, 2))
        log(f"with a filter: {args.duration:.0f}s at {args.rate:.0f}/s")
        await open_loop(client, filtered, args.rate, args.warmup, server.pid)
        with_filter = await open_loop(client, filtered, args.rate, args.duration, server.pid)
        models = orjson.loads((await client.request("GET", "/v1/models"))[1])
    return {
        "archive_wait_s": round(archive_wait_s, 2),
        "recs": recs,
        "healthz": health,
        "filtered": with_filter,
        "filtered_empty": filtered.empty[0],
        "empty_answers": rec.empty[0],
        "first": {k: first.get(k) for k in ("model_version", "recipe")},
        "models": {k: models.get(k) for k in ("live_version", "served_version")},
    }


def build(home: Home, args: argparse.Namespace) -> dict[str, Any]:
    """Generate the data, load the catalog and the history, train; returns the timings."""
    log(f"generating {args.items} items and {args.users} readers")
    t0 = time.perf_counter()
    items, interactions = generate(
        args.items, args.users, args.events_per_user, args.topics, time.time(), args.seed
    )
    setup: dict[str, Any] = {
        "generate_s": round(time.perf_counter() - t0, 2),
        "items": len(items),
        "readers": args.users,
        "events": interactions.num_rows,
    }
    home.init()
    csv_path = home.path / "bench-data" / "interactions.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    pacsv.write_csv(interactions, str(csv_path))
    log(f"{interactions.num_rows} interactions → {csv_path}")

    with Server(home) as server:
        log(f"PUT {len(items)} items, {args.item_batch} per request")
        setup["put_items_s"] = round(put_items(server, items, args.item_batch), 2)
    log(f"items in {setup['put_items_s']}s; importing interactions")
    imp = run_cli(["import", "interactions", str(csv_path), "--home", str(home.path)], home.logs)
    setup["import_s"] = round(imp.wall_s, 2)
    log(f"imported in {imp.wall_s:.1f}s; training")
    train = run_cli(["train", "--home", str(home.path)], home.logs)
    setup["train_s"] = round(train.wall_s, 2)
    setup["train_stdout"] = train.stdout.strip()
    log(f"trained in {train.wall_s:.1f}s: {train.stdout.strip().splitlines()[0]}")
    return setup


def worst(result: LoadResult) -> float:
    return max((w["p99_ms"] for w in result.timeline(5.0)), default=float("nan"))


def best(result: LoadResult) -> float:
    return min((w["p99_ms"] for w in result.timeline(5.0)), default=float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--items", type=int, default=50_000, help="catalog size")
    parser.add_argument("--users", type=int, default=100_000, help="distinct readers")
    parser.add_argument("--events-per-user", type=float, default=5.0, help="mean, at least 1")
    parser.add_argument("--topics", type=int, default=2000, help="taste clusters of items")
    parser.add_argument("--num-results", type=int, default=25, help="items per answer")
    parser.add_argument("--connections", type=int, default=32, help="client connection pool")
    parser.add_argument("--item-batch", type=int, default=1000, help="items per PUT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="~10x smaller, for a quick check")
    parser.add_argument("--home", type=str, default=None, help="keep the home folder here")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="measure at once, without waiting for the archive to catch up after start",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="with --home of an earlier run: skip the set-up"
    )
    args = parser.parse_args()
    if args.small:
        args.items //= 10
        args.users //= 10
        args.topics //= 10
        args.duration, args.warmup = 10.0, 2.0

    home = Home(args.home)
    setup_file = home.path / "bench-setup.json"
    if args.reuse and not setup_file.exists():
        parser.error(f"--reuse needs --home DIR of an earlier run ({setup_file} is missing)")
    try:
        if args.reuse:
            setup = json.loads(setup_file.read_text())
            setup["reused"] = True
            home.key = (home.path / "admin.key").read_text().strip()
            log(f"reusing the set-up in {home.path}")
        else:
            setup = build(home, args)
            setup_file.write_text(json.dumps(setup, indent=1))
        with Server(home) as server:
            setup["server_startup_s"] = round(server.startup_s, 2)
            log(f"server up in {server.startup_s:.1f}s (replays the log into the online state)")
            res = asyncio.run(measure(server, args, int(setup["readers"])))
            setup["server_rss_mb"] = round(proc_rss_mb(server.pid), 1)
    finally:
        home.cleanup()

    recs: LoadResult = res["recs"]
    health: LoadResult = res["healthz"]
    filtered: LoadResult = res["filtered"]
    p99 = recs.pct(99)
    rows = [
        row(
            "p99 latency (ms)",
            p99,
            health.pct(99),
            f"≤ {TARGET_P99_MS:.0f}: {verdict(p99 <= TARGET_P99_MS)}",
        ),
        row("p50 latency (ms)", recs.pct(50), health.pct(50)),
        row("p90 latency (ms)", recs.pct(90), health.pct(90)),
        row("max latency (ms)", recs.pct(100), health.pct(100)),
        row("worst 5-s window p99 (ms)", worst(recs), worst(health)),
        row("best 5-s window p99 (ms)", best(recs), best(health)),
        row("achieved requests/s", recs.rate(), health.rate(), f"{args.rate:.0f}"),
        row("errors", recs.errors, health.errors, "0"),
        row("empty answers", res["empty_answers"], None),
        row("served recipe", res["first"]["recipe"], None),
        row("client send lag p99 (ms)", recs.lag_pct(99), health.lag_pct(99)),
        row(
            "with a filter: p99 (ms), baseline without",
            filtered.pct(99),
            p99,
            f"≤ +{TARGET_FILTER_MS:.0f} ms: {verdict(filtered.pct(99) - p99 <= TARGET_FILTER_MS)}",
        ),
        row("with a filter: p50 (ms), baseline without", filtered.pct(50), recs.pct(50)),
        row("with a filter: errors, empty answers", filtered.errors, res["filtered_empty"]),
        row("server CPU per request (ms)", recs.cpu_per_request_ms(), health.cpu_per_request_ms()),
        row(
            "server CPU, with its worker (% of one core)",
            recs.cpu_pct("server"),
            health.cpu_pct("server"),
        ),
        row("client CPU (% of one core)", recs.cpu_pct("client"), health.cpu_pct("client")),
        row("set-up: PUT items (s)", setup["put_items_s"]),
        row("set-up: import interactions (s)", setup["import_s"]),
        row("set-up: train (s)", setup["train_s"]),
        row("set-up: server start with replay (s)", setup["server_startup_s"]),
        row("set-up: wait for the archive to catch up (s)", res["archive_wait_s"]),
    ]
    report(
        "serve",
        f"serve: GET /v1/recommendations at {args.rate:.0f}/s for {args.duration:.0f} s, "
        f"{setup['items']:,} items, {setup['readers']:,} readers, {setup['events']:,} events "
        "(baseline: GET /healthz at the same rate)",
        rows,
        {
            "args": vars(args),
            "setup": setup,
            "recommendations": recs.summary(),
            "healthz": health.summary(),
            "filtered": filtered.summary(),
            "first_answer": res["first"],
            "models": res["models"],
        },
    )


if __name__ == "__main__":
    main()
