"""Catalog writes: the catalog first, then the serving process's view of it, so the next
answer already knows a new post (or no longer offers a deleted one)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickrec.core.errors import NotFound
from clickrec.engine import Engine


def put_items(engine: Engine, records: Sequence[dict[str, Any]]) -> int:
    """Insert or replace items (records of ``Item.to_record()``); how many."""
    engine.catalog.upsert_items(list(records), engine.clock.now())
    _refresh(engine)
    return len(records)


def delete_item(engine: Engine, item_id: str) -> None:
    """Delete an item; NotFound when there is none of that id."""
    if not engine.catalog.delete_item(item_id, engine.clock.now()):
        raise NotFound(f"unknown item: {item_id}")
    _refresh(engine)


def put_users(engine: Engine, records: Sequence[dict[str, Any]]) -> int:
    """Insert or replace reader profiles; how many."""
    engine.catalog.upsert_users(list(records), engine.clock.now())
    return len(records)


def _refresh(engine: Engine) -> None:
    engine.catalog_changed()  # a server's view of the catalog; nothing on the command line
