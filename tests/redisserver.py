"""A throwaway redis-server for the tests that need a real one.

The server runs from the installed ``redis-server`` in a temporary folder, listens on a
free port of 127.0.0.1 only, and keeps its data the way the event log wants it kept in
production: an append-only file synced on every write (``appendfsync always``) and no RDB
snapshots. Its RDB data (the base of a rewritten append-only file) is not compressed, so a
test can look for a string in its files. It can be killed with SIGKILL and started again
on the same files, to check what survives a crash. Where redis-server or the ``redis``
module is missing the tests that need it are skipped, unless CLICKREC_REQUIRE_REDIS is set
(CI sets it, so there they must run).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_SECONDS = 30.0


def find_server() -> str | None:
    """The path of the installed redis-server; None if there is none."""
    return shutil.which("redis-server")


def unavailable() -> str | None:
    """Why no server can be started here; None when one can."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis client is not installed (pip install 'redis>=5.0')"
    if find_server() is None:
        return "redis-server is not installed (not on PATH)"
    return None


def require_redis() -> None:
    """Skip the calling test when Redis is missing; fail it instead in CI."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CLICKREC_REQUIRE_REDIS"):
        pytest.fail(f"{reason}, and CLICKREC_REQUIRE_REDIS is set")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process and the folder that holds its append-only file."""

    def __init__(self, executable: str, appendonly: str = "yes", appendfsync: str = "always"):
        self.executable = executable
        self.root = Path(tempfile.mkdtemp(prefix="clickrec-redis-"))
        self.port = _free_port()
        self.options = ["--appendonly", appendonly, "--appendfsync", appendfsync]
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (on the files already in its folder) and wait until it serves."""
        log = self.root / "server.log"
        self._process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.root),
                "--save",
                "",
                "--daemonize",
                "no",
                "--logfile",
                str(log),
                "--rdbcompression",
                "no",
                *self.options,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready(log)

    def _wait_ready(self, log: Path) -> None:
        """Until PING answers and the append-only file is loaded; the log in the error."""
        import redis

        assert self._process is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                try:
                    if client.ping() and not int(client.info("persistence")["loading"]):
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self.kill()
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")

    def kill(self) -> None:
        """SIGKILL the server (a crash: no shutdown, no final sync) and reap it."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=30)
        self._process = None

    def restart(self) -> None:
        """Kill the server and start it again on the same append-only file and port."""
        self.kill()
        self.start()

    def flush(self) -> None:
        """Empty every database (a clean slate for the next test)."""
        import redis

        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0) as client:
            client.flushall()

    def stop(self) -> None:
        try:
            self.kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def server(appendonly: str = "yes", appendfsync: str = "always") -> Iterator[RedisServer]:
    """Start a server (or skip/fail as ``require_redis`` says), stop and remove it when done."""
    require_redis()
    executable = find_server()
    assert executable is not None
    instance = RedisServer(executable, appendonly, appendfsync)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A throwaway redis-server for the whole run; skipped where none is installed (a
    failure instead with CLICKREC_REQUIRE_REDIS=1, as in CI)."""
    yield from server()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of that server, emptied for this test."""
    redis_server.flush()
    return redis_server.url
