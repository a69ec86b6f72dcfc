"""Structured logs: one JSON object per line, with per-component logger names."""

from __future__ import annotations

import logging
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
