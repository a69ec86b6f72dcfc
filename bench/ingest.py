"""Durable ingest over HTTP: POST /v1/events in batches, N concurrent clients, closed loop.

Baseline, in the same run and against the same server: the same number of requests to
GET /healthz by the same clients, so the table shows what the ingest path adds on top of
HTTP, auth-free routing and this load generator.

    .venv/bin/python bench/ingest.py [--clients 8] [--duration 20] [--batch 100] [--small]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import numpy as np
import orjson
from common import (
    Home,
    LoadResult,
    RawClient,
    Server,
    closed_loop,
    log,
    make_client,
    proc_rss_mb,
    report,
    row,
    verdict,
)

TARGET_EVENTS_PER_S = 20_000
EVENT_TYPES = np.array(["view", "click", "read", "share"])
EVENT_TYPE_P = [0.5, 0.3, 0.18, 0.02]


def make_bodies(n_bodies: int, batch: int, users: int, items: int, seed: int = 0) -> list[bytes]:
    """Pre-serialized request bodies, so the timed loop spends no client CPU on JSON."""
    rng = np.random.default_rng(seed)
    n = n_bodies * batch
    now = time.time()
    user = rng.integers(0, users, n)
    # A popularity skew over items, as on a real site (Zipf-like ranks).
    item = np.minimum(rng.zipf(1.3, n) - 1, items - 1)
    session = user * 10 + rng.integers(0, 3, n)
    kind = EVENT_TYPES[rng.choice(len(EVENT_TYPES), n, p=EVENT_TYPE_P)]
    ts = np.round(now - rng.uniform(0, 3600.0, n), 3)
    bodies = []
    for b in range(n_bodies):
        sl = slice(b * batch, (b + 1) * batch)
        events = [
            {
                "session_id": f"s{s}",
                "user_id": f"u{u}",
                "item_id": f"p{i}",
                "event_type": str(k),
                "timestamp": float(t),
            }
            for s, u, i, k, t in zip(
                session[sl].tolist(),
                user[sl].tolist(),
                item[sl].tolist(),
                kind[sl].tolist(),
                ts[sl].tolist(),
                strict=True,
            )
        ]
        bodies.append(orjson.dumps({"events": events}))
    return bodies


def post_events(bodies: list[bytes], batch: int) -> Any:
    async def request(client: RawClient, seq: int) -> int:
        status, body = await client.request("POST", "/v1/events", bodies[seq % len(bodies)])
        if status != 202:
            raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
        accepted = int(orjson.loads(body)["accepted"])
        if accepted != batch:
            raise RuntimeError(f"accepted {accepted} of {batch}")
        return accepted

    return request


async def get_healthz(client: RawClient, seq: int) -> int:
    status, _ = await client.request("GET", "/healthz")
    if status != 200:
        raise RuntimeError(f"HTTP {status}")
    return 1


async def measure(server: Server, args: argparse.Namespace, bodies: list[bytes]) -> dict[str, Any]:
    request = post_events(bodies, args.batch)
    async with make_client(server, args.clients) as client:
        log(f"warm-up: {args.warmup:.0f}s of ingest")
        await closed_loop(client, request, args.clients, server.pid, duration_s=args.warmup)
        log(f"measuring ingest: {args.duration:.0f}s, {args.clients} clients")
        ingest = await closed_loop(
            client, request, args.clients, server.pid, duration_s=args.duration
        )
        log(f"baseline: {ingest.requests} × GET /healthz, {args.clients} clients")
        health = await closed_loop(
            client, get_healthz, args.clients, server.pid, count=ingest.requests
        )
        ready = orjson.loads((await client.request("GET", "/readyz"))[1])
    return {"ingest": ingest, "healthz": health, "readyz": ready}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--users", type=int, default=100_000, help="distinct users in events")
    parser.add_argument("--items", type=int, default=50_000, help="distinct items in events")
    parser.add_argument("--bodies", type=int, default=1000, help="distinct bodies, cycled")
    parser.add_argument("--small", action="store_true", help="a quick check (5 s)")
    parser.add_argument("--home", type=str, default=None, help="keep the home folder here")
    args = parser.parse_args()
    if args.small:
        args.duration, args.warmup, args.bodies = 5.0, 1.0, 200

    log(f"generating {args.bodies} bodies of {args.batch} events")
    bodies = make_bodies(args.bodies, args.batch, args.users, args.items)
    home = Home(args.home)
    try:
        home.init()
        # A long trainer interval: the server's trainer would otherwise start a training run
        # inside the server once 1000 events exist, which is not what this bench measures.
        with Server(home, train_interval=3600.0) as server:
            log(f"server up in {server.startup_s:.1f}s at {server.url}")
            res = asyncio.run(measure(server, args, bodies))
            rss = proc_rss_mb(server.pid)
    finally:
        home.cleanup()

    ingest: LoadResult = res["ingest"]
    health: LoadResult = res["healthz"]
    events_per_s = ingest.units / ingest.elapsed_s
    rows = [
        row(
            "events/s (durable, accepted)",
            round(events_per_s),
            None,
            f"≥ {TARGET_EVENTS_PER_S:,}: {verdict(events_per_s >= TARGET_EVENTS_PER_S)}",
        ),
        row("requests/s", ingest.rate(), health.rate(), None),
        row("p50 latency (ms)", ingest.pct(50), health.pct(50), None),
        row("p99 latency (ms)", ingest.pct(99), health.pct(99), None),
        row("max latency (ms)", ingest.pct(100), health.pct(100), None),
        row("requests", ingest.requests, health.requests, None),
        row("errors", ingest.errors, health.errors, "0"),
        row(
            "server CPU per request (ms)", ingest.cpu_per_request_ms(), health.cpu_per_request_ms()
        ),
        row(
            "server CPU, with its worker (% of one core)",
            ingest.cpu_pct("server"),
            health.cpu_pct("server"),
        ),
        row("client CPU (% of one core)", ingest.cpu_pct("client"), health.cpu_pct("client")),
    ]
    report(
        "ingest",
        f"ingest: POST /v1/events, {args.batch} events/request, {args.clients} clients, "
        f"{args.duration:.0f} s (baseline: same requests to GET /healthz)",
        rows,
        {
            "args": vars(args),
            "ingest": ingest.summary(),
            "healthz": health.summary(),
            "readyz_after": res["readyz"],
            "server_rss_mb": round(rss, 1),
            "server_startup_s": round(server.startup_s, 2),
        },
    )


if __name__ == "__main__":
    main()
