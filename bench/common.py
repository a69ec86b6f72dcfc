"""Shared pieces of the benchmarks: a server under test, CLI runs, load loops and the report.

Nothing here imports clickrec's internals except where a script asks for them: the
benchmarks drive the engine the way a user does, through ``clickrec`` and its HTTP API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
VENV_BIN = Path(sys.executable).parent
CLICKREC = str(VENV_BIN / "clickrec") if (VENV_BIN / "clickrec").exists() else "clickrec"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes -------------------------------------------------------------------------------
@dataclass
class CliRun:
    """One finished ``clickrec`` command: wall and CPU seconds, peak memory, output."""

    args: list[str]
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_cli(
    args: Sequence[str], log_dir: Path, check: bool = True, env: dict[str, str] | None = None
) -> CliRun:
    """Run ``clickrec <args>`` to its end (``env`` added to this process's environment);
    its own rusage gives CPU time and peak RSS."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stem = "-".join(a for a in args[:2] if not a.startswith("-")).replace("/", "_")
    out_path, err_path = log_dir / f"{stem}.out", log_dir / f"{stem}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [CLICKREC, *args],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    run = CliRun(
        list(args),
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024.0,
        proc.returncode,
        out_path.read_text(),
        err_path.read_text(),
    )
    if check and run.returncode != 0:
        raise RuntimeError(
            f"clickrec {' '.join(args)} exited {run.returncode}:\n{run.stderr[-3000:]}"
        )
    return run


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def descendants(pid: int) -> list[int]:
    """Live child processes of ``pid``, recursively (``clickrec serve`` starts a worker)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of its live descendants."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(p)
    return total


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Home:
    """A temporary clickrec home (removed at the end unless ``keep``) and its admin key."""

    def __init__(self, path: Path | None = None, keep: bool = False) -> None:
        self.keep = keep or path is not None
        self.path = Path(path) if path else Path(tempfile.mkdtemp(prefix="clickrec-bench-"))
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs = self.path / "bench-logs"
        self.key = ""

    def init(self, env: dict[str, str] | None = None) -> CliRun:
        run = run_cli(["init", "--home", str(self.path)], self.logs, env=env)
        keys = [line.strip() for line in run.stdout.splitlines() if line.strip().startswith("ck_")]
        saved = self.path / "admin.key"
        self.key = keys[0] if keys else saved.read_text().strip()
        return run

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


# The load generator is one client address with one key, far beyond what the default rate
# limits allow one client (they protect a server from exactly that): lifted for the run.
UNLIMITED = {
    f"CLICKREC_LIMITS__{name}": "1e9"
    for name in ("PER_ADDRESS_RPS", "INGEST_RPS", "READ_RPS", "ADMIN_RPS")
}


class Server:
    """``clickrec serve`` as a subprocess; started on entry, SIGTERM (then SIGKILL) on exit."""

    def __init__(
        self,
        home: Home,
        train_interval: float = 3600.0,
        port: int | None = None,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ):
        self.home = home
        self.train_interval = train_interval
        self.extra_args = list(args)  # e.g. --processes 2
        self.env = env or {}  # e.g. CLICKREC_STORES__EVENT_LOG
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = float("nan")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 600.0) -> None:
        self.home.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.home.logs / f"serve-{self.port}.log", "ab")  # noqa: SIM115 - kept open
        args = [
            CLICKREC,
            "serve",
            "--home",
            str(self.home.path),
            "--port",
            str(self.port),
            "--train-interval",
            str(self.train_interval),
            *self.extra_args,
        ]
        started = time.perf_counter()
        env = {**os.environ, **UNLIMITED, **self.env}
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env
        )
        log.close()
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not healthy after {timeout}s: {self.tail()}")
                time.sleep(0.1)
        self.startup_s = time.perf_counter() - started

    def tail(self, chars: int = 3000) -> str:
        path = self.home.logs / f"serve-{self.port}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Server:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.home.key}", "content-type": "application/json"}


# -- load ------------------------------------------------------------------------------------
@dataclass
class LoadResult:
    """Latencies (seconds) of the requests of one measured phase, and what it cost."""

    latencies: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # seconds into the phase, per latency
    send_lags: list[float] = field(default_factory=list)  # open loop: start - scheduled time
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    units: int = 0  # events accepted, items returned…: whatever the phase counts
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    server_cpu_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def record(self, latency_s: float, start_s: float, units: int) -> None:
        """One answered request: its latency, when it started in the phase, what it counted."""
        self.latencies.append(latency_s)
        self.starts.append(start_s)
        self.units += units

    def pct(self, q: float) -> float:
        """A latency percentile in milliseconds."""
        return float(np.percentile(self.latencies, q)) * 1e3 if self.latencies else float("nan")

    def lag_pct(self, q: float) -> float:
        return float(np.percentile(self.send_lags, q)) * 1e3 if self.send_lags else float("nan")

    def rate(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else float("nan")

    def cpu_pct(self, which: str) -> float:
        cpu = self.client_cpu_s if which == "client" else self.server_cpu_s
        return 100.0 * cpu / self.elapsed_s if self.elapsed_s else float("nan")

    def cpu_per_request_ms(self) -> float:
        """Server CPU (with its worker) per answered request, in milliseconds."""
        return 1e3 * self.server_cpu_s / self.requests if self.requests else float("nan")

    def timeline(self, window_s: float = 5.0) -> list[dict[str, float]]:
        """Requests and p50/p99 latency (ms) per window of the phase: shows stalls."""
        if not self.latencies:
            return []
        starts, lat = np.asarray(self.starts), np.asarray(self.latencies) * 1e3
        slot = (starts // window_s).astype(int)
        return [
            {
                "from_s": k * window_s,
                "requests": int((slot == k).sum()),
                "p50_ms": round(float(np.percentile(lat[slot == k], 50)), 2),
                "p99_ms": round(float(np.percentile(lat[slot == k], 99)), 2),
            }
            for k in np.unique(slot).tolist()
        ]

    def note_error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what[:300])

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "units": self.units,
            "elapsed_s": round(self.elapsed_s, 3),
            "requests_per_s": round(self.rate(), 1),
            "p50_ms": round(self.pct(50), 3),
            "p90_ms": round(self.pct(90), 3),
            "p99_ms": round(self.pct(99), 3),
            "max_ms": round(self.pct(100), 3),
            "send_lag_p99_ms": round(self.lag_pct(99), 3) if self.send_lags else None,
            "client_cpu_pct": round(self.cpu_pct("client"), 1),
            "server_cpu_pct": round(self.cpu_pct("server"), 1),
            "server_cpu_ms_per_request": round(self.cpu_per_request_ms(), 3),
            "timeline_5s": self.timeline(5.0),
        }


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams, for the load loops only.

    httpx.AsyncClient would do, but in this environment it costs about 3 ms of client CPU
    per request: ``sniffio`` is not installed (anyio 4.x no longer needs it), so httpcore's
    ``current_async_library()`` retries a failing ``import sniffio`` (a sys.path scan) several
    times per request. With 2 cores that would make the load generator, not the server, the
    bottleneck; this client costs about 0.15 ms of CPU per request.
    """

    IDLE_S = 4.0  # reuse a kept-alive connection only if idle for less (uvicorn closes at 5 s)

    def __init__(self, url: str, headers: dict[str, str], max_connections: int) -> None:
        host_port = url.split("://", 1)[1].rstrip("/")
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        lines = [f"host: {host_port}"] + [f"{k}: {v}" for k, v in headers.items()]
        self._head = "\r\n".join(lines).encode()
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._open: set[asyncio.StreamWriter] = set()

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request and read its whole answer: (status, body).

        A kept-alive connection the server has closed meanwhile (uvicorn drops idle ones
        after 5 s) is replaced once, as any HTTP client does; nothing else is retried.
        """
        message = b"%s %s HTTP/1.1\r\n%s\r\ncontent-length: %d\r\n\r\n%s" % (
            method.encode(),
            path.encode(),
            self._head,
            len(body),
            body,
        )
        async with self._slots:
            reused = False
            while self._idle:
                reader, writer, last_used = self._idle.pop()
                if time.monotonic() - last_used < self.IDLE_S:
                    reused = True
                    break
                self._drop(writer)
            if not reused:
                reader, writer = await self._connect()
            try:
                writer.write(message)
                status, payload, keep = await self._read(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                self._drop(writer)
                if not reused or getattr(exc, "partial", b"") != b"":
                    raise
                reader, writer = await self._connect()
                try:
                    writer.write(message)
                    status, payload, keep = await self._read(reader)
                except BaseException:
                    self._drop(writer)
                    raise
            except BaseException:
                self._drop(writer)
                raise
            if keep:
                self._idle.append((reader, writer, time.monotonic()))
            else:
                self._drop(writer)
            return status, payload

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._open.add(writer)
        return reader, writer

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip().lower()
        if b"content-length" in headers:
            payload = await reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            payload = b"".join(p[:-2] for p in parts)
        else:
            payload = await reader.read()
        return status, payload, headers.get(b"connection") != b"close"

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._open.discard(writer)
        writer.close()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in list(self._open):
            self._drop(writer)
        self._idle.clear()


# A request function returns how many units it delivered (events accepted, items returned);
# it raises on a bad answer, which counts as an error (its latency is not recorded).
Request = Callable[[RawClient, int], Awaitable[int]]


def make_client(server: Server, connections: int) -> RawClient:
    return RawClient(server.url, server.headers(), connections)


async def closed_loop(
    client: RawClient,
    request: Request,
    workers: int,
    server_pid: int,
    duration_s: float | None = None,
    count: int | None = None,
) -> LoadResult:
    """``workers`` loops each sending its next request when the last one answers.

    Stops after ``duration_s`` seconds or, if given, after exactly ``count`` requests.
    """
    result = LoadResult()
    issued = 0
    started = time.perf_counter()
    deadline = started + duration_s if duration_s is not None else float("inf")
    cpu0, srv0 = time.process_time(), tree_cpu_seconds(server_pid)

    async def worker() -> None:
        nonlocal issued
        while True:
            if count is not None and issued >= count:
                return
            if time.perf_counter() >= deadline:
                return
            seq = issued
            issued += 1
            t0 = time.perf_counter()
            try:
                units = await request(client, seq)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, none hidden
                result.note_error(f"{type(exc).__name__}: {exc}")
                continue
            result.record(time.perf_counter() - t0, t0 - started, units)

    await asyncio.gather(*(worker() for _ in range(workers)))
    result.elapsed_s = time.perf_counter() - started
    result.client_cpu_s = time.process_time() - cpu0
    result.server_cpu_s = tree_cpu_seconds(server_pid) - srv0
    return result


async def open_loop(
    client: RawClient,
    request: Request,
    rate: float,
    duration_s: float,
    server_pid: int,
) -> LoadResult:
    """Requests scheduled at fixed times (``rate`` per second), whatever the answers do.

    Latency runs from the scheduled time, so a stall delays no later request's clock
    (no coordinated omission); ``send_lags`` shows how late the client itself started each.
    """
    result = LoadResult()
    total = int(rate * duration_s)
    interval = 1.0 / rate
    tasks: list[asyncio.Task[None]] = []

    async def one(seq: int, scheduled: float) -> None:
        result.send_lags.append(time.perf_counter() - scheduled)
        try:
            units = await request(client, seq)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none hidden
            result.note_error(f"{type(exc).__name__}: {exc}")
            return
        result.record(time.perf_counter() - scheduled, scheduled - started, units)

    cpu0, srv0 = time.process_time(), tree_cpu_seconds(server_pid)
    started = time.perf_counter()
    for seq in range(total):
        scheduled = started + seq * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(seq, scheduled)))
    await asyncio.gather(*tasks)
    result.elapsed_s = time.perf_counter() - started
    result.client_cpu_s = time.process_time() - cpu0
    result.server_cpu_s = tree_cpu_seconds(server_pid) - srv0
    return result


# -- the report ------------------------------------------------------------------------------
def fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if value != value:  # nan
            return "–"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| metric | value | baseline | target |", "| --- | ---: | ---: | --- |"]
    for row in rows:
        cells = [row["metric"], fmt(row["value"]), fmt(row.get("baseline")), row.get("target")]
        lines.append("| " + " | ".join(c if c is not None else "–" for c in cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def report(name: str, title: str, rows: list[dict[str, Any]], details: dict[str, Any]) -> Path:
    """Print the Markdown table and write rows + details to bench/out/<name>.json."""
    print(f"\n### {title}\n")
    print(markdown_table(rows))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    doc = {"bench": name, "title": title, "machine": machine(), "rows": rows, **details}
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\n(written to {path.relative_to(BENCH_DIR.parent)})")
    return path


def row(metric: str, value: Any, baseline: Any = None, target: str | None = None) -> dict[str, Any]:
    return {"metric": metric, "value": value, "baseline": baseline, "target": target}


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pyplot() -> Any | None:
    """matplotlib's pyplot on the file-only Agg backend, or None (said once on stderr) when
    the optional ``quality`` extra is not installed: the figures still print."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[quality]'): no plot")
        return None
    return plt


def catalog_columns(
    items: pa.Table,
    item_ids: np.ndarray,
    key: str = "item_id",
    published: str | None = "published_at",
    categories: str = "categories",
    no_category: str = "",
) -> tuple[np.ndarray, list[list[str]]]:
    """What a catalog table says of each of ``item_ids`` (in that order): its publication
    time (NaN where unknown, or with ``published`` None) and its categories from an "a|b"
    column (``no_category``, a data set's "none" marker, counts as none)."""
    ids = items.column(key).to_pylist()
    when = dict(zip(ids, items.column(published).to_pylist(), strict=True)) if published else {}
    cats = dict(zip(ids, items.column(categories).to_pylist(), strict=True))
    wanted = item_ids.tolist()
    times = np.array([when.get(i) for i in wanted], dtype=np.float64)  # None -> NaN
    split = [[c for c in (cats.get(i) or "").split("|") if c and c != no_category] for i in wanted]
    return times, split


# -- wrk: the load generator of ingest.py and serve.py ----------------------------------------
WRK_INSTALL = (
    "this benchmark drives the server with wrk (https://github.com/wg/wrk), which is not "
    "installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"
)


def require_wrk() -> str:
    """The path of ``wrk``; exits with status 2 and how to install it when it is missing."""
    path = shutil.which("wrk")
    if path is None:
        print(f"error: {WRK_INSTALL}", file=sys.stderr)
        sys.exit(2)
    return path


# Common to every script: a thread registry (so ``done`` can read the threads' counters), a
# monotonic clock through LuaJIT's FFI, and ``done`` printing one JSON line for the bench.
# Pacing (``delay``) is added only for a fixed rate: wrk runs flat out when a script has no
# ``delay`` function. A script defines ``response`` only where it checks answers, because
# with ``response`` wrk hands every body to Lua.
_WRK_PRELUDE = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local bench_ts = ffi.new("bench_timespec")
function now_ms()
  ffi.C.clock_gettime(1, bench_ts)  -- CLOCK_MONOTONIC
  return tonumber(bench_ts.tv_sec) * 1000 + tonumber(bench_ts.tv_nsec) / 1e6
end

THREADS = __THREADS__
counts = {}
function count(name, n) counts[name] = (counts[name] or 0) + (n or 1) end

local bench_threads = {}
function setup(thread)
  thread:set("thread_id", #bench_threads)
  table.insert(bench_threads, thread)
end

local function json_value(v)
  if type(v) == "number" then return string.format("%.17g", v) end
  if type(v) == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = string.format("%q:%s", k, json_value(x)) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return string.format("%q", tostring(v))
end

function done(summary, latency, requests)
  local totals, lags = {}, {}
  for _, thread in ipairs(bench_threads) do
    for k, v in pairs(thread:get("counts") or {}) do totals[k] = (totals[k] or 0) + v end
    for _, v in ipairs(thread:get("lags") or {}) do lags[#lags + 1] = v end
  end
  table.sort(lags)
  local function lag(q)
    if #lags == 0 then return 0 end
    return lags[math.max(1, math.ceil(q * #lags))]
  end
  local e = summary.errors
  local out = {
    requests = summary.requests, duration_us = summary.duration, bytes = summary.bytes,
    errors = {connect = e.connect, read = e.read, write = e.write, status = e.status,
              timeout = e.timeout},
    latency_us = {p50 = latency:percentile(50), p90 = latency:percentile(90),
                  p99 = latency:percentile(99), max = latency.max, mean = latency.mean},
    counts = totals,
    late_sends = {n = #lags, p50_ms = lag(0.5), p99_ms = lag(0.99), max_ms = lag(1.0)},
  }
  io.write("BENCH_WRK " .. json_value(out) .. "\n")
end
"""

# A Lua-paced wrk for fixed rates (plain wrk has no constant-rate mode; wrk2 and hey are the
# alternatives, but hey cannot vary the body or URL per request). Each thread hands out send
# slots ``interval`` apart to whichever of its connections is free next; a connection that
# frees up after its slot has passed sends at once (catching up, as wrk2 does) and the
# lateness is kept in ``lags``, so a client or server that falls behind shows there. wrk's
# own latency clock starts at the send, not at the slot: see the late sends beside it.
_WRK_PACING = r"""
local interval_ms = THREADS * 1000.0 / __RATE__
local next_slot = nil
lags = {}
function delay()
  local now = now_ms()
  if next_slot == nil then next_slot = now + thread_id * interval_ms / THREADS end
  local wait = next_slot - now
  next_slot = next_slot + interval_ms
  count("slots")
  if wait < -1.0 then lags[#lags + 1] = -wait end  -- more than a timer tick late
  if wait <= 0 then return 0 end
  return math.floor(wait)
end
"""


def machine_load() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages (the machine may be shared while measuring)."""
    return os.getloadavg()


def thread_cpu_seconds(pid: int, tid: int) -> float:
    """User + system CPU seconds of one thread (the server's event loop is its main one)."""
    path = Path(f"/proc/{pid}/task/{tid}/stat")
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def threads_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of a process's main thread, of its other threads together, and of each
    live descendant process (the server's worker): where a server's time goes."""
    out: dict[str, float] = {}
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            proc = "server" if p == pid else f"child {p}"
            for task in Path(f"/proc/{p}/task").iterdir():
                with contextlib.suppress(OSError):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    key = f"{proc}/{'main' if int(task.name) == p else 'other threads'}"
                    out[key] = out.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def cpu_pressure() -> float | None:
    """Linux PSI: the share (%) of the last 10 s in which some runnable task waited for a
    CPU; tens of % mean other work is competing for the cores (None where not available)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/pressure/cpu").read_text().split()
        return float(first[1].split("=")[1])
    return None


@dataclass
class WrkResult:
    """One wrk phase: wrk's own figures, what the scripts counted, and both sides' CPU."""

    label: str
    threads: int
    connections: int
    rate: float | None  # requests/s asked for; None: as fast as the server answers
    requests: int
    elapsed_s: float
    errors: dict[str, int]
    latency_ms: dict[str, float]
    counts: dict[str, float]
    late_sends: dict[str, float]
    client_cpu_s: float
    client_max_rss_mb: float
    server_cpu_s: float
    server_loop_cpu_s: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    server_threads_cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_pressure_after: float | None = None

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def rps(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s else float("nan")

    def per_s(self, name: str) -> float:
        """A script counter (accepted events…) per second of the phase."""
        return self.counts.get(name, 0) / self.elapsed_s if self.elapsed_s else float("nan")

    def cpu_pct(self, which: str) -> float:
        """CPU as % of one core over the phase: client (wrk), server (with its worker), or
        the server's main thread alone (its event loop; ~100 % means it is the limit)."""
        cpu = {"client": self.client_cpu_s, "server": self.server_cpu_s}.get(
            which, self.server_loop_cpu_s
        )
        return 100.0 * cpu / self.elapsed_s if self.elapsed_s else float("nan")

    def cpu_ms_per_request(self, which: str) -> float:
        cpu = self.client_cpu_s if which == "client" else self.server_cpu_s
        return 1e3 * cpu / self.requests if self.requests else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "threads": self.threads,
            "connections": self.connections,
            "rate_asked": self.rate,
            "requests": self.requests,
            "requests_per_s": round(self.rps(), 1),
            "elapsed_s": round(self.elapsed_s, 3),
            "errors": self.errors,
            "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()},
            "counts": self.counts,
            "late_sends": self.late_sends,
            "client_cpu_pct": round(self.cpu_pct("client"), 1),
            "client_cpu_ms_per_request": round(self.cpu_ms_per_request("client"), 4),
            "client_max_rss_mb": round(self.client_max_rss_mb, 1),
            "server_cpu_pct": round(self.cpu_pct("server"), 1),
            "server_loop_cpu_pct": round(self.cpu_pct("loop"), 1),
            "server_cpu_ms_per_request": round(self.cpu_ms_per_request("server"), 4),
            "server_threads_cpu_pct": {
                k: round(100.0 * v / self.elapsed_s, 1)
                for k, v in sorted(self.server_threads_cpu_s.items(), key=lambda kv: -kv[1])
                if v > 0
            },
            "load_before": [round(x, 2) for x in self.load_before],
            "load_after": [round(x, 2) for x in self.load_after],
            "cpu_pressure_some_avg10_after": self.cpu_pressure_after,
        }


def wrk_script(body: str, threads: int, rate: float | None = None) -> str:
    """A full wrk script: the shared prelude, pacing when ``rate`` is given, then ``body``
    (the bench's own ``init`` / ``request`` / ``response``, all optional)."""
    text = _WRK_PRELUDE.replace("__THREADS__", str(threads))
    if rate is not None:
        text += _WRK_PACING.replace("__RATE__", repr(float(rate)))
    return text + body


def run_wrk(
    server: Server,
    path: str,
    script_body: str,
    label: str,
    duration_s: float,
    threads: int = 2,
    connections: int = 32,
    rate: float | None = None,
) -> WrkResult:
    """Run wrk against ``server`` for ``duration_s``: flat out, or paced to ``rate`` req/s.

    The client's CPU and peak memory come from wrk's own rusage (``wait4``), the server's
    from /proc (with its worker child), read around the run.
    """
    wrk = require_wrk()
    work = server.home.path / "bench-wrk"
    work.mkdir(parents=True, exist_ok=True)
    script = work / f"{label}.lua"
    script.write_text(wrk_script(script_body, threads, rate))
    args = [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{duration_s:g}s"]
    args += ["--timeout", "10s", "-s", str(script)]
    for name, value in server.headers().items():
        args += ["-H", f"{name}: {value}"]
    args.append(server.url + path)
    out_path = work / f"{label}.out"
    load0 = machine_load()
    srv0, loop0 = tree_cpu_seconds(server.pid), thread_cpu_seconds(server.pid, server.pid)
    threads0 = threads_cpu_seconds(server.pid)
    with open(out_path, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    server_cpu = tree_cpu_seconds(server.pid) - srv0
    loop_cpu = thread_cpu_seconds(server.pid, server.pid) - loop0
    threads1 = threads_cpu_seconds(server.pid)
    by_thread = {k: v - threads0.get(k, 0.0) for k, v in threads1.items()}
    text = out_path.read_text()
    lines = [line for line in text.splitlines() if line.startswith("BENCH_WRK ")]
    if os.waitstatus_to_exitcode(status) != 0 or not lines:
        raise RuntimeError(f"wrk ({label}) failed: {' '.join(args[:-1])}\n{text[-3000:]}")
    doc = json.loads(lines[-1].split(" ", 1)[1])
    return WrkResult(
        label=label,
        threads=threads,
        connections=connections,
        rate=rate,
        requests=int(doc["requests"]),
        elapsed_s=doc["duration_us"] / 1e6,
        errors={k: int(v) for k, v in doc["errors"].items()},
        latency_ms={k: v / 1e3 for k, v in doc["latency_us"].items()},
        counts=doc.get("counts", {}),
        late_sends=doc["late_sends"],
        client_cpu_s=usage.ru_utime + usage.ru_stime,
        client_max_rss_mb=usage.ru_maxrss / 1024.0,
        server_cpu_s=server_cpu,
        server_loop_cpu_s=loop_cpu,
        load_before=load0,
        load_after=machine_load(),
        server_threads_cpu_s=by_thread,
        cpu_pressure_after=cpu_pressure(),
    )


def ratio(value: Any, baseline: Any) -> float | None:
    """value / baseline where both are numbers and the baseline is not 0, else None."""
    numbers = (int, float)
    if isinstance(value, numbers) and isinstance(baseline, numbers) and baseline:
        return float(value) / float(baseline)
    return None


def markdown_table_vs(rows: Sequence[dict[str, Any]], names: tuple[str, str]) -> str:
    """``markdown_table`` with the two columns named (the route, its baseline) and their
    ratio beside them, where both are numbers."""
    a, b = names
    lines = [
        f"| metric | {a} | {b} | {a} / {b} | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        q = ratio(r["value"], r.get("baseline"))
        cells = [
            r["metric"],
            fmt(r["value"]),
            fmt(r.get("baseline")),
            f"{q:.2f}" if q is not None else "–",
            r.get("target"),
        ]
        lines.append("| " + " | ".join(c if c is not None else "–" for c in cells) + " |")
    return "\n".join(lines)


def report_vs(
    name: str,
    title: str,
    rows: list[dict[str, Any]],
    details: dict[str, Any],
    names: tuple[str, str],
) -> Path:
    """``report`` with a ratio column (``markdown_table_vs``); the same JSON file, whose rows
    carry their ratio too."""
    print(f"\n### {title}\n")
    print(markdown_table_vs(rows, names))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    rows = [{**r, "ratio": ratio(r["value"], r.get("baseline"))} for r in rows]
    doc = {"bench": name, "title": title, "machine": machine(), "rows": rows, **details}
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(f"\n(written to {path.relative_to(BENCH_DIR.parent)})")
    return path


def machine_load_row(phases: Sequence[WrkResult]) -> dict[str, Any]:
    """A report row: the machine's 1-min load average and CPU pressure over the phases (low
    and high), since other work on a shared machine takes cores from the server."""
    loads = [x for p in phases for x in (p.load_before[0], p.load_after[0])]
    psi = [p.cpu_pressure_after for p in phases if p.cpu_pressure_after is not None]
    value = f"load {min(loads):.2f}–{max(loads):.2f}"
    if psi:
        value += f"; CPU pressure {min(psi):.0f}–{max(psi):.0f} %"
    return row(
        "machine: load average (1 min), CPU pressure (PSI some, 10 s), over the phases",
        value,
        None,
        f"{os.cpu_count()} cores; other work shares them",
    )


def run_healthz(
    server: Server,
    label: str,
    duration_s: float,
    threads: int = 2,
    connections: int = 32,
    rate: float | None = None,
) -> WrkResult:
    """``GET /healthz`` under the same load as a phase beside it: the same-run baseline."""
    res = run_wrk(server, "/healthz", "", label, duration_s, threads, connections, rate)
    log(f"{label}: {res.rps():.0f} req/s, p99 {res.latency_ms['p99']:.2f} ms")
    return res


def cpu_pair(a: WrkResult, b: WrkResult, which: str) -> tuple[float, float]:
    """Two phases' CPU (% of one core) of ``which``: server, loop or client."""
    return a.cpu_pct(which), b.cpu_pct(which)
