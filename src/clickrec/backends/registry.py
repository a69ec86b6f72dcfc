"""Choose a backend by the URL scheme of its store setting."""

from __future__ import annotations

from clickrec.backends.base import EventLog, Lake
from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.config import Settings


def open_event_log(settings: Settings) -> EventLog:
    url = settings.stores.event_log
    if url.startswith("sqlite:///"):
        from clickrec.backends.sqlite_log import SQLiteEventLog

        return SQLiteEventLog(settings.store_path(url))
    raise ValueError(f"no event log backend for {url!r} (supported: sqlite:///)")


def open_catalog(settings: Settings) -> SQLCatalog:
    url = settings.stores.catalog
    if url.startswith("sqlite:///"):
        path = settings.store_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SQLCatalog(f"sqlite:///{path}")
    if url.startswith(("postgresql://", "postgresql+psycopg://")):
        return SQLCatalog(url)
    raise ValueError(f"no catalog backend for {url!r} (supported: sqlite:///, postgresql://)")


def open_lake(settings: Settings) -> Lake:
    url = settings.stores.lake
    if url.startswith("file://"):
        from clickrec.lake.localfs import LocalLake

        return LocalLake(settings.store_path(url))
    raise ValueError(f"no lake backend for {url!r} (supported: file://)")
