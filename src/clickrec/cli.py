"""Command-line entry points; the only place that wires a whole process together."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import getpass
import json
import logging
import math
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from clickrec.config import Settings, load_settings, write_default_config
from clickrec.core.errors import ClickrecError

if TYPE_CHECKING:  # the engine is imported when a command needs it: `--help` stays quick
    from clickrec.engine import Engine, ServingEngine

app = typer.Typer(help="clickrec: real-time clickstream personalization.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
import_app = typer.Typer(help="Import history from CSV or Parquet files.", no_args_is_help=True)
demo_app = typer.Typer(
    help="Synthetic blog data for demos, tests and benchmarks.", no_args_is_help=True
)
batch_app = typer.Typer(
    help="Batch jobs: recommendations for many readers, readers for many items.",
    no_args_is_help=True,
)
dlq_app = typer.Typer(
    help="Dead letters: events the archive could not process after its retries.",
    no_args_is_help=True,
)
users_app = typer.Typer(
    help="Readers: erase one (the right to be forgotten).", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(batch_app, name="batch")
app.add_typer(import_app, name="import")
app.add_typer(demo_app, name="demo")

out = Console()
err = Console(stderr=True)
HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Home folder (default ./var or $CLICKREC_HOME).")
]


def _settings(home: Path | None) -> Settings:
    try:
        return load_settings(home)
    except Exception as exc:  # noqa: BLE001 - a bad config is a clear message, not a trace
        err.print(f"[red]bad configuration:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc


def _engine(home: Path | None) -> Engine:
    """The stores and services of this home, without the online state (a command)."""
    from clickrec.engine import Engine

    return Engine(_settings(home))


def _serving_engine(home: Path | None) -> ServingEngine:
    """A server's engine in this process (its online state rebuilt from the log)."""
    from clickrec.engine import ServingEngine

    return ServingEngine(_settings(home))


def _port(settings: Settings, port: int | None) -> int:
    return port if port is not None else settings.server.port


def _tls_files(
    settings: Settings, cert: Path | None, key: Path | None
) -> tuple[Path | None, Path | None]:
    """The certificate and key to serve HTTPS with: the flags, else the config, else the
    development pair `init --self-signed` made; (None, None) for plain HTTP."""
    if cert is None and key is None:
        cert = Path(settings.server.tls_cert) if settings.server.tls_cert else None
        key = Path(settings.server.tls_key) if settings.server.tls_key else None
    if cert is None and key is None:
        dev = settings.home / "tls"
        if (dev / "cert.pem").exists() and (dev / "key.pem").exists():
            cert, key = dev / "cert.pem", dev / "key.pem"
    if (cert is None) != (key is None):
        err.print("[red]error:[/red] give both a TLS certificate and its key")
        raise typer.Exit(2)
    for path in (cert, key):
        if path is not None and not path.is_file():
            err.print(f"[red]error:[/red] no such file: {path}")
            raise typer.Exit(2)
    return cert, key


class GracefulServer(uvicorn.Server):
    """Stops on SIGINT/SIGTERM after draining in-flight requests, then returns (uvicorn
    would re-raise the signal) so the engine flushes its consumers and exits with 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_exit)
        yield


def _audit_cli(engine: Engine, action: str, target: str | None = None) -> None:
    """Admin actions made from the command line go to the same audit log as the API's."""
    from clickrec.app import operate

    operate.audit_local(engine, f"cli:{getpass.getuser()}", action, target)


def _fail(exc: ClickrecError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    )


@app.command()
def init(
    home: HomeOpt = None,
    self_signed: Annotated[
        bool,
        typer.Option(
            "--self-signed",
            help="Also make a development TLS certificate (tls/cert.pem, tls/key.pem) that "
            "`clickrec serve` then uses.",
        ),
    ] = False,
) -> None:
    """Create the home folder, its config file (with the store URLs in force now) and
    stores, and a first admin key (once). A failed init removes what it made."""
    settings = _settings(home)
    _refuse_moved_stores(settings.home)
    undo = _Undo.before(settings)
    try:
        _make_home(settings, self_signed)
    except BaseException as exc:
        undo.run()
        if isinstance(exc, ClickrecError | ValueError | OSError):
            err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(1) from exc
        raise


def _refuse_moved_stores(home: Path) -> None:
    """An existing config file is never rewritten: init stops if the environment now names
    other places for the data than the file does."""
    from clickrec.config import config_disagreements

    found = config_disagreements(home)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        err.print(f"[red]error:[/red] {escape(found[0])}{more}", soft_wrap=True)
        raise typer.Exit(1)


def _make_home(settings: Settings, self_signed: bool) -> None:
    """The home, its config file, optionally a development TLS pair, the stores and a first
    admin key (printed once and saved to admin.key, mode 600)."""
    from clickrec.app import keys
    from clickrec.engine import make_private_home

    make_private_home(settings.home)
    config = write_default_config(settings.home, settings)
    if self_signed:
        from clickrec.tls import self_signed as make_certificate

        cert, key_file = make_certificate(settings.home / "tls")
        out.print(f"TLS: {cert} and {key_file} (self-signed, for development only)")
    engine = _engine(settings.home)
    try:
        admin = keys.has_admin(engine)
        out.print(f"home: {settings.home.resolve()}  config: {config.name}")
        if admin:
            out.print("an admin key already exists (create more with `clickrec keys create`)")
            return
        key = keys.create(engine, "admin", "admin").key
        out.print("admin key (shown once, keep it safe):")
        print(key)
        (settings.home / "admin.key").write_text(key + "\n")
        (settings.home / "admin.key").chmod(0o600)
        out.print(f"also saved to {settings.home / 'admin.key'} (mode 600)")
    finally:
        engine.close()


@dataclass(frozen=True)
class _Undo:
    """What init may create, noted before it starts, so a failed init can remove exactly
    that: folders and files that did not exist, and new entries of a home that did."""

    home: Path
    home_entries: frozenset[str] | None
    home_mode: int | None  # an existing home's mode, which init makes 0700
    new_roots: tuple[Path, ...]

    @classmethod
    def before(cls, settings: Settings) -> _Undo:
        home = settings.home
        existed = home.is_dir()
        entries = frozenset(p.name for p in home.iterdir()) if existed else None
        mode = stat.S_IMODE(home.stat().st_mode) if existed else None
        roots = {_first_missing(p) for p in _places_init_writes(settings) if not _exists(p)}
        return cls(home, entries, mode, tuple(sorted(roots)))

    def run(self) -> None:
        if self.home_entries is not None and self.home.is_dir():
            for path in self.home.iterdir():
                if path.name not in self.home_entries:
                    _remove(path)
            if self.home_mode is not None:
                self.home.chmod(self.home_mode)
        for path in self.new_roots:
            _remove(path)


def _places_init_writes(settings: Settings) -> list[Path]:
    """The home, and every local store, sqlite side file and key file (they may lie
    outside the home when their settings give absolute paths)."""
    from clickrec.backends.registry import data_key_file

    places = [settings.home]
    stores = settings.stores
    for url in (stores.event_log, stores.catalog, stores.lake, stores.models):
        with contextlib.suppress(ValueError):  # a remote store: nothing local to undo
            path = settings.store_path(url)
            places.append(path)
            if url.startswith("sqlite:///"):
                places += [path.with_name(path.name + s) for s in ("-wal", "-shm", "-journal")]
    key_file = data_key_file(settings)
    return places + ([key_file] if key_file is not None else [])


def _exists(path: Path) -> bool:
    """Whether anything is there, a dangling link included."""
    return path.exists() or path.is_symlink()


def _first_missing(path: Path) -> Path:
    """The topmost folder above ``path`` (or ``path`` itself) that does not exist."""
    top = path
    for parent in path.absolute().parents:
        if _exists(parent):
            break
        top = parent
    return top.absolute()


def _remove(path: Path) -> None:
    """Delete a file, link or whole folder that init made."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):  # init's own error is the one to report
            path.unlink(missing_ok=True)


@app.command()
def serve(
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port (or CLICKREC_PORT).")] = None,
    train_interval: Annotated[float, typer.Option(help="Seconds between trainer checks.")] = 5.0,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate: serve HTTPS (or server.tls_cert).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            min=1, help="API processes sharing the port, to use more cores (or server.processes)."
        ),
    ] = None,
    fd: Annotated[int | None, typer.Option(hidden=True)] = None,
    no_worker: Annotated[
        bool,
        typer.Option(
            help="Start no worker (run `clickrec worker` elsewhere, e.g. one per deployment)."
        ),
    ] = False,
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the HTTP server, and a worker process for the archive consumer and training.

    The worker is a separate process so that archiving and training never hold the
    server's interpreter lock while it answers readers; it is restarted if it dies and
    stopped (after flushing) when the server stops. With --processes N, N server processes
    accept on the port, each with its own online state kept current from the event log.
    """
    from clickrec import processes as children
    from clickrec.api.app import create_app
    from clickrec.api.protocol import with_header_timeout
    from clickrec.engine import ServingEngine

    settings = _settings(home)
    _configure_logging(settings.server.log_level)
    count = processes if processes is not None else settings.server.processes
    if count > 1 and fd is None:
        sock = children.listen(host or settings.server.host, _port(settings, port))
        extra = [f"--tls-{k}={v}" for k, v in (("cert", tls_cert), ("key", tls_key)) if v]
        pool = children.api_processes(settings.home, sock, count, extra)
        children.log.info("%d API processes on %s", count, sock.getsockname())
        workers = [] if no_worker else [children.worker(settings.home, train_interval)]
        children.run_until_signalled([*pool, *workers])
        sock.close()
        return
    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    _start_tracing(settings, "server")
    # The log writer thread waits on SQLite with the interpreter lock released; a short
    # switch interval lets it take the lock back quickly while request threads are busy.
    sys.setswitchinterval(0.001)
    engine = ServingEngine(settings)
    # The replayed online state is long-lived: freeze it out of the collector's way, so a
    # full collection does not walk millions of objects in the middle of a request.
    gc.collect()
    gc.freeze()
    engine.start_serving()
    worker = None if no_worker else children.worker(settings.home, train_interval)
    if worker is not None:
        worker.start()
    cert, key_file = _tls_files(settings, tls_cert, tls_key)
    config = uvicorn.Config(
        create_app(engine),
        ssl_certfile=str(cert) if cert else None,
        ssl_keyfile=str(key_file) if key_file else None,
        host=host or settings.server.host,
        port=_port(settings, port),
        server_header=False,
        log_level=settings.server.log_level,
        access_log=False,  # clickrec.access logs each request as JSON instead
        log_config=None,  # uvicorn's own lines go through the same JSON handler
        timeout_graceful_shutdown=10,
        http=with_header_timeout(settings.limits.header_timeout_seconds),
    )
    server = GracefulServer(config)
    try:
        # A child of --processes accepts on the socket its parent bound (family detected).
        server.run(sockets=None if fd is None else [socket.socket(fileno=fd)])
    finally:
        if worker is not None:
            worker.stop()
        engine.close()
        _stop_tracing()


@app.command()
def worker(
    home: HomeOpt = None,
    train_interval: Annotated[float, typer.Option(help="Seconds between trainer checks.")] = 5.0,
    parent_pid: Annotated[
        int | None, typer.Option(help="Stop when this process (the server) is gone.")
    ] = None,
) -> None:
    """Run the archive consumer and the trainer until SIGTERM (then flush and exit 0)."""
    from clickrec.engine import Engine

    settings = _settings(home)
    _configure_logging(settings.server.log_level)
    _start_tracing(settings, "worker")
    engine = Engine(settings)
    engine.trainer.runner = _run_in_child(engine)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    engine.start_background(train_interval)
    try:
        # A worker whose server died (even by SIGKILL, even before this line) stops too:
        # it is re-parented, so its parent is no longer the server it was started by.
        while not stop.wait(0.5):
            if parent_pid is not None and os.getppid() != parent_pid:
                break
    finally:
        engine.close()  # the archive flushes first, so its last spans are in the export
        _stop_tracing()


def _exit_with_parent(parent_pid: int) -> None:
    """End this process at once when ``parent_pid`` is gone (re-parented), even mid-work."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _run_in_child(engine: Engine) -> Callable[[str], None]:
    """A trainer runner that executes each run in a `clickrec train --run-id` child: the
    memory a run takes is given back when it ends, so a long-lived worker stays flat. A
    child that dies without recording its end (killed, out of memory) fails its run."""
    from clickrec.app import training

    def run(run_id: str) -> None:
        command = [sys.executable, "-m", "clickrec.cli", "train", "--run-id", run_id]
        command += ["--home", str(engine.settings.home), "--parent-pid", str(os.getpid())]
        if engine.trainer.token is not None:  # the child publishes only while it holds
            command += ["--fence-token", str(engine.trainer.token)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)  # nosec B603
        training.fail_unfinished(engine, run_id, done.returncode, done.stderr)

    return run


def _configure_logging(level: str) -> None:
    from clickrec.observability.logs import configure

    configure(level)


def _start_tracing(settings: Settings, role: str) -> None:
    """Export this process's spans by OTLP when an endpoint is configured (docs/tracing.md)."""
    from clickrec.observability import tracing

    endpoint = tracing.configure(settings.tracing, role)
    if endpoint is not None:
        logging.getLogger("clickrec.tracing").info("tracing on: spans go to %s", endpoint)


def _stop_tracing() -> None:
    """Flush the spans still queued; waits at most the exporter's timeout."""
    from clickrec.observability import tracing

    tracing.shutdown()


@keys_app.command("create")
def keys_create(
    scope: Annotated[str, typer.Option(help="ingest, read, admin or tracker.")],
    name: Annotated[str | None, typer.Option(help="A name to recognise the key by.")] = None,
    origin: Annotated[
        list[str] | None,
        typer.Option(
            help="For a tracker key (events only, from a browser): an origin of the pages "
            "that embed it, like https://www.example.com; repeat for several."
        ),
    ] = None,
    expires_days: Annotated[
        float | None, typer.Option(help="The key stops working after this many days.")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Make a new key and its AWS credentials and print them once; the key is stored only
    as a hash, the AWS secret sealed with the data keys (docs/personalize.md)."""
    from clickrec.app import keys

    if expires_days is not None and not (math.isfinite(expires_days) and expires_days > 0):
        err.print(f"[red]error:[/red] --expires-days must be a positive number, not {expires_days}")
        raise typer.Exit(2)
    engine = _engine(home)
    try:
        new = keys.create(engine, scope, name, origin or [], expires_days)
        _audit_cli(engine, "keys create", f"{new.principal.key_id} ({scope})")
    except ClickrecError as exc:
        raise _fail(exc) from exc
    finally:
        engine.close()
    principal = new.principal
    err.print(f"key {principal.key_id} ({principal.name}, scope {principal.scope}):")
    print(new.key)
    print(f"aws_access_key_id = {new.aws_access_key_id}")  # for boto3: docs/personalize.md
    print(f"aws_secret_access_key = {new.aws_secret_access_key}")


@keys_app.command("list")
def keys_list(home: HomeOpt = None) -> None:
    """List keys (never their secrets)."""
    from clickrec.app import keys

    engine = _engine(home)
    try:
        table = Table("id", "name", "scope", "origins", "revoked")
        for k in keys.list_keys(engine):
            revoked = "yes" if k["revoked_at"] else ""
            table.add_row(k["key_id"], k["name"], k["scope"], k.get("origins") or "", revoked)
        out.print(table)
    finally:
        engine.close()


@keys_app.command("revoke")
def keys_revoke(key_id: str, home: HomeOpt = None) -> None:
    """Revoke a key by its id; it stops working within seconds on every server."""
    from clickrec.app import keys
    from clickrec.core.errors import NotFound

    engine = _engine(home)
    try:
        try:
            keys.revoke(engine, key_id)
        except NotFound as exc:
            err.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        _audit_cli(engine, "keys revoke", key_id)
        out.print(f"revoked {key_id}")
    finally:
        engine.close()


@keys_app.command("rotate-data-key")
def keys_rotate_data_key(home: HomeOpt = None) -> None:
    """Encrypt the lake and model artifacts under a new data key, then retire the old one.

    Stop `clickrec serve` first. Safe to interrupt: run it again to finish.
    """
    from clickrec.app import keys

    settings = _settings(home)
    try:
        with _progress() as bar:
            task = bar.add_task("re-encrypting lake parts and model files", total=None)
            rotation = keys.rotate(
                settings, lambda done, total: bar.update(task, completed=done, total=total)
            )
    except ClickrecError as exc:
        raise _fail(exc) from exc
    out.print(f"data key {rotation.key_id} now encrypts {rotation.files} files")
    if rotation.key_file is None:
        out.print(f"remove the retired keys {', '.join(rotation.retired)} from CLICKREC_DATA_KEY")
    else:
        out.print(f"retired {', '.join(rotation.retired)}; back up {rotation.key_file} now")


@app.command()
def migrate(
    event_log: Annotated[
        str | None, typer.Option(help="redis://… (or rediss://): where the event log goes.")
    ] = None,
    catalog: Annotated[
        str | None, typer.Option(help="postgresql://…: where the catalog goes.")
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Copy this home's event log and catalog into the scale-out stores, verify them by
    counts and checksums, then name them in the config file (docs/scale-out.md).

    Stop `clickrec serve` first. Safe to interrupt: run it again to finish. The lake and
    the model artifacts stay where they are.
    """
    from clickrec.migrate import migrate as run_migration

    settings = _settings(home)
    tasks: dict[str, Any] = {}
    try:
        with _progress() as bar:

            def progress(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(f"copying {what}", total=total)
                bar.update(tasks[what], completed=done, total=total)

            checks = run_migration(settings, event_log, catalog, progress)
    except ClickrecError as exc:
        raise _fail(exc) from exc
    table = Table("copied", "rows", "checksum (SHA-256, both sides)")
    for check in checks:
        table.add_row(check.name, f"{check.rows:,}", check.checksum[:16])
    out.print(table)
    out.print(f"{settings.home / 'clickrec.toml'} now names the new stores (the old file: "
              "clickrec.toml.before-migrate)")  # fmt: skip


@import_app.command("interactions")
def import_interactions(
    file: Path,
    home: HomeOpt = None,
    user_col: str = "user_id",
    session_col: str = "session_id",
    item_col: str = "item_id",
    type_col: str = "event_type",
    time_col: str = "timestamp",
    value_col: str = "event_value",
    id_col: str = "event_id",
    default_type: str = "click",
) -> None:
    """Import past interactions through the same path as live events (log → lake)."""
    from clickrec.app import ingest
    from clickrec.importing import InteractionColumns, read_table

    cols = InteractionColumns(
        user_col, session_col, item_col, type_col, time_col, value_col, id_col, default_type
    )
    engine = _engine(home)
    try:
        total = read_table(file, cols.text()).num_rows
        with _progress() as bar:
            task = bar.add_task(f"validating, then importing {file.name}", total=2 * total)
            rows, accepted, dups = ingest.import_history(
                engine, file, cols, lambda n: bar.advance(task, n)
            )
    except ClickrecError as exc:
        raise _fail(exc) from exc
    finally:
        engine.close()
    out.print(f"{rows} rows: {accepted} accepted, {dups} duplicates")


@import_app.command("items")
def import_items(
    file: Path, home: HomeOpt = None, id_col: str = "item_id", list_sep: str = "|"
) -> None:
    """Import catalog items (categories and tags may be joined with --list-sep)."""
    from clickrec.app import catalog
    from clickrec.importing import BATCH, item_records

    engine = _engine(home)
    try:
        items = item_records(file, id_col, list_sep)
        with _progress() as bar:
            task = bar.add_task(f"importing {file.name}", total=len(items))
            for start in range(0, len(items), BATCH):
                chunk = items[start : start + BATCH]
                catalog.put_items(engine, [i.to_record() for i in chunk])
                bar.advance(task, len(chunk))
    except ClickrecError as exc:
        raise _fail(exc) from exc
    finally:
        engine.close()
    out.print(f"{len(items)} items imported")


@app.command()
def train(
    home: HomeOpt = None,
    run_id: Annotated[
        str | None,
        typer.Option(help="Run this pending run (the worker's way) instead of a new one."),
    ] = None,
    parent_pid: Annotated[
        int | None, typer.Option(help="Stop when this process (the worker) is gone.")
    ] = None,
    fence_token: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the training pipeline now and show what it chose and published."""
    from clickrec.app import training
    from clickrec.core.errors import NotFound

    if parent_pid is not None:
        _exit_with_parent(parent_pid)
    engine = _engine(home)
    if fence_token is not None:  # the worker's trainer lease: publish only while it holds
        from clickrec.training.scheduler import LEASE

        engine.pipeline.fence = (LEASE, fence_token)
    _start_tracing(engine.settings, "trainer" if run_id else "cli")
    try:
        try:
            run = training.run_for(engine, run_id)
        except NotFound as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        with err.status("training…") as status:
            done = training.run_here(
                engine, run["id"], on_step=lambda step: status.update(f"training: {step}")
            )
    finally:
        engine.close()
        _stop_tracing()
    if done.get("state") != "succeeded":
        err.print(f"[red]training failed:[/red] {done.get('error')}")
        raise typer.Exit(1)
    metrics = done["metrics"]
    out.print(
        f"model {done['model_version']} ({metrics['chosen']}) "
        f"{'published' if done['published'] else 'kept the live model'}"
    )
    columns = ("mrr@20", "hr@20", "mrr@10", "hr@10")
    table = Table("candidate (replay)", *columns)
    ranked = sorted(metrics["candidates"].items(), key=lambda kv: -kv[1].get("mrr@20", 0.0))
    for name, m in ranked:
        table.add_row(name, *(f"{m.get(k, float('nan')):.4f}" for k in columns))
    out.print(table)


def _jsonl_lines(path: Path) -> list[bytes]:
    if not path.is_file():
        err.print(f"[red]error:[/red] no such file: {path}")
        raise typer.Exit(2)
    return [line for line in path.read_bytes().splitlines() if line.strip()]


def _run_batch(home: Path | None, kind: str, source: Path, target: Path) -> None:
    from clickrec.app import batch

    lines = _jsonl_lines(source)
    engine = _serving_engine(home)
    try:
        with _progress() as bar:
            task = bar.add_task(kind, total=len(lines))
            written, errors = batch.run_file(
                engine, kind, lines, target, lambda n: bar.advance(task, n)
            )
    finally:
        engine.close()
    out.print(f"{written} lines written to {target} ({errors} with an error)")
    if errors:
        raise typer.Exit(1)


@batch_app.command("recommend")
def batch_recommend(
    input_file: Annotated[
        Path, typer.Option("--input", help='JSON lines: {"user_id"|"session_id", ...}')
    ],
    output: Annotated[Path, typer.Option("--output", help="JSON lines, one per input line")],
    home: HomeOpt = None,
) -> None:
    """Recommendations for every reader of a file (newsletters, e-mails), from the live
    model and the readers' latest clicks; a bad line gets its error in the output."""
    _run_batch(home, "recommendations", input_file, output)


@batch_app.command("segments")
def batch_segments(
    items: Annotated[Path, typer.Option("--items", help='JSON lines: {"item_id", ...}')],
    output: Annotated[Path, typer.Option("--output", help="JSON lines, one per item")],
    home: HomeOpt = None,
) -> None:
    """For each item, the readers most likely to read it next (item affinity)."""
    _run_batch(home, "segments", items, output)


SeqArgs = Annotated[list[int] | None, typer.Argument(help="Seqs (default: every parked one).")]


@dlq_app.command("list")
def dlq_list(
    state: Annotated[str, typer.Option(help="parked, replay, done, purged or all.")] = "parked",
    home: HomeOpt = None,
) -> None:
    """Parked events with their error and attempt count."""
    from clickrec.app import dead_letters

    engine = _engine(home)
    try:
        letters = dead_letters.letters(engine, state)
    finally:
        engine.close()
    table = Table("seq", "consumer", "event_id", "attempts", "state", "error")
    for d in letters:
        table.add_row(
            str(d["seq"]),
            d["consumer"],
            d["event_id"] or "",
            str(d["attempts"]),
            d["state"],
            d["error"],
        )
    out.print(table)
    out.print(f"{len(letters)} dead letter(s)")


@dlq_app.command("show")
def dlq_show(seq: int, home: HomeOpt = None) -> None:
    """One dead letter and its event as stored in the log (JSON)."""
    from clickrec.app import dead_letters
    from clickrec.core.errors import NotFound

    engine = _engine(home)
    try:
        letter = dead_letters.letter(engine, seq)
    except NotFound as exc:
        raise _fail(exc) from exc
    finally:
        engine.close()
    print(json.dumps(letter, indent=1))


@dlq_app.command("replay")
def dlq_replay(seqs: SeqArgs = None, home: HomeOpt = None) -> None:
    """Process these letters again once their cause is fixed (the running worker does it
    on its next pass; a letter still bad is parked again with its new error)."""
    from clickrec.app import dead_letters

    engine = _engine(home)
    try:
        n = dead_letters.replay(engine, seqs or None)
        _audit_cli(engine, "dlq replay", " ".join(map(str, seqs or [])) or "all")
    finally:
        engine.close()
    out.print(f"{n} dead letter(s) will be replayed by the archive")


@dlq_app.command("purge")
def dlq_purge(seqs: SeqArgs = None, home: HomeOpt = None) -> None:
    """Give up on these letters: never archived (the event log keeps the events)."""
    from clickrec.app import dead_letters

    engine = _engine(home)
    try:
        n = dead_letters.purge(engine, seqs or None)
        _audit_cli(engine, "dlq purge", " ".join(map(str, seqs or [])) or "all")
    finally:
        engine.close()
    out.print(f"{n} dead letter(s) purged")


@users_app.command("erase")
def users_erase(
    user_id: Annotated[str, typer.Argument(help="the reader's user id")],
    wait: Annotated[bool, typer.Option(help="wait until the job is done")] = True,
    home: HomeOpt = None,
) -> None:
    """Erase a reader from the log, the lake, the online state, the catalog and batch
    outputs. With `clickrec serve` running, its server and worker do the job (as for
    DELETE /v1/users/{id}); otherwise this command does it."""
    from clickrec.app import erasure

    engine = _engine(home)
    try:
        job = erasure.submit(engine, user_id)
        _audit_cli(engine, "users erase", f"erasure {job['id']}")
        out.print(f"erasure {job['id']} started")
        job = erasure.finish_here(engine, job, wait)
    finally:
        engine.close()
    counts = ", ".join(f"{k} {v}" for k, v in (job.get("counts") or {}).items())
    out.print(f"erasure {job['id']}: {job['state']}" + (f" ({counts})" if counts else ""))
    if wait and job["state"] != "done":
        raise typer.Exit(1)


TEMPORAL_COLUMNS = (
    "ndcg@10",
    "precision@10",
    "recall@10",
    "mrr@20",
    "hit_rate@20",
    "coverage@20",
    "popular_share@20",
)
SESSION_COLUMNS = ("mrr@20", "hr@20")
REPLAY_COLUMNS = ("hr@5", "hr@10", "hr@20", "mrr@10", "mrr@20")
LEAVE_LAST_OUT_COLUMNS = ("hr@10", "ndcg@10", "hr@20", "mrr@20")
PROTOCOLS = ("temporal", "session", "replay", "leave-last-out")


@app.command()
def evaluate(
    file: Path,
    fmt: Annotated[
        str, typer.Option("--format", help="csv (any mapped CSV/TSV/Parquet), movielens, session.")
    ] = "csv",
    test_file: Annotated[
        Path | None, typer.Option(help="Test sessions in the same format (session protocol).")
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help="temporal, session, replay or leave-last-out "
            "(default: session for --format session)."
        ),
    ] = None,
    holdout: Annotated[
        float, typer.Option(help="Share held out: of time (temporal, replay) or of sessions.")
    ] = 0.1,
    max_readers: Annotated[
        int, typer.Option(help="Test readers sampled (temporal, leave-last-out).")
    ] = 2000,
    max_sessions: Annotated[int, typer.Option(help="Test sessions sampled (session).")] = 5000,
    max_events: Annotated[
        int, typer.Option(help="First touches after the cut sampled (replay).")
    ] = 5000,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write all metrics here.")] = None,
    user_col: str = "user_id",
    session_col: str = "session_id",
    item_col: str = "item_id",
    type_col: str = "event_type",
    time_col: str = "timestamp",
    value_col: str = "event_value",
    id_col: str = "event_id",
    default_type: str = "click",
) -> None:
    """Score the recipes on an interaction file offline, through the serving scorer."""
    from clickrec.core.errors import InvalidInput
    from clickrec.importing import InteractionColumns
    from clickrec.training.offline import (
        leave_last_out,
        load_dataset,
        replay,
        session_next_click,
        temporal,
    )

    cols = InteractionColumns(
        user_col, session_col, item_col, type_col, time_col, value_col, id_col, default_type
    )
    chosen = protocol or ("session" if fmt == "session" else "temporal")
    try:
        if chosen not in PROTOCOLS:
            raise InvalidInput(f"unknown protocol {chosen!r}: use {', '.join(PROTOCOLS)}")
        if test_file is not None and chosen != "session":
            raise InvalidInput("--test-file needs --protocol session")
        with err.status(f"loading {file.name}…") as status:
            table = load_dataset(file, cols, fmt)
            test = load_dataset(test_file, cols, fmt) if test_file is not None else None

            def step(name: str) -> None:
                status.update(f"evaluating {name}…")

            if chosen == "temporal":
                results = temporal(
                    table, holdout_fraction=holdout, max_readers=max_readers, progress=step
                )
            elif chosen == "replay":
                results = replay(
                    table, holdout_fraction=holdout, max_events=max_events, progress=step
                )
            elif chosen == "leave-last-out":
                results = leave_last_out(table, max_readers=max_readers, progress=step)
            else:
                results = session_next_click(
                    table,
                    test=test,
                    test_fraction=holdout,
                    max_sessions=max_sessions,
                    progress=step,
                )
    except ClickrecError as exc:
        raise _fail(exc) from exc
    first = next(iter(results.values()))
    counts: dict[str, int] = {k: int(first[k]) for k in ("users", "items", "events") if k in first}
    shown = {
        "temporal": TEMPORAL_COLUMNS,
        "replay": REPLAY_COLUMNS,
        "leave-last-out": LEAVE_LAST_OUT_COLUMNS,
    }.get(chosen, SESSION_COLUMNS)
    table_out = Table(title=f"{file.name} ({chosen})")
    table_out.add_column("candidate", no_wrap=True)
    for name in shown:
        table_out.add_column(name, justify="right", overflow="fold")
    for name, m in results.items():
        table_out.add_row(name, *(f"{m[k]:.4f}" for k in shown))
    # Piped (or captured) output is not folded to 80 columns: the table stays one per line.
    wide = out if out.is_terminal else Console(width=max(out.width, 160))
    wide.print(table_out)
    if chosen == "temporal":
        extra = f"{int(first['test_readers'])} test readers"
    elif chosen == "replay":
        extra = (
            f"{int(first['sampled'])} first touches of an item asked after the cut "
            f"({first['cold_share']:.1%} by readers with nothing before them); "
            f"{int(first['observed'])} events replayed to every model"
        )
    elif chosen == "leave-last-out":
        extra = (
            f"{int(first['readers'])} readers asked, each one's last interaction held out; "
            "the full catalog ranked, the reader's items excluded, ties counted against it"
        )
        if first["repeats"]:
            extra += f"; {int(first['repeats'])} readers left out (their last item was a re-read)"
    else:
        extra = (
            f"{int(first['predictions'])} predictions in {int(first['test_sessions'])} test "
            f"sessions; {first['repeat_share']:.1%} of next clicks repeat an item of the session "
            "(never recommended, counted as misses)"
        )
    out.print(", ".join(f"{v} {k}" for k, v in counts.items()) + f"; {extra}")
    if json_out is not None:
        report: dict[str, Any] = {
            "file": str(file),
            "test_file": str(test_file) if test_file is not None else None,
            "format": fmt,
            "protocol": chosen,
            **counts,
            "candidates": results,
        }
        json_out.write_text(json.dumps(report, indent=1))
        out.print(f"metrics written to {json_out}")


@app.command()
def status(home: HomeOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the live model, recent training runs and the state of the stores."""
    from clickrec.app import operate

    engine = _engine(home)
    try:
        info = operate.status(engine)
    finally:
        engine.close()
    if as_json:
        print(json.dumps(info, indent=1, default=str))
        return
    out.print_json(data=info, default=str)


def _utc_seconds(text: str, option: str) -> float:
    """Unix seconds of an ISO date or date-time; one that names no zone is UTC."""
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(
            f"not an ISO date or date-time: {text!r}", param_hint=option
        ) from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def _iso(seconds: float) -> str:
    """Unix seconds as an ISO date-time in UTC, e.g. 2026-01-15T12:00:00Z."""
    when = dt.datetime.fromtimestamp(seconds, dt.UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


@demo_app.command("generate")
def demo_generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")],
    users: int = 1000,
    days: int = 14,
    posts_per_day: int = 40,
    seed: int = 0,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet")] = "csv",
    end: Annotated[
        str | None,
        typer.Option(
            "--end",
            help="When the blog ends, ISO date or date-time, UTC unless it names a zone "
            "(2026-01-15, 2026-01-15T12:00:00Z); default now. The same seed and end give the "
            "same files.",
        ),
    ] = None,
) -> None:
    """Write a synthetic blog that ends now: posts every day, topical readers, fast-decaying
    interest; the last day is today, up to now, so live events carry on from it."""
    from clickrec.core.clock import SystemClock
    from clickrec.testing.synthetic import BlogSpec, generate_blog, write_blog

    ends = _utc_seconds(end, "--end") if end is not None else math.floor(SystemClock().now())
    with err.status("generating…"):
        blog = generate_blog(
            BlogSpec(users=users, days=days, posts_per_day=posts_per_day, seed=seed, end=ends)
        )
        paths = write_blog(blog, out_dir, fmt)
    out.print(f"{days} days up to {_iso(ends)}")
    out.print(f"{blog.items.num_rows} posts → {paths['items']}")
    out.print(f"{blog.interactions.num_rows} interactions → {paths['interactions']}")


if __name__ == "__main__":
    app()
