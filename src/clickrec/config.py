"""Settings: one TOML file in the home folder, overridden by CLICKREC_* environment variables.

A typo in the file is an error (``extra="forbid"``), never a silent default. Nested
settings are overridden with a double underscore: ``CLICKREC_TRAINING__SCHEDULE_HOURS=1``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from clickrec.core.errors import Conflict

CONFIG_FILE = "clickrec.toml"
DATA_LOCATIONS = (
    ("stores", "event_log"),
    ("stores", "catalog"),
    ("stores", "lake"),
    ("stores", "models"),
    ("s3", "endpoint_url"),
    ("encryption", "key_file"),
)
"""Settings that decide where data (or the key to read it) lives: ``init`` records them."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreSettings(Section):
    """Backend URLs per role; relative sqlite/file paths are resolved against the home. The
    lake and the models may be ``s3://bucket/prefix`` (an S3-compatible store, ``[s3]``)."""

    event_log: str = "sqlite:///events.db"
    catalog: str = "sqlite:///catalog.db"
    lake: str = "file://lake"
    models: str = "file://models"


class S3Settings(Section):
    """The S3-compatible store behind ``s3://bucket/prefix`` lake and model URLs.

    Credentials are never settings: boto3 finds them where the AWS tools do (AWS_* variables,
    ``~/.aws``, an instance or pod role)."""

    endpoint_url: str | None = None
    """Another S3-compatible store (MinIO, Ceph, R2…), e.g. ``http://minio:9000``; None: AWS."""
    region: str | None = None
    """None: the region boto3 finds (AWS_REGION, ``~/.aws/config``)."""
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    """``path`` for stores that serve buckets only as ``endpoint/bucket`` (most MinIO)."""
    writer_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    """The lake's writer lease: renewed every quarter of it; a writer that died is replaced
    once its lease went this long without renewal."""


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    processes: int = Field(default=1, ge=1, le=256)
    """API processes sharing the port (``serve --processes``): more cores for requests;
    each keeps its own online state (memory × N) current from the event log."""
    max_body_bytes: int = 1_048_576
    tls_cert: str | None = None
    """PEM certificate: serve HTTPS (HSTS is then sent on every response)."""
    tls_key: str | None = None
    cors_origins: list[str] = []
    """Origins allowed to call POST /v1/events from a browser besides tracker keys' own."""
    log_level: str = "info"


class LimitSettings(Section):
    """Limits applied before any handler runs; rates are requests per second."""

    per_address_rps: float = Field(default=2000.0, gt=0)
    """Every request from one client address (floods, stolen or made-up keys)."""
    ingest_rps: float = Field(default=1000.0, gt=0)
    read_rps: float = Field(default=1000.0, gt=0)
    admin_rps: float = Field(default=1000.0, gt=0)
    tracker_rps: float = Field(default=2000.0, gt=0)
    """A tracker key serves a whole site's browsers: its own, higher rate per key…"""
    tracker_per_address_rps: float = Field(default=20.0, gt=0)
    """…and a low one per browser address, so one page cannot flood the engine."""
    burst_seconds: float = Field(default=2.0, gt=0)
    """A bucket holds this many seconds' worth of requests (the burst)."""
    max_header_bytes: int = Field(default=16_384, ge=1024)
    shared: str = ""
    """A ``redis://`` URL whose server keeps the rate-limit buckets, so every limit holds for
    the whole deployment (all replicas and ``serve --processes``) rather than per process.
    Empty: the event log's Redis when it is on Redis, else per process."""
    max_archive_lag: int = Field(default=5_000_000, ge=0)
    """/readyz is 503 while more log events than this wait for the archive."""
    max_serving_lag: int = Field(default=100_000, ge=0)
    """/readyz is 503 while more log events than this wait for the online state."""
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """A client that has not sent its whole body this long after its headers gets 408."""
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    """A connection that has not sent a request's whole header block this long after it
    opened (or after its previous response) gets 408 and is closed."""


class TrainingSettings(Section):
    schedule_hours: float = Field(default=6.0, gt=0)
    retrain_growth: float = Field(default=1.0, gt=0)
    """Also retrain once the log has grown by this share since the live model's data."""
    min_retrain_minutes: float = Field(default=2.0, ge=0)
    min_interactions: int = Field(default=1000, ge=1)
    min_users: int = Field(default=25, ge=1)
    min_events_per_user: int = Field(default=2, ge=1)
    holdout_fraction: float = Field(default=0.1, gt=0, lt=0.5)
    """The newest share of events a run replays to choose its model (at most 200,000
    events), doubled while too few readers touch something new after the cut."""
    gate_tolerance: float = Field(default=0.05, ge=0, le=1)
    """A candidate is published unless its replay MRR@20 is below (1 - tolerance) × the
    live model's in the same replay."""
    half_life_hours: float = Field(default=24.0, gt=0)
    neighbours: int = Field(default=100, ge=1, le=1000)


class ServingSettings(Section):
    default_results: int = Field(default=25, ge=1, le=500)
    history_length: int = Field(default=50, ge=1, le=1000)
    """Newest reads of a reader that shape their recommendations."""
    seen_length: int = Field(default=500, ge=1, le=10_000)
    """Newest reads of a reader that are never recommended to them again."""
    trending_half_life_hours: float = Field(default=6.0, gt=0)
    exploration_weight: float = Field(default=0.3, ge=0, le=1)
    exploration_item_age_cutoff_days: float = Field(default=2.0, gt=0)
    model_poll_seconds: float = Field(default=1.0, gt=0)
    ignore_event_types: list[str] = ["impression"]
    """Event types that record what a reader was shown, not what they read (the page
    tracker's ``impression``): kept in the log and the lake, never taken as a read by the
    online state or by training, and never counted as a click on a recommendation."""
    catch_up_seconds: float = Field(default=0.05, ge=0, le=5)
    """Read-your-writes across processes: before an answer, a server behind the event log's
    head (events another replica or an import appended) applies them, waiting at most this
    long; past it the answer goes out and clickrec_answers_behind_log_total counts it.
    0: only the background tail (every 0.25 s) brings others' events."""
    replay_events: int = Field(default=2_000_000, ge=0)
    """How many of the newest log events rebuild the online state at start-up."""
    session_idle_minutes: float = Field(default=30.0, ge=0)
    """An anonymous session with no event for this long (event time) is over and its
    history leaves the online state (the log keeps it); 0 keeps every session."""
    max_readers: int = Field(default=2_000_000, ge=0)
    """Readers (signed-in users and anonymous sessions) the online state keeps; past it the
    least recently active tenth leave it (the log keeps their events, and a reader who comes
    back starts a new history). About 0.5-1 KB each; 0: no limit."""
    context_weight: float = Field(default=1.0, ge=0, le=4)
    """How strongly a request's ``context`` bends trending toward what trends among events
    with the same context values (docs/context.md); 0 ignores contexts."""
    max_context_values: int = Field(default=64, ge=0, le=1024)
    """(key, value) pairs of event contexts that get their own trending counts (the first
    seen); each costs 8 bytes per item."""


class EncryptionSettings(Section):
    """Encryption at rest of lake parts and model artifacts (docs/security.md)."""

    enabled: bool = True
    """Off: new files are written in clear; files encrypted earlier still read."""
    key_file: str | None = None
    """Data key file (relative to the home); default ``data.key``, made on first use."""
    data_key: SecretStr | None = None
    """Base64 keys, comma-separated, the first encrypts (CLICKREC_DATA_KEY); beats key_file."""


class TracingSettings(Section):
    """OpenTelemetry traces (docs/tracing.md); off unless an OTLP endpoint is set here or
    in OTEL_EXPORTER_OTLP_ENDPOINT."""

    otlp_endpoint: str = ""
    """OTLP/HTTP base URL, e.g. ``http://collector:4318`` (``/v1/traces`` is added)."""
    service_name: str = "clickrec"
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """Share of new traces kept; a caller's sampled ``traceparent`` is always followed."""


class BatchSettings(Section):
    """Quotas and retention of batch jobs made through the API, per key (docs/security.md);
    ``clickrec batch`` on the command line writes where its user says and is not bound."""

    max_lines_per_job: int = Field(default=10_000, ge=1, le=10_000)
    """Input lines one job may hold (the API never takes more than 10,000)."""
    max_output_bytes: int = Field(default=100_000_000, ge=1)
    """A job whose output would grow past this fails, and its partial output is deleted."""
    max_running_per_key: int = Field(default=2, ge=1)
    """Jobs one key may have pending or running at once; past it a new one gets 409."""
    max_retained_bytes_per_key: int = Field(default=500_000_000, ge=1)
    """Finished outputs one key keeps on disk; at or past it a new job gets 409. A key's
    worst case is this plus ``max_running_per_key`` × ``max_output_bytes``."""
    retention_hours: float = Field(default=24.0, gt=0)
    """Outputs are deleted this long after their job finished (the job then says
    ``expired``); the job itself is forgotten one more period later."""


class Settings(Section):
    home: Path = Path("var")
    stores: StoreSettings = StoreSettings()
    s3: S3Settings = S3Settings()
    server: ServerSettings = ServerSettings()
    limits: LimitSettings = LimitSettings()
    training: TrainingSettings = TrainingSettings()
    serving: ServingSettings = ServingSettings()
    encryption: EncryptionSettings = EncryptionSettings()
    tracing: TracingSettings = TracingSettings()
    batch: BatchSettings = BatchSettings()

    def store_path(self, url: str) -> Path:
        """The local path of a sqlite:/// or file:// URL, relative ones under the home."""
        for prefix in ("sqlite:///", "file://"):
            if url.startswith(prefix):
                p = Path(url[len(prefix) :])
                return p if p.is_absolute() else self.home / p
        raise ValueError(f"not a local store URL: {url}")


def default_home() -> Path:
    return Path(os.environ.get("CLICKREC_HOME", "var"))


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith("CLICKREC_") or key == "CLICKREC_HOME":
            continue
        parts = key[len("CLICKREC_") :].lower().split("__")
        if parts == ["port"]:
            parts = ["server", "port"]
        if parts == ["data_key"]:
            parts = ["encryption", "data_key"]
        if parts[0] not in Settings.model_fields:
            continue  # not a setting (CLICKREC_HOME, test hooks); typos in files still fail
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(merged.get(k), dict):
            merged[k] = _merge(merged[k], v)
        else:
            merged[k] = v
    return merged


def load_settings(home: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from ``<home>/clickrec.toml`` (if present) and the environment.

    Refuses (Conflict) when the environment moves a store the file names elsewhere while
    the file's store holds data (a remote store always might): the data would then be
    split between two places, or a command would read an empty store as if it were all.
    """
    environ = dict(os.environ) if environ is None else environ
    home = home or Path(environ.get("CLICKREC_HOME", "var"))
    in_file = _read_config(home)
    overrides = _env_overrides(environ)
    settings = Settings.model_validate({**_merge(in_file, overrides), "home": home})
    for split in _disagreements(home, in_file, overrides):
        if split.field[0] == "stores" and _holds_data(home, split.in_file):
            raise Conflict(split.message)
    return settings


def config_disagreements(home: Path, environ: dict[str, str] | None = None) -> list[str]:
    """One line per data location the config file names that the environment moves
    elsewhere (what ``init`` refuses on a home that already has a config file)."""
    environ = dict(os.environ) if environ is None else environ
    in_file, overrides = _read_config(home), _env_overrides(environ)
    return [split.message for split in _disagreements(home, in_file, overrides)]


def write_default_config(home: Path, settings: Settings | None = None) -> Path:
    """Write a default config file unless one exists, with the data locations of
    ``settings`` (the environment's at init), so later runs without it find the same data.

    Passwords in store URLs stay out of the file (give them by the environment or the
    driver's own means, e.g. PGPASSWORD); return the file's path.
    """
    path = home / CONFIG_FILE
    if not path.exists():
        doc = Settings().model_dump(mode="json", exclude={"home"}, exclude_none=True)
        for section, name in DATA_LOCATIONS if settings is not None else ():
            value = getattr(getattr(settings, section), name)
            if value is not None:
                doc[section][name] = _without_password(value)
        path.write_text(tomli_w.dumps(doc))
    return path


@dataclass(frozen=True)
class _Disagreement:
    """A data location the config file names and the environment names otherwise."""

    field: tuple[str, str]
    in_file: str
    in_env: str

    @property
    def message(self) -> str:
        section, name = self.field
        variable = f"CLICKREC_{section.upper()}__{name.upper()}"
        return (
            f"the config file says {section}.{name} = {_without_password(self.in_file)} but "
            f"{variable} says {_without_password(self.in_env)}: the data lives in one place; "
            f"change {CONFIG_FILE} or unset the variable"
        )


def _read_config(home: Path) -> dict[str, Any]:
    path = home / CONFIG_FILE
    return tomllib.loads(path.read_text()) if path.exists() else {}


def _disagreements(
    home: Path, in_file: dict[str, Any], overrides: dict[str, Any]
) -> list[_Disagreement]:
    """Data locations the file sets explicitly that the environment sets to another place."""
    found = []
    for section, name in DATA_LOCATIONS:
        file_value = in_file.get(section, {}).get(name)
        env_value = overrides.get(section, {}).get(name)
        if not isinstance(file_value, str) or env_value is None:
            continue
        if _place(home, file_value) != _place(home, env_value):
            found.append(_Disagreement((section, name), file_value, env_value))
    return found


def _place(home: Path, value: str) -> str:
    """Where a store URL or path points, so that two spellings of one place compare equal."""
    for prefix in ("sqlite:///", "file://"):
        if value.startswith(prefix):
            return os.path.abspath(home / value[len(prefix) :])
    if "://" in value:
        return _without_password(value)
    return os.path.abspath(home / value)


def _holds_data(home: Path, value: str) -> bool:
    """Whether a local store (a file or a folder) exists there with something in it. A
    remote one (PostgreSQL, Redis, S3) cannot be told without connecting to it, so it
    counts as holding data: moving it silently could open an empty store in its place."""
    if "://" in value and not value.startswith(("sqlite:///", "file://")):
        return True
    path = Path(_place(home, value))
    if path.is_dir():
        return any(path.iterdir())
    return path.is_file() and path.stat().st_size > 0


def _without_password(url: str) -> str:
    """The URL without its password, if it has one (the user and host stay)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user_info.partition(':')[0]}@{host}"))
