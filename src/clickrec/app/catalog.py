"""The catalog: writes go to the catalog first, then to the serving process's view of it,
so the next answer already knows a new post (or no longer offers a deleted one); reads show
an item, or a reader as their recommendations see them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickrec.core.errors import NotFound
from clickrec.engine import Engine, ServingEngine


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


def item(engine: Engine, item_id: str) -> dict[str, Any]:
    """An item as clients see it (without the catalog's bookkeeping); NotFound if none."""
    row = engine.catalog.get_item(item_id)
    if row is None:
        raise NotFound(f"unknown item: {item_id}")
    return {k: v for k, v in row.items() if k not in ("deleted", "change_seq")}


def reader(engine: ServingEngine, user_id: str, limit: int) -> dict[str, Any]:
    """The reader's profile and the recent history (newest first, at most ``limit``) that
    their recommendations use; NotFound when the engine knows neither."""
    profile = engine.catalog.get_user(user_id)
    history = engine.recommender.history(user_id, limit)
    if profile is None and not history:
        raise NotFound(f"unknown user: {user_id}")
    return {
        "user_id": user_id,
        "attributes": (profile or {}).get("attributes", {}),
        "history": history,
    }


def _refresh(engine: Engine) -> None:
    engine.catalog_changed()  # a server's view of the catalog; nothing on the command line
