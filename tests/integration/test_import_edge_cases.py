"""Bulk import of files a site exports: ids that look like numbers keep their spelling (as
live events do), millisecond timestamps are read as such, and rows that name no reader
are refused instead of being pooled under one made-up reader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clickrec.config import load_settings
from clickrec.core.errors import InvalidInput
from clickrec.engine import Engine
from clickrec.importing import InteractionColumns, import_interactions, item_records

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(load_settings(tmp_path / "home", environ={}))
    yield eng
    eng.close()


def _stored(engine: Engine, column: str) -> list[object]:
    return engine.log.read(0, 100, [column]).column(column).to_pylist()


def test_numeric_looking_item_ids_keep_their_spelling(worker: Engine, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\n0012,007,1700000000\n")
    import_interactions(worker.ingestor, path, InteractionColumns())
    assert _stored(worker, "item_id") == ["007"]  # not 7: live events keep "007" too
    assert _stored(worker, "user_id") == ["0012"]


def test_numeric_looking_ids_in_an_item_file(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text("item_id,title\n007,Bond\n")
    assert [i.item_id for i in item_records(path)] == ["007"]


def test_millisecond_timestamps_without_a_session_column(worker: Engine, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\n1,a,1700000000000\n")
    # The daily session made up for the row reads 1.7e12 as milliseconds too (as seconds
    # it would be the year 55840 and the import would end in a traceback).
    rows, accepted, _ = import_interactions(worker.ingestor, path, InteractionColumns())
    assert accepted == 1
    assert _stored(worker, "session_id") == ["1-20231114"]


def test_rows_without_user_or_session_are_refused(worker: Engine, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("user_id,session_id,item_id\n,,a\n,,b\n")
    # Stored, both rows would share one made-up session: a single reader owning every
    # anonymous row of the file (and of every other such file).
    with pytest.raises(InvalidInput):
        import_interactions(worker.ingestor, path, InteractionColumns())
