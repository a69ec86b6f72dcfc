"""Filters: Personalize-style expressions kept by name in the catalog. A write checks the
expression first, then makes this server compile the new one at its next use."""

from __future__ import annotations

from typing import Any

from clickrec.core.errors import NotFound
from clickrec.engine import ServingEngine
from clickrec.filters import parse
from clickrec.serving.filtering import check_expression


def view(row: dict[str, Any]) -> dict[str, Any]:
    """A filter as clients see it, with the ``$parameters`` its expression takes."""
    return {**row, "parameters": sorted(parse(row["expression"]).parameters)}


def put(engine: ServingEngine, name: str, expression: str) -> dict[str, Any]:
    """Create or replace a filter; a wrong expression is refused (Unparsable or
    InvalidInput) with where it went wrong (line, column)."""
    check_expression(expression)
    row = engine.catalog.put_filter(name, expression, engine.clock.now())
    engine.recommender.filters.forget(name)
    return view(row)


def filters(engine: ServingEngine) -> list[dict[str, Any]]:
    return [view(r) for r in engine.catalog.list_filters()]


def get(engine: ServingEngine, name: str) -> dict[str, Any]:
    """One filter; NotFound when there is none of that name."""
    row = engine.catalog.get_filter(name)
    if row is None:
        raise NotFound(f"unknown filter: {name}")
    return view(row)


def delete(engine: ServingEngine, name: str) -> None:
    """Delete a filter; NotFound when there is none of that name."""
    if not engine.catalog.delete_filter(name):
        raise NotFound(f"unknown filter: {name}")
    engine.recommender.filters.forget(name)
