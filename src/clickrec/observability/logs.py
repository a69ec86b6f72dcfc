"""Structured logs: one JSON object per line, with per-component logger names."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import orjson

from clickrec.observability import tracing


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", ...}``; a dict message becomes fields, else "message";
    a line logged inside a span also gets its ``trace_id`` and ``span_id``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.msg, dict):
            line.update(record.msg)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        for key, value in tracing.log_ids().items():  # inside a span: its trace and span id
            line.setdefault(key, value)
        return orjson.dumps(line, default=str).decode()


def configure(level: str) -> None:
    """Send every clickrec log line to stderr as JSON at ``level``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class FailureStreak:
    """How a loop that retries a failing pass logs it: one traceback when the failures
    start, then a line a minute while they last, and a line when a pass works again (a
    store that is down for an hour is not 3,600 tracebacks)."""

    def __init__(self, log: logging.Logger, what: str, every: float = 60.0) -> None:
        self.log = log
        self.what = what
        self.every = every
        self.since: float | None = None
        self._said = 0.0

    def failed(self) -> None:
        """Call from an ``except`` block (the first failure's traceback is logged)."""
        now = time.monotonic()
        if self.since is None:
            self.since = self._said = now
            self.log.exception("%s failed; retrying", self.what)
        elif now - self._said >= self.every:
            self._said = now
            self.log.warning("%s failing for %.0f s", self.what, now - self.since)

    def worked(self) -> None:
        if self.since is not None:
            self.log.info("%s works again after %.0f s", self.what, time.monotonic() - self.since)
            self.since = None
