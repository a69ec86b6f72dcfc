"""Durable ingest over HTTP: POST /v1/events in batches, driven by wrk.

Durable: the server answers 202 only after the batch's COMMIT has been synced to disk (the
event log runs WAL with ``synchronous=FULL``), so every accepted event survives a crash.

Load generator: wrk (``apt-get install -y wrk``), not Python: the former asyncio client
spent more CPU per request than the server and under-reported ingest by ~3×. Each request
body is built in wrk's Lua from a pool of pre-generated events (``--pool``, cycled: users,
Zipf-skewed items, event types, times in the last hour) with a fresh ``event_id`` per event
(``--event-ids counter``: "<run>-<thread>-<n>", time-ordered like the server's own ids;
``random``: UUID-like, so the log's unique index is written at random places; ``none``: no
ids, the server makes them). With ids the log's dedup lookup runs for every event (none is
a duplicate: the table shows 0); without, it is skipped, as for any event without an id.

Phases, all against one server: saturation (``--threads``/``--connections``, flat out,
``--duration`` s) with client ids, again with server-made ids (what dedup costs), then
GET /healthz the same way (the baseline: HTTP, wrk and this machine); then at fixed rates
(``--fractions`` of the measured capacity, a Lua-paced wrk, ``--fixed-duration`` s) each
beside GET /healthz at the same rate. Client (wrk) and server CPU are measured in every
phase, so the table shows which side was the limit.

    .venv/bin/python bench/ingest.py [--duration 20] [--batch 100] [--small]
"""

from __future__ import annotations

import argparse
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
from common import (
    Home,
    Server,
    WrkResult,
    cpu_pair,
    log,
    machine_load_row,
    proc_rss_mb,
    report_vs,
    require_wrk,
    row,
    run_healthz,
    run_wrk,
    verdict,
)

TARGET_EVENTS_PER_S = 20_000
EVENT_TYPES = np.array(["view", "click", "read", "share"])
EVENT_TYPE_P = [0.5, 0.3, 0.18, 0.02]

# Per request: BATCH events from the pool (each thread starts elsewhere in it), each with a
# new event_id unless IDS is "none"; answers are checked and their counts summed.
INGEST_LUA = r"""
local BATCH, IDS, RUN = __BATCH__, "__IDS__", "__RUN__"
local frags, parts, pos, seq = {}, {}, 0, 0
function init(args)
  for line in io.lines("__POOL__") do frags[#frags + 1] = line end
  pos = (thread_id * 104729) % #frags
  math.randomseed(__SEED__ + thread_id)
end
local function event_id()
  seq = seq + 1
  if IDS == "counter" then return string.format("%s-%d-%010d", RUN, thread_id, seq) end
  local r = math.random
  return string.format("%04x%04x-%04x-4%03x-%04x-%04x%04x%04x", r(0, 65535), r(0, 65535),
    r(0, 65535), r(0, 4095), r(32768, 49151), r(0, 65535), r(0, 65535), r(0, 65535))
end
function request()
  for j = 1, BATCH do
    pos = pos % #frags + 1
    if IDS == "none" then
      parts[j] = "{" .. frags[pos]
    else
      parts[j] = '{"event_id":"' .. event_id() .. '",' .. frags[pos]
    end
  end
  local body = '{"events":[' .. table.concat(parts, ",", 1, BATCH) .. ']}'
  return wrk.format("POST", nil, nil, body)
end
function response(status, headers, body)
  if status == 202 then
    count("accepted", tonumber(body:match('"accepted":(%d+)')) or 0)
    count("duplicates", tonumber(body:match('"duplicates":(%d+)')) or 0)
  else
    count("refused")
  end
end
"""


def write_pool(path: Path, n: int, users: int, items: int, seed: int = 0) -> None:
    """``n`` events, one per line, each a JSON object without its opening brace (the Lua
    script puts the event_id there)."""
    rng = np.random.default_rng(seed)
    now = time.time()
    user = rng.integers(0, users, n)
    # A popularity skew over items, as on a real site (Zipf-like ranks).
    item = np.minimum(rng.zipf(1.3, n) - 1, items - 1)
    session = user * 10 + rng.integers(0, 3, n)
    kind = EVENT_TYPES[rng.choice(len(EVENT_TYPES), n, p=EVENT_TYPE_P)]
    ts = np.round(now - rng.uniform(0, 3600.0, n), 3)
    with open(path, "wb") as out:
        for s, u, i, k, t in zip(
            session.tolist(), user.tolist(), item.tolist(), kind.tolist(), ts.tolist(), strict=True
        ):
            event = {
                "session_id": f"s{s}",
                "user_id": f"u{u}",
                "item_id": f"p{i}",
                "event_type": k,
                "timestamp": t,
            }
            out.write(orjson.dumps(event)[1:] + b"\n")


def ingest_script(pool: Path, batch: int, ids: str) -> str:
    """The Lua script of one phase: its own id space (RUN) and random seed, so no phase
    repeats the ids of another."""
    return (
        INGEST_LUA.replace("__BATCH__", str(batch))
        .replace("__IDS__", ids)
        .replace("__RUN__", secrets.token_hex(4))  # a new id space per phase
        .replace("__POOL__", str(pool))
        .replace("__SEED__", str(secrets.randbelow(2**30)))
    )


def measure(server: Server, args: argparse.Namespace, pool: Path) -> dict[str, Any]:
    t, c = args.threads, args.connections

    def ingest(label: str, ids: str, duration: float, rate: float | None = None) -> WrkResult:
        script = ingest_script(pool, args.batch, ids)
        res = run_wrk(server, "/v1/events", script, label, duration, t, c, rate)
        log(
            f"{label}: {res.rps():.0f} req/s, {res.per_s('accepted'):,.0f} events/s, "
            f"p99 {res.latency_ms['p99']:.1f} ms, server CPU {res.cpu_pct('server'):.0f} %, "
            f"wrk CPU {res.cpu_pct('client'):.0f} %"
        )
        return res

    def healthz(label: str, duration: float, rate: float | None = None) -> WrkResult:
        return run_healthz(server, label, duration, t, c, rate)

    log(f"warm-up: {args.warmup:g}s of ingest")
    ingest("warmup", args.event_ids, args.warmup)
    out: dict[str, Any] = {"saturation": ingest("ingest", args.event_ids, args.duration)}
    if args.event_ids != "none":
        out["server_ids"] = ingest("ingest-server-ids", "none", args.duration)
    out["healthz"] = healthz("healthz", args.duration)
    capacity = out["saturation"].rps()
    out["fixed"] = []
    for fraction in args.fractions:
        rate = round(fraction * capacity)
        label = f"{fraction:.0%}".replace("%", "pct")
        out["fixed"].append(
            {
                "fraction": fraction,
                "rate": rate,
                "ingest": ingest(f"ingest-{label}", args.event_ids, args.fixed_duration, rate),
                "healthz": healthz(f"healthz-{label}", args.fixed_duration, rate),
            }
        )
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=10.0) as client:
        out["readyz"] = client.get("/readyz").json()
    return out


def rows_of(res: dict[str, Any]) -> list[dict[str, Any]]:
    sat: WrkResult = res["saturation"]
    hz: WrkResult = res["healthz"]
    events_per_s = sat.per_s("accepted")
    rows = [
        row(
            "saturation: events/s (durable, accepted)",
            round(events_per_s),
            None,
            f"≥ {TARGET_EVENTS_PER_S:,}: {verdict(events_per_s >= TARGET_EVENTS_PER_S)}",
        ),
        row("saturation: requests/s", sat.rps(), hz.rps()),
        row("saturation: p50 latency (ms)", sat.latency_ms["p50"], hz.latency_ms["p50"]),
        row("saturation: p99 latency (ms)", sat.latency_ms["p99"], hz.latency_ms["p99"]),
        row("saturation: max latency (ms)", sat.latency_ms["max"], hz.latency_ms["max"]),
        row("saturation: requests", sat.requests, hz.requests),
        row(
            "saturation: errors (socket + non-2xx), refused, duplicates",
            f"{sat.failed}, {int(sat.counts.get('refused', 0))}, "
            f"{int(sat.counts.get('duplicates', 0))}",
            f"{hz.failed}",
            "0",
        ),
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
    if "server_ids" in res:
        srv: WrkResult = res["server_ids"]
        rows.append(
            row(
                "saturation, no event_id (server-made ids, no dedup lookup): events/s; "
                f"server CPU {srv.cpu_pct('server'):.0f} %",
                round(srv.per_s("accepted")),
                None,
            )
        )
    for fixed in res["fixed"]:
        ing: WrkResult = fixed["ingest"]
        base: WrkResult = fixed["healthz"]
        at = f"at {fixed['rate']} req/s ({fixed['fraction']:.0%} of capacity)"
        rows += [
            row(f"{at}: achieved requests/s", ing.rps(), base.rps(), f"{fixed['rate']}"),
            row(f"{at}: p50 latency (ms)", ing.latency_ms["p50"], base.latency_ms["p50"]),
            row(f"{at}: p99 latency (ms)", ing.latency_ms["p99"], base.latency_ms["p99"]),
            row(f"{at}: max latency (ms)", ing.latency_ms["max"], base.latency_ms["max"]),
            row(
                f"{at}: sends > 1 ms behind schedule, worst (ms)",
                f"{int(ing.late_sends['n'])}, {ing.late_sends['max_ms']:.1f}",
                f"{int(base.late_sends['n'])}, {base.late_sends['max_ms']:.1f}",
            ),
            row(f"{at}: errors", ing.failed + int(ing.counts.get("refused", 0)), base.failed, "0"),
            row(f"{at}: server CPU (% of one core)", *cpu_pair(ing, base, "server")),
            row(f"{at}: client CPU, wrk (% of one core)", *cpu_pair(ing, base, "client")),
        ]
    phases = _phases(res)
    rows.append(machine_load_row(phases))
    return rows


def _phases(res: dict[str, Any]) -> list[WrkResult]:
    phases = [res["saturation"], res["healthz"]] + (
        [res["server_ids"]] if "server_ids" in res else []
    )
    for fixed in res["fixed"]:
        phases += [fixed["ingest"], fixed["healthz"]]
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", "--clients", type=int, default=32, help="wrk connections")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds at saturation")
    parser.add_argument("--fixed-duration", type=float, default=15.0, help="seconds per rate")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.25, 0.5],
        help="fixed rates, as fractions of the measured capacity",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument(
        "--event-ids",
        choices=["counter", "random", "none"],
        default="counter",
        help="ids the client gives its events (none: the server makes them)",
    )
    parser.add_argument("--users", type=int, default=100_000, help="distinct users in events")
    parser.add_argument("--items", type=int, default=50_000, help="distinct items in events")
    parser.add_argument("--pool", type=int, default=100_000, help="distinct events, cycled")
    parser.add_argument("--small", action="store_true", help="a quick check (~45 s)")
    parser.add_argument("--home", type=str, default=None, help="keep the home folder here")
    args = parser.parse_args()
    if args.small:
        args.duration, args.fixed_duration, args.warmup, args.pool = 5.0, 5.0, 1.0, 20_000
    require_wrk()

    home = Home(args.home)
    try:
        home.init()
        pool = home.path / "bench-wrk" / "events.jsonl"
        pool.parent.mkdir(parents=True, exist_ok=True)
        log(f"writing a pool of {args.pool:,} events to {pool}")
        write_pool(pool, args.pool, args.users, args.items)
        # A long trainer interval: the server's trainer would otherwise start a training run
        # inside the server once 1000 events exist, which is not what this bench measures.
        with Server(home, train_interval=3600.0) as server:
            log(f"server up in {server.startup_s:.1f}s at {server.url} (pid {server.pid})")
            res = measure(server, args, pool)
            rss = proc_rss_mb(server.pid)
    finally:
        home.cleanup()

    rows = rows_of(res)
    fixed = {
        f"{f['fraction']:g}": {
            "rate": f["rate"],
            "ingest": f["ingest"].summary(),
            "healthz": f["healthz"].summary(),
        }
        for f in res["fixed"]
    }
    report_vs(
        "ingest",
        f"ingest: POST /v1/events, {args.batch} events/request (event ids: {args.event_ids}), "
        f"wrk -t{args.threads} -c{args.connections}, {args.duration:g} s at saturation, "
        f"{args.fixed_duration:g} s per fixed rate (baseline: GET /healthz, same way)",
        rows,
        {
            "args": vars(args),
            "saturation": res["saturation"].summary(),
            "server_ids": res["server_ids"].summary() if "server_ids" in res else None,
            "healthz": res["healthz"].summary(),
            "fixed": fixed,
            "server_rss_mb": round(rss, 1),
            "server_startup_s": round(server.startup_s, 2),
            "readyz_after": res["readyz"],
        },
        ("POST /v1/events", "GET /healthz"),
    )


if __name__ == "__main__":
    main()
