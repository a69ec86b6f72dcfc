"""Catalog writes racing the serving refresher: a deletion stays applied however late a
background refresh lands, and concurrent writers never share a change seq (a refresher
that has read up to a seq would never see the other write)."""

from __future__ import annotations

import contextlib
import threading

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from clickrec.engine import Engine

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


def test_a_slow_background_catalog_refresh_cannot_undo_a_deletion(
    client: TestClient, keys: H, engine: Engine
) -> None:
    rec = engine.recommender
    assert rec is not None
    body = {"items": [{"item_id": "p1"}, {"item_id": "p2"}]}
    assert client.put("/v1/items", json=body, headers=keys["ingest"]).status_code == 200
    catalog = engine.catalog
    real = catalog.items_changed_since
    fetched, release = threading.Event(), threading.Event()

    def slow_for_background(change_seq: int, limit: int = 10_000) -> list:
        rows = real(change_seq, limit)
        if threading.current_thread().name == "stale-refresher":
            fetched.set()
            release.wait(5)
        return rows

    # The background refresher read the catalog just before the deletion committed …
    rec._catalog_seq = 0
    catalog.items_changed_since = slow_for_background  # type: ignore[method-assign]
    background = threading.Thread(target=rec.refresh_catalog, name="stale-refresher")
    background.start()
    assert fetched.wait(5)
    # … a request deletes p1 and applies the deletion itself …
    assert client.delete("/v1/items/p1", headers=keys["ingest"]).status_code == 200
    assert rec.state.deleted[rec.state.item_index["p1"]]
    # … then the background pass applies the rows it read before the deletion.
    release.set()
    background.join(5)
    catalog.items_changed_since = real  # type: ignore[method-assign]
    rec.refresh_catalog()
    assert rec.state.deleted[rec.state.item_index["p1"]]  # not served again, for good
    ids = [i["item_id"] for i in client.get("/v1/trending", headers=keys["read"]).json()["items"]]
    assert "p1" not in ids


def test_concurrent_catalog_writes_get_distinct_change_seqs(engine: Engine) -> None:
    catalog = engine.catalog
    catalog.upsert_items([{"item_id": "old"}], 1.0)
    barrier = threading.Barrier(2, timeout=5)

    def after_execute(conn, cursor, statement, params, context, executemany) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "max(" in statement.lower():
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()  # both writers have read the same max(change_seq)

    sa.event.listen(catalog.engine, "after_cursor_execute", after_execute)
    try:
        writers = [
            threading.Thread(target=lambda: catalog.upsert_items([{"item_id": "new"}], 2.0)),
            threading.Thread(target=lambda: catalog.delete_item("old", 2.0)),
        ]
        for t in writers:
            t.start()
        for t in writers:
            t.join(30)
    finally:
        sa.event.remove(catalog.engine, "after_cursor_execute", after_execute)
    rows = {r["item_id"]: r["change_seq"] for r in catalog.items_changed_since(1)}
    assert set(rows) == {"old", "new"}
    # Equal seqs: a refresher that read one of them at that seq would never see the other.
    assert rows["old"] != rows["new"]
