"""Bulk import through the CLI path: column mapping, formats, all-or-nothing, lake."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from clickrec.cli import app
from clickrec.config import load_settings
from clickrec.engine import Engine

pytestmark = pytest.mark.integration
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_movielens_style_file_with_column_mapping(tmp_path: Path) -> None:
    home = tmp_path / "home"
    invoke("init", "--home", str(home))
    ratings = tmp_path / "ratings.csv"
    ratings.write_text(
        "userId,movieId,rating,timestamp\n1,10,4.0,964982703\n"
        "1,20,5.0,964982224\n2,10,3.0,964982931\n"
    )
    out = invoke(
        "import",
        "interactions",
        str(ratings),
        "--home",
        str(home),
        "--user-col",
        "userId",
        "--item-col",
        "movieId",
        "--value-col",
        "rating",
        "--default-type",
        "rating",
    )
    assert "3 accepted" in out
    engine = Engine(load_settings(home, environ={}))
    try:
        rows = engine.log.read(0, 10).to_pylist()
        assert [(r["user_id"], r["item_id"], r["event_value"]) for r in rows] == [
            ("1", "20", 5.0),
            ("1", "10", 4.0),
            ("2", "10", 3.0),
        ]
        assert {r["event_type"] for r in rows} == {"rating"}
        assert rows[0]["session_id"] == "1-20000730"  # a reader's UTC day
        assert engine.archive.run_once() == 3  # the same path on to the lake
    finally:
        engine.close()


def test_parquet_items_and_a_bad_row_rejects_the_whole_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    invoke("init", "--home", str(home))
    items = tmp_path / "items.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["a", "b"],
                "categories": ["tech|ai", "sport"],
                "title": ["A", "B"],
                "paywall": [True, False],
            }
        ),
        items,
    )
    assert "2 items imported" in invoke(
        "import", "items", str(items), "--home", str(home), "--id-col", "id"
    )
    bad = tmp_path / "events.csv"
    bad.write_text("user_id,session_id,item_id,timestamp\nu,s,a,1700000000\nu,s,,1700000001\n")
    result = runner.invoke(app, ["import", "interactions", str(bad), "--home", str(home)])
    assert result.exit_code == 1
    assert "item_id" in result.output
    engine = Engine(load_settings(home, environ={}))
    try:
        assert engine.log.last_seq() == 0
        item = engine.catalog.get_item("a")
        assert item is not None
        assert item["categories"] == ["tech", "ai"] and item["attributes"] == {"paywall": True}
    finally:
        engine.close()


def test_missing_file_and_missing_column_are_clear_errors(tmp_path: Path) -> None:
    home = tmp_path / "home"
    invoke("init", "--home", str(home))
    result = runner.invoke(
        app, ["import", "interactions", str(tmp_path / "nope.csv"), "--home", str(home)]
    )
    assert result.exit_code == 1 and "no such file" in result.output
    f = tmp_path / "x.csv"
    f.write_text("user,thing\n1,2\n")
    result = runner.invoke(app, ["import", "interactions", str(f), "--home", str(home)])
    assert result.exit_code == 1 and "item_id" in result.output


def test_a_bad_row_late_in_a_big_file_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    invoke("init", "--home", str(home))
    lines = [f"u{i % 50},s{i % 50},p{i % 30},{1700000000 + i}" for i in range(2500)]
    lines[2400] = "u1,s1,p1,4102444800"  # 2100-01-01: far in the future
    f = tmp_path / "events.csv"
    f.write_text("user_id,session_id,item_id,timestamp\n" + "\n".join(lines) + "\n")
    result = runner.invoke(app, ["import", "interactions", str(f), "--home", str(home)])
    assert result.exit_code == 1
    assert "timestamp" in result.output
    engine = Engine(load_settings(home, environ={}))
    try:
        assert engine.log.last_seq() == 0  # the first 2,400 valid rows were not written either
    finally:
        engine.close()
