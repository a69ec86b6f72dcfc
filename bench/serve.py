"""Serving: GET /v1/recommendations for random readers, driven by wrk.

Set-up, timed and reported too: a catalog of ``--items`` posts (PUT /v1/items, 1000 per
request), ``--users`` readers with about ``--events-per-user`` events each over those posts,
with a popularity skew and topical tastes (``clickrec import interactions``), and
``clickrec train`` so a model is live.

Load generator: wrk (``apt-get install -y wrk``), with a Lua script that asks for a reader
drawn uniformly from the whole loaded population per request (``u0`` … ``u<users-1>``,
every one with history). Phases, all against one server: saturation (``--threads`` /
``--connections``, flat out, ``--duration`` s), then fixed rates (``--fractions`` of the
measured capacity, or ``--rates``; a Lua-paced wrk, ``--fixed-duration`` s), each beside
GET /healthz measured the same way in the same run; then a filter (sections as a
``$PARAM``, the last seven days, minus the reader's clicks) at the first fixed rate, against
the unfiltered phase at that rate. Client (wrk) and server CPU are measured in every phase.

    .venv/bin/python bench/serve.py [--duration 20] [--fractions 0.25 0.5] [--small]
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
import secrets
import time
from collections.abc import Sequence
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
    RawClient,
    Server,
    WrkResult,
    cpu_pair,
    log,
    machine_load_row,
    make_client,
    proc_rss_mb,
    report_vs,
    require_wrk,
    row,
    run_cli,
    run_healthz,
    run_wrk,
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


# Per request: a reader drawn uniformly from the loaded population, and with FILTERS one of
# them (a URL-encoded filter query) too; answers are checked, their items counted.
RECS_LUA = r"""
local READERS, PATH = __READERS__, "/v1/recommendations?num_results=__NUM__&user_id=u"
local FILTERS = {__FILTERS__}
function init(args) math.randomseed(__SEED__ + thread_id) end
function request()
  local path = PATH .. math.random(0, READERS - 1)
  if #FILTERS > 0 then path = path .. FILTERS[math.random(#FILTERS)] end
  return wrk.format("GET", path)
end
function response(status, headers, body)
  if status ~= 200 then count("refused") return end
  local _, items = body:gsub('"item_id":', "")
  count("items", items)
  if items == 0 then count("empty") end
end
"""


def recs_script(readers: int, num_results: int, seed: int, filters: Sequence[str] = ()) -> str:
    quoted = ", ".join(f'"{f}"' for f in filters)  # URL-encoded: nothing to escape in Lua
    return (
        RECS_LUA.replace("__READERS__", str(readers))
        .replace("__NUM__", str(num_results))
        .replace("__FILTERS__", quoted)
        .replace("__SEED__", str(seed))
    )


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


async def first_answer(server: Server, num_results: int, wait: bool) -> dict[str, Any]:
    """Wait for the archive (unless not ``wait``), then one answer: what is served."""
    async with make_client(server, 2) as client:
        archive_wait_s = 0.0
        if wait:
            log("waiting for the archive to catch up (GET /readyz: archive_lag == 0)")
            archive_wait_s = await archive_caught_up(client)
            log(f"archive caught up after {archive_wait_s:.1f}s")
        status, body = await client.request(
            "GET", f"/v1/recommendations?user_id=u0&num_results={num_results}"
        )
    first = orjson.loads(body)
    log(f"first answer: HTTP {status}, recipe {first.get('recipe')!r}")
    return {
        "archive_wait_s": round(archive_wait_s, 2),
        "first": {k: first.get(k) for k in ("model_version", "recipe")},
    }


def measure(server: Server, args: argparse.Namespace, readers: int) -> dict[str, Any]:
    out = asyncio.run(first_answer(server, args.num_results, not args.no_wait))
    t, c = args.threads, args.connections

    def recs(
        label: str, duration: float, rate: float | None = None, filters: Sequence[str] = ()
    ) -> WrkResult:
        script = recs_script(readers, args.num_results, secrets.randbelow(2**30), filters)
        res = run_wrk(server, "/v1/recommendations", script, label, duration, t, c, rate)
        log(
            f"{label}: {res.rps():.0f} req/s, p50 {res.latency_ms['p50']:.1f} ms, "
            f"p99 {res.latency_ms['p99']:.1f} ms, server CPU {res.cpu_pct('server'):.0f} % "
            f"(loop {res.cpu_pct('loop'):.0f} %), wrk CPU {res.cpu_pct('client'):.0f} %"
        )
        return res

    def healthz(label: str, duration: float, rate: float | None = None) -> WrkResult:
        return run_healthz(server, label, duration, t, c, rate)

    log(f"warm-up: {args.warmup:g}s flat out")
    recs("warmup", args.warmup)
    out["saturation"] = recs("recs", args.duration)
    out["healthz"] = healthz("healthz", args.duration)
    capacity = out["saturation"].rps()
    rates = args.rates or [round(f * capacity) for f in args.fractions]
    out["fixed"] = []
    for rate in rates:
        out["fixed"].append(
            {
                "rate": rate,
                "fraction": rate / capacity,
                "recs": recs(f"recs-{rate}", args.fixed_duration, rate),
                "healthz": healthz(f"healthz-{rate}", args.fixed_duration, rate),
            }
        )
    body = orjson.dumps({"expression": BENCH_FILTER.format(cutoff=time.time() - 7 * DAY)})
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=30.0) as client:
        answer = client.put("/v1/filters/bench", content=body)
        if answer.status_code != 200:
            raise RuntimeError(f"PUT /v1/filters/bench: HTTP {answer.status_code}: {answer.text}")
        filters = filter_queries(1000, 2)
        recs("filtered-warmup", args.warmup, rates[0], filters)
        out["filtered"] = recs(f"filtered-{rates[0]}", args.fixed_duration, rates[0], filters)
        models = client.get("/v1/models").json()
    out["models"] = {k: models.get(k) for k in ("live_version", "served_version")}
    return out


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


def rows_of(res: dict[str, Any], setup: dict[str, Any]) -> list[dict[str, Any]]:
    sat: WrkResult = res["saturation"]
    hz: WrkResult = res["healthz"]
    rows = [
        row("saturation: requests/s", sat.rps(), hz.rps()),
        row("saturation: p50 latency (ms)", sat.latency_ms["p50"], hz.latency_ms["p50"]),
        row("saturation: p99 latency (ms)", sat.latency_ms["p99"], hz.latency_ms["p99"]),
        row("saturation: max latency (ms)", sat.latency_ms["max"], hz.latency_ms["max"]),
        row("saturation: requests", sat.requests, hz.requests),
        row(
            "saturation: errors (socket + non-2xx), empty answers",
            f"{sat.failed}, {int(sat.counts.get('empty', 0))}",
            f"{hz.failed}",
            "0",
        ),
        row("saturation: items per answer", _items(sat), None),
        row(
            "saturation: server CPU, with its worker (% of one core)", *cpu_pair(sat, hz, "server")
        ),
        row(
            "saturation: server main thread, the event loop (% of one core)",
            *cpu_pair(sat, hz, "loop"),
        ),
        row("saturation: client CPU, wrk (% of one core)", *cpu_pair(sat, hz, "client")),
        row(
            "saturation: server CPU per request (ms)",
            sat.cpu_ms_per_request("server"),
            hz.cpu_ms_per_request("server"),
        ),
        row(
            "saturation: client CPU per request (ms)",
            sat.cpu_ms_per_request("client"),
            hz.cpu_ms_per_request("client"),
        ),
    ]
    for i, fixed in enumerate(res["fixed"]):
        rec: WrkResult = fixed["recs"]
        base: WrkResult = fixed["healthz"]
        at = f"at {fixed['rate']} req/s ({fixed['fraction']:.0%} of capacity)"
        p99 = rec.latency_ms["p99"]
        target = f"≤ {TARGET_P99_MS:.0f}: {verdict(p99 <= TARGET_P99_MS)}" if i == 0 else None
        rows += [
            row(f"{at}: achieved requests/s", rec.rps(), base.rps(), f"{fixed['rate']}"),
            row(f"{at}: p50 latency (ms)", rec.latency_ms["p50"], base.latency_ms["p50"]),
            row(f"{at}: p90 latency (ms)", rec.latency_ms["p90"], base.latency_ms["p90"]),
            row(f"{at}: p99 latency (ms)", p99, base.latency_ms["p99"], target),
            row(f"{at}: max latency (ms)", rec.latency_ms["max"], base.latency_ms["max"]),
            row(
                f"{at}: sends > 1 ms behind schedule, worst (ms)",
                f"{int(rec.late_sends['n'])}, {rec.late_sends['max_ms']:.1f}",
                f"{int(base.late_sends['n'])}, {base.late_sends['max_ms']:.1f}",
            ),
            row(
                f"{at}: errors, empty answers",
                f"{rec.failed + int(rec.counts.get('refused', 0))}, "
                f"{int(rec.counts.get('empty', 0))}",
                f"{base.failed}",
                "0",
            ),
            row(f"{at}: server CPU (% of one core)", *cpu_pair(rec, base, "server")),
            row(f"{at}: client CPU, wrk (% of one core)", *cpu_pair(rec, base, "client")),
        ]
    filtered: WrkResult = res["filtered"]
    plain: WrkResult = res["fixed"][0]["recs"]
    extra = filtered.latency_ms["p99"] - plain.latency_ms["p99"]
    at = f"at {res['fixed'][0]['rate']} req/s"
    rows += [
        row(
            f"with a filter {at}: p99 (ms), baseline the same rate without",
            filtered.latency_ms["p99"],
            plain.latency_ms["p99"],
            f"≤ +{TARGET_FILTER_MS:.0f} ms: {verdict(extra <= TARGET_FILTER_MS)}",
        ),
        row(
            f"with a filter {at}: p50 (ms), baseline without",
            filtered.latency_ms["p50"],
            plain.latency_ms["p50"],
        ),
        row(
            f"with a filter {at}: errors, empty answers",
            f"{filtered.failed + int(filtered.counts.get('refused', 0))}, "
            f"{int(filtered.counts.get('empty', 0))}",
        ),
        row("served recipe", res["first"]["recipe"], None),
        row("set-up: PUT items (s)", setup["put_items_s"]),
        row("set-up: import interactions (s)", setup["import_s"]),
        row("set-up: train (s)", setup["train_s"]),
        row("set-up: server start with replay (s)", setup["server_startup_s"]),
        row("set-up: wait for the archive to catch up (s)", res["archive_wait_s"]),
    ]
    phases = [sat, hz, filtered] + [f[k] for f in res["fixed"] for k in ("recs", "healthz")]
    rows.append(machine_load_row(phases))
    return rows


def _items(res: WrkResult) -> float:
    answered = res.requests - res.counts.get("refused", 0)
    return res.counts.get("items", 0) / answered if answered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at saturation")
    parser.add_argument("--fixed-duration", type=float, default=15.0, help="seconds per rate")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.25, 0.5],
        help="fixed rates, as fractions of the measured capacity",
    )
    parser.add_argument(
        "--rates", type=int, nargs="+", default=None, help="fixed rates (req/s), not fractions"
    )
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--items", type=int, default=50_000, help="catalog size")
    parser.add_argument("--users", type=int, default=100_000, help="distinct readers")
    parser.add_argument("--events-per-user", type=float, default=5.0, help="mean, at least 1")
    parser.add_argument("--topics", type=int, default=2000, help="taste clusters of items")
    parser.add_argument("--num-results", type=int, default=25, help="items per answer")
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
        args.duration, args.fixed_duration, args.warmup = 8.0, 6.0, 2.0
    require_wrk()

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
            res = measure(server, args, int(setup["readers"]))
            setup["server_rss_mb"] = round(proc_rss_mb(server.pid), 1)
    finally:
        home.cleanup()

    report_vs(
        "serve",
        f"serve: GET /v1/recommendations, random readers, {setup['items']:,} items, "
        f"{setup['readers']:,} readers, {setup['events']:,} events; wrk -t{args.threads} "
        f"-c{args.connections}, {args.duration:g} s at saturation, {args.fixed_duration:g} s "
        "per fixed rate (baseline: GET /healthz, same way)",
        rows_of(res, setup),
        {
            "args": vars(args),
            "setup": setup,
            "saturation": res["saturation"].summary(),
            "healthz": res["healthz"].summary(),
            "fixed": [
                {
                    "rate": f["rate"],
                    "fraction": round(f["fraction"], 3),
                    "recommendations": f["recs"].summary(),
                    "healthz": f["healthz"].summary(),
                }
                for f in res["fixed"]
            ],
            "filtered": res["filtered"].summary(),
            "first_answer": res["first"],
            "models": res["models"],
        },
        ("GET /v1/recommendations", "GET /healthz"),
    )


if __name__ == "__main__":
    main()
