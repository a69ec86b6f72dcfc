"""Choose a backend by the URL scheme of its store setting."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from clickrec.backends.base import EventLog, Lake, ModelStore
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import Settings
from clickrec.core.datakeys import (
    DataKey,
    DataKeyError,
    DataKeys,
    create_key_file,
    read_key_file,
)
from clickrec.core.errors import StoreUnavailable

if TYPE_CHECKING:
    from clickrec.backends.redis_limits import RedisBuckets

logger = logging.getLogger("clickrec.keys")
DEFAULT_KEY_FILE = "data.key"


def open_event_log(settings: Settings) -> EventLog:
    url = settings.stores.event_log
    if url.startswith("sqlite:///"):
        from clickrec.backends.sqlite_log import SQLiteEventLog

        return SQLiteEventLog(settings.store_path(url))
    if url.startswith(("redis://", "rediss://")):
        try:
            from clickrec.backends.redis_log import RedisEventLog
        except ModuleNotFoundError as exc:
            raise StoreUnavailable(
                "the Redis event log needs the redis client: pip install 'clickrec[redis]'"
            ) from exc
        return RedisEventLog(url)
    raise ValueError(f"no event log backend for {url!r} (supported: sqlite:///, redis://)")


def open_shared_limits(settings: Settings) -> RedisBuckets | None:
    """The rate-limit buckets every process shares: ``limits.shared``, else the event log's
    Redis; None (buckets per process) when neither is Redis."""
    url = settings.limits.shared or settings.stores.event_log
    if not url.startswith(("redis://", "rediss://")):
        if settings.limits.shared:
            raise ValueError(f"limits.shared must be a redis:// URL, not {url!r}")
        return None
    from clickrec.backends.redis_limits import RedisBuckets

    return RedisBuckets(url.split("?", 1)[0])  # the log's own options are not redis-py's


def open_catalog(settings: Settings) -> SQLCatalog:
    """The catalog; StoreUnavailable, in one line, when its driver is missing or the
    database cannot be reached."""
    url = settings.stores.catalog
    if url.startswith("sqlite:///"):
        path = settings.store_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return _connect_catalog(f"sqlite:///{path}")
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return _connect_catalog(url)
    raise ValueError(f"no catalog backend for {url!r} (supported: sqlite:///, postgresql://)")


def _connect_catalog(url: str) -> SQLCatalog:
    """Open a SQL catalog, its failures as one line that says what to fix (no password)."""
    try:
        return SQLCatalog(url)
    except ModuleNotFoundError as exc:
        raise StoreUnavailable(_missing_driver(exc.name or "")) from exc
    except sa.exc.DBAPIError as exc:
        where = sa.make_url(url).render_as_string(hide_password=True)
        reason = next(iter(str(exc.orig).strip().splitlines()), "no reason given")
        raise StoreUnavailable(f"cannot open the catalog at {where}: {reason}") from exc


def _missing_driver(module: str) -> str:
    """What to install for a catalog whose database driver is not there."""
    if module.split(".")[0] == "psycopg":
        return "the PostgreSQL catalog needs the psycopg driver: pip install 'clickrec[postgres]'"
    return f"the catalog needs the Python module {module}, which is not installed"


def data_key_file(settings: Settings) -> Path | None:
    """The key file the data keys come from; None when CLICKREC_DATA_KEY gives them."""
    if settings.encryption.data_key is not None:
        return None
    path = Path(settings.encryption.key_file or DEFAULT_KEY_FILE)
    return path if path.is_absolute() else settings.home / path


def open_data_keys(settings: Settings) -> DataKeys | None:
    """The data keys; None when encryption is off and no key is there to read old files.

    With encryption on and no key configured, ``<home>/data.key`` is made (random, mode
    600). A key file that is configured but missing is an error, never a fresh key.
    """
    enc = settings.encryption
    path = data_key_file(settings)
    if path is None:
        assert enc.data_key is not None
        text = enc.data_key.get_secret_value()
        return DataKeys([DataKey.from_base64(k) for k in text.split(",") if k.strip()], enc.enabled)
    if not path.exists():
        if not enc.enabled:
            return None
        if enc.key_file is not None:
            raise DataKeyError(f"data key file {path} (encryption.key_file) does not exist")
        if create_key_file(path):
            logger.warning("created data key file %s: back it up (docs/security.md)", path)
    if path.stat().st_mode & 0o077:
        logger.warning("data key file %s is readable by others: chmod 600 it", path)
    return DataKeys(read_key_file(path), enc.enabled)


def open_lake(settings: Settings, data_keys: DataKeys | None = None) -> Lake:
    """The lake; it encrypts and decrypts parts with ``data_keys`` when given."""
    url = settings.stores.lake
    if url.startswith("file://"):
        from clickrec.lake.localfs import LocalLake

        return LocalLake(settings.store_path(url), data_keys)
    if url.startswith("s3://"):
        with _s3_client_module():
            from clickrec.backends.s3 import S3Url, check_bucket, open_client
            from clickrec.lake.s3 import S3Lake
        client = open_client(settings.s3)
        try:
            check_bucket(client, S3Url.parse(url), "lake")
        except BaseException:
            client.close()
            raise
        return S3Lake(client, url, data_keys, settings.s3.writer_lease_seconds)
    raise ValueError(f"no lake backend for {url!r} (supported: file://, s3://)")


def open_model_store(settings: Settings) -> ModelStore:
    """Where model artifacts are saved and loaded from (``stores.models``)."""
    from clickrec.backends.model_store import LocalModelStore

    url = settings.stores.models
    if url.startswith("file://"):
        return LocalModelStore(settings.store_path(url))
    if url.startswith("s3://"):
        with _s3_client_module():
            from clickrec.backends.model_store import S3ModelStore
            from clickrec.backends.s3 import S3Url, check_bucket, open_client
        client = open_client(settings.s3)
        try:
            check_bucket(client, S3Url.parse(url), "model store")
        except BaseException:
            client.close()
            raise
        cache = settings.home / "cache"
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        return S3ModelStore(client, url, cache / "models")
    raise ValueError(f"no model store for {url!r} (supported: file://, s3://)")


@contextlib.contextmanager
def _s3_client_module() -> Iterator[None]:
    """Imports of the S3 backends: a missing boto3 is StoreUnavailable, saying what to do."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("boto3", "botocore"):
            raise
        raise StoreUnavailable(
            "the s3:// stores need the boto3 client: pip install 'clickrec[s3]'"
        ) from exc
