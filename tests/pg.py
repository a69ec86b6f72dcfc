"""A throwaway PostgreSQL cluster for the tests that need a real one.

The cluster is made with the installed server's own ``initdb`` and ``pg_ctl`` in a
temporary folder, listens on a free port of 127.0.0.1 only, trusts local connections and
runs without fsync (its data is thrown away). PostgreSQL refuses to run as root, so under
root it runs as the ``postgres`` user that Debian's package creates. Where PostgreSQL is
not installed the tests that need it are skipped, unless CLICKREC_REQUIRE_POSTGRES is set
(CI sets it, so there they must run).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN_GLOB = "/usr/lib/postgresql/*/bin"  # Debian and Ubuntu keep one folder per version
SERVER_USER = "postgres"
DATABASE = "clickrec"


def find_bindir() -> Path | None:
    """The folder of the newest installed ``initdb`` and ``pg_ctl``; None if there is none."""
    found = [Path(d) for d in glob.glob(BIN_GLOB) if _has_tools(Path(d))]
    if found:
        return max(found, key=lambda d: _version(d.parent.name))
    on_path = shutil.which("pg_ctl")
    if on_path and _has_tools(Path(on_path).parent):
        return Path(on_path).parent
    return None


def _has_tools(bindir: Path) -> bool:
    return all(os.access(bindir / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres"))


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def unavailable() -> str | None:
    """Why no cluster can be started here; None when one can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is not installed (pip install 'psycopg[binary]')"
    if find_bindir() is None:
        return f"PostgreSQL is not installed (no initdb in {BIN_GLOB} or on PATH)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL as"
    return None


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL is missing; fail it instead in CI."""
    reason = unavailable()
    if reason is None:
        return
    if os.environ.get("CLICKREC_REQUIRE_POSTGRES"):
        pytest.fail(f"{reason}, and CLICKREC_REQUIRE_POSTGRES is set")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One running server and the databases the tests make on it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="clickrec-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._user = pwd.getpwnam(SERVER_USER) if os.geteuid() == 0 else None
        if self._user is not None:
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        self._names = itertools.count(1)

    def _run(self, *args: str) -> None:
        """A server tool, as the user that owns the cluster; its output in the error."""
        done = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.root,
            user=self._user.pw_uid if self._user else None,
            group=self._user.pw_gid if self._user else None,
            extra_groups=[] if self._user else None,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}{done.stderr}{tail}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")
        self.create_database(DATABASE)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement: str) -> None:
        import psycopg

        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]  # names made here, not input

    def create_database(self, name: str | None = None) -> str:
        """A new empty database (a fresh name when none is given); its URL."""
        name = name or f"t{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cluster() -> Iterator[PostgresCluster]:
    """Start a cluster (or skip/fail as ``require_postgres`` says), stop it when done."""
    require_postgres()
    bindir = find_bindir()
    assert bindir is not None
    pg = PostgresCluster(bindir)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
