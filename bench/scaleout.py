"""Scale-out on one machine: API processes and the Redis event log, driven by wrk.

For each configuration (event log × API processes: ``serve --processes N``), on a fresh
home: POST /v1/events flat out (``--batch`` events per request, client event ids, so the
dedup runs), then GET /v1/recommendations for readers of those events flat out, then
GET /healthz the same way (the same-run baseline: HTTP, wrk and this machine). The first
configuration, the embedded SQLite log with one process, is the baseline of the others.

Then cross-replica freshness: two `clickrec serve` processes (two replicas, two ports) on
the same stores; each probe sends a click to replica A and, once A acknowledged it, asks
replica B for the reader's history; the probe counts as fresh when B's answer has the
click. Reported: the share fresh, and ack → B's answer p50/p99.

Redis (Debian's redis-server) is started by this script, with ``appendonly yes`` and
``appendfsync always`` (the durability the engine requires), in a temporary folder; its
memory per million events (with their dedup ids) is read from INFO after the ingest phase.

    .venv/bin/python bench/scaleout.py [--duration 10] [--processes 1 2 4] [--logs sqlite redis]

On a 2-core machine wrk and the server share the cores: read the CPU columns before
concluding anything about a bigger machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from common import Home, Server, free_port, log, proc_cpu_seconds, report, row, run_healthz, run_wrk
from ingest import ingest_script, write_pool
from serve import recs_script


@contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    """A throwaway redis-server with the durability the engine requires; (URL, pid)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    folder = Path(tempfile.mkdtemp(prefix="clickrec-bench-redis-"))
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    args += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def redis_memory(url: str) -> tuple[int, int]:
    """(bytes the server uses, events in the log's stream)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        used = int(client.info("memory")["used_memory"])
        events = sum(int(client.xlen(k)) for k in client.scan_iter("*events*"))
        return used, events
    finally:
        client.close()


def flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


def one_config(
    args: argparse.Namespace, pool: Path, log_url: str | None, n: int, redis_pid: int | None
) -> dict:
    env = {"CLICKREC_STORES__EVENT_LOG": log_url} if log_url else {}
    home = Home()
    try:
        home.init(env)
        with Server(home, args=["--processes", str(n)], env=env) as server:
            time.sleep(1.0 if n == 1 else 3.0)  # every process up and accepting
            t, c, d = args.threads, args.connections, args.duration
            script = ingest_script(pool, args.batch, "counter")
            redis_cpu0 = proc_cpu_seconds(redis_pid) if redis_pid else 0.0
            ingest = run_wrk(server, "/v1/events", script, f"ingest-{n}", d, t, c)
            redis_cpu = (proc_cpu_seconds(redis_pid) - redis_cpu0) if redis_pid else None
            log(f"  ingest: {ingest.per_s('accepted'):,.0f} events/s")
            memory = redis_memory(log_url) if log_url else None
            recs = recs_script(args.users, 25, 0)
            served = run_wrk(server, "/v1/recommendations", recs, f"recs-{n}", d, t, c)
            log(f"  recommendations: {served.rps():,.0f} req/s")
            healthz = run_healthz(server, f"healthz-{n}", d, t, c)
        return {
            "ingest": ingest,
            "recs": served,
            "healthz": healthz,
            "memory": memory,
            "redis_cpu_pct": None if redis_cpu is None else 100 * redis_cpu / ingest.elapsed_s,
        }
    finally:
        home.cleanup()


def freshness(log_url: str | None, probes: int) -> dict[str, Any]:
    """Two replicas on the same stores: a click sent to A, read back from B."""
    env = {"CLICKREC_STORES__EVENT_LOG": log_url} if log_url else {}
    home = Home()
    try:
        home.init(env)
        with Server(home, env=env) as a, Server(home, env=env) as b:
            headers = a.headers()
            fresh, waits = 0, []
            with httpx.Client(headers=headers, timeout=30) as http:
                for k in range(probes):
                    event = {"user_id": f"f{k}", "session_id": "s", "item_id": f"p{k % 500}"}
                    sent = http.post(f"{a.url}/v1/events", json={"events": [event]})
                    acked = time.perf_counter()
                    assert sent.status_code == 202, sent.text
                    got = http.get(f"{b.url}/v1/users/f{k}", params={"limit": 1})
                    waits.append(time.perf_counter() - acked)
                    history = got.json().get("history", []) if got.status_code == 200 else []
                    fresh += bool(history) and history[0]["item_id"] == event["item_id"]
        waits.sort()
        return {
            "probes": probes,
            "fresh": fresh,
            "p50_ms": 1000 * statistics.median(waits),
            "p99_ms": 1000 * waits[int(0.99 * (len(waits) - 1))],
        }
    finally:
        home.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--users", type=int, default=20_000, help="readers in the events")
    parser.add_argument("--items", type=int, default=5_000, help="items in the events")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--logs", nargs="+", default=["sqlite", "redis"])
    parser.add_argument("--probes", type=int, default=300, help="freshness probes")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="clickrec-bench-scaleout-"))
    pool = work / "pool.jsonl"
    write_pool(pool, 100_000, args.users, args.items)
    results: dict[tuple[str, int], dict] = {}
    fresh: dict[str, dict] = {}
    with redis_server() as (url, redis_pid):
        for backend in args.logs:
            for n in args.processes:
                log(f"{backend} log, {n} API process(es)")
                log_url = url if backend == "redis" else None
                if log_url:
                    flush(log_url)
                pid = redis_pid if log_url else None
                results[(backend, n)] = one_config(args, pool, log_url, n, pid)
            log(f"{backend} log: cross-replica freshness")
            if backend == "redis":
                flush(url)
            fresh[backend] = freshness(url if backend == "redis" else None, args.probes)
    shutil.rmtree(work, ignore_errors=True)
    rows_out = rows(results, fresh, args)
    title = "Scale-out on one machine (serve --processes, Redis event log)"
    report("scaleout", title, rows_out, {"args": vars(args)})


def rows(
    results: dict[tuple[str, int], dict], fresh: dict[str, dict], args: argparse.Namespace
) -> list[dict[str, Any]]:
    base = results.get(("sqlite", 1)) or next(iter(results.values()))
    out = []
    for (backend, n), r in results.items():
        ingest, recs, healthz = r["ingest"], r["recs"], r["healthz"]
        cpu = f"{ingest.cpu_pct('server'):.0f} %"
        if r["redis_cpu_pct"] is not None:
            cpu += f", redis-server {r['redis_cpu_pct']:.0f} %"
        out.append(
            row(
                f"{backend}, {n} process(es): ingest events/s (CPU: server, redis)",
                f"{ingest.per_s('accepted'):,.0f} ({cpu})",
                f"{base['ingest'].per_s('accepted'):,.0f}",
            )
        )
        out.append(
            row(
                f"{backend}, {n} process(es): recommendations req/s, p99 ms",
                f"{recs.rps():,.0f}, {recs.latency_ms['p99']:.1f}",
                f"{base['recs'].rps():,.0f}; /healthz {healthz.rps():,.0f}",
            )
        )
        if r["memory"]:
            used, events = r["memory"]
            per_million = used / max(events, 1) * 1e6 / 2**20
            label = f"redis: memory per million events (with dedup ids), {n} process(es)"
            out.append(row(label, f"{per_million:,.0f} MiB ({events:,} events)"))
    for backend, f in fresh.items():
        out.append(
            row(
                f"{backend}: click on replica A in replica B's next answer",
                f"{f['fresh']}/{f['probes']}, ack→answer p50 {f['p50_ms']:.1f} ms, "
                f"p99 {f['p99_ms']:.1f} ms",
                target="every probe",
            )
        )
    return out


if __name__ == "__main__":
    main()
