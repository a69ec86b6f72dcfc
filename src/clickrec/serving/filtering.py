"""Filters at serving time: named filters from the catalog, and the catalog as the columns
that filters read, aligned with the online state's item index.

A filter sees a new post or a new event at once: columns are rebuilt (only those some
filter reads, on first use) whenever the catalog or the item index changed, and a reader's
interactions come from the live online state, not from the last training.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.core.errors import FieldError, InvalidInput, NotFound, Unparsable
from clickrec.filters import (
    Filter,
    FilterError,
    FilterSyntaxError,
    ItemColumn,
    column_of,
    flatten,
    parse,
)
from clickrec.filters.ast import Dataset, comparisons

_CACHE_SECONDS = 1.0  # how long another server's filter change may take to be seen here


class CatalogColumns:
    """The catalog as filter columns for one (catalog version, item count). A column is
    built the first time a filter reads it; items only seen in events have no fields."""

    def __init__(self, fields: list[dict[str, Any] | None], item_ids: list[str], n: int) -> None:
        self._fields = fields
        self._item_ids = item_ids
        self._n = n
        self._columns: dict[str, ItemColumn | None] = {}
        self._lock = threading.Lock()

    @property
    def n_items(self) -> int:
        return self._n

    def column(self, field: str) -> ItemColumn | None:
        name = field.lower()
        with self._lock:
            if name not in self._columns:
                self._columns[name] = self._build(name)
            return self._columns[name]

    def _build(self, name: str) -> ItemColumn | None:
        if name == "item_id":
            return column_of(self._item_ids[: self._n])
        fields = self._fields[: self._n]
        values = [f.get(name) if f is not None else None for f in fields]
        values.extend([None] * (self._n - len(values)))
        if all(v is None for v in values):
            return None
        return column_of(values)


class FilterBook:
    """Named filters, parsed once per version and cached for a second."""

    def __init__(self, catalog: SQLCatalog) -> None:
        self.catalog = catalog
        self._cache: dict[str, tuple[float, float, Filter]] = {}  # name -> (until, updated, f)
        self._lock = threading.Lock()

    def get(self, name: str) -> Filter:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(name)
        if hit is not None and hit[0] > now:
            return hit[2]
        row = self.catalog.get_filter(name)
        if row is None:
            self.forget(name)
            raise NotFound(f"unknown filter: {name}")
        if hit is not None and hit[1] == row["updated_at"]:
            parsed = hit[2]
        else:
            parsed = parse(row["expression"])
        with self._lock:
            self._cache[name] = (now + _CACHE_SECONDS, row["updated_at"], parsed)
        return parsed

    def forget(self, name: str) -> None:
        with self._lock:
            self._cache.pop(name, None)


def check_expression(expression: str) -> Filter:
    """Parse a filter for storage; a bad one is a 422 that says where it went wrong."""
    try:
        return parse(expression)
    except FilterSyntaxError as err:
        raise Unparsable([FieldError(None, "expression", err.message)]) from err
    except FilterError as err:
        raise InvalidInput([FieldError(None, "expression", err.message)]) from err


def uses_user(f: Filter) -> bool:
    return any(e.if_ is not None for e in f.chain.expressions)


def uses_interactions(f: Filter) -> bool:
    return any(
        c.field.dataset is Dataset.INTERACTIONS
        for e in f.chain.expressions
        for c in comparisons(e.where)
    )


def empty_history() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=str)


def item_fields(record: dict[str, Any]) -> dict[str, Any]:
    """What filters may read of an item: every field but its text, by lowercase name."""
    return flatten({k: v for k, v in record.items() if k not in ("change_seq", "deleted")})
