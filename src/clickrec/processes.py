"""Child processes of `clickrec serve`: the worker, and with ``--processes N`` the API
processes that share one listening socket. Each child is watched and restarted when it
dies, and stopped (SIGTERM, so it drains and flushes) when the server stops.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

CLI = [sys.executable, "-m", "clickrec.cli"]
log = logging.getLogger("clickrec.processes")


class Child:
    """One supervised child: started, restarted when it exits, stopped on ``stop``."""

    def __init__(self, name: str, args: Sequence[str], pass_fds: Sequence[int] = ()) -> None:
        self.name = name
        self.args = list(args)
        self.pass_fds = tuple(pass_fds)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._watch = threading.Thread(target=self._watch_loop, name=f"{name}-watch", daemon=True)

    def start(self) -> None:
        self.proc = self._spawn()
        self._watch.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.args, pass_fds=self.pass_fds)  # nosec B603: our own CLI

    def _watch_loop(self) -> None:
        while not self._stop.wait(1.0):
            if self.proc is not None and self.proc.poll() is not None:
                log.error("%s exited with %s; restarting", self.name, self.proc.returncode)
                self.proc = self._spawn()

    def terminate(self) -> None:
        """Stop restarting it and ask it to end (SIGTERM); ``wait`` for the end."""
        self._stop.set()
        if self._watch.is_alive():
            self._watch.join()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("%s did not stop in %.0f s: killed", self.name, timeout)
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 60.0) -> None:
        self.terminate()
        self.wait(timeout)


def worker(home: Path, train_interval: float) -> Child:
    """The `clickrec worker` of a server (archive consumer, trainer, erasure's lake phase);
    it stops by itself when this process is gone."""
    args = [*CLI, "worker", "--home", str(home), "--train-interval", str(train_interval)]
    return Child("worker", [*args, "--parent-pid", str(os.getpid())])


def listen(host: str, port: int) -> socket.socket:
    """The listening socket the API processes share (inherited by each of them)."""
    sock = socket.create_server((host, port), backlog=2048, dualstack_ipv6=False)
    sock.set_inheritable(True)
    return sock


def api_processes(
    home: Path, sock: socket.socket, count: int, extra: Sequence[str] = ()
) -> list[Child]:
    """``count`` `clickrec serve` processes accepting on ``sock``: the kernel hands each new
    connection to one of them. Each keeps its own online state by tailing the event log and
    catches up before it answers, so a click sent to one is in the next answer of any."""
    fd = sock.fileno()
    args = [*CLI, "serve", "--home", str(home), "--fd", str(fd), "--no-worker"]
    args += ["--parent-pid", str(os.getpid()), *extra]
    return [Child(f"api-{i}", args, pass_fds=[fd]) for i in range(count)]


def run_until_signalled(children: Sequence[Child]) -> None:
    """Start the children, wait for SIGINT/SIGTERM, then stop them all (draining)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    for child in children:
        child.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait()
