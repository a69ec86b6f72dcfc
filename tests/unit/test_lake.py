"""The local lake: date partitions, zstd parts, atomic idempotent writes, crash residue removal."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clickrec.core.schema import EVENT_SCHEMA
from clickrec.lake.localfs import LocalLake
from clickrec.lake.reader import lake_stats

MIDNIGHT = dt.datetime(2024, 3, 2, tzinfo=dt.UTC).timestamp()  # 2024-03-02T00:00:00Z
DAY = 86_400.0


def events(seqs: list[int], timestamps: list[float], item: str = "post") -> pa.Table:
    """Events in EVENT_SCHEMA; received_at is a day later than event time on purpose."""
    n = len(seqs)
    return pa.table(
        {
            "seq": seqs,
            "event_id": [f"e{s}" for s in seqs],
            "timestamp": timestamps,
            "user_id": [None] * n,
            "session_id": ["s1"] * n,
            "item_id": [item] * n,
            "event_type": ["view"] * n,
            "event_value": [None] * n,
            "recommendation_id": [None] * n,
            "impression": [None] * n,
            "context": [None] * n,
            "properties": [None] * n,
            "received_at": [t + DAY for t in timestamps],
        },
        schema=EVENT_SCHEMA,
    )


def part_files(lake: LocalLake) -> list[Path]:
    return sorted((lake.root / "events").glob("*/*"))


def test_parts_split_by_utc_date_of_event_time(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    table = events([1, 2, 3, 4], [MIDNIGHT - 0.001, MIDNIGHT, MIDNIGHT + 5, MIDNIGHT - DAY])

    paths = lake.write_batch(table, 1, 4)

    name = "part-00000000000000000001-00000000000000000004.parquet"
    by_date = {p.parent.name: pq.read_table(p)["seq"].to_pylist() for p in paths}
    assert by_date == {"date=2024-03-01": [1, 4], "date=2024-03-02": [2, 3]}
    assert {p.name for p in paths} == {name}
    assert part_files(lake) == sorted(paths)


def test_date_is_the_partition_not_a_stored_column(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    [path] = lake.write_batch(events([1], [MIDNIGHT]), 1, 1)

    assert pq.read_schema(path).names == EVENT_SCHEMA.names


def test_parts_are_zstd_compressed(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    [path] = lake.write_batch(events([1, 2], [MIDNIGHT, MIDNIGHT + 1]), 1, 2)

    metadata = pq.ParquetFile(path).metadata
    codecs = {
        metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    assert codecs == {"ZSTD"}


def test_rewriting_a_batch_replaces_its_files(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    lake.write_batch(events([1, 2], [MIDNIGHT - DAY, MIDNIGHT], item="old"), 1, 2)

    paths = lake.write_batch(events([1, 2], [MIDNIGHT, MIDNIGHT + 1], item="new"), 1, 2)

    # The part under 2024-03-01 would now be stale: the rewrite has no rows on that date.
    assert part_files(lake) == paths
    assert pq.read_table(paths[0])["item_id"].to_pylist() == ["new", "new"]


def test_empty_batch_writes_nothing(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)

    assert lake.write_batch(EVENT_SCHEMA.empty_table(), 1, 1) == []
    assert not lake.has_files()


def test_drop_uncommitted_removes_later_batches_and_temp_files(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    committed = lake.write_batch(events([1, 2, 3], [MIDNIGHT - DAY, MIDNIGHT, MIDNIGHT]), 1, 3)
    lake.write_batch(events([4, 5], [MIDNIGHT, MIDNIGHT + DAY]), 4, 5)
    lake.write_batch(events([6], [MIDNIGHT + 2 * DAY]), 6, 6)
    stray = committed[0].parent / "part-00000000000000000004-00000000000000000009.parquet.x.tmp"
    stray.write_bytes(b"half a file")

    assert lake.drop_uncommitted(3) == 4
    assert part_files(lake) == sorted(committed)
    # Folders emptied by the drop go too, so stats do not count dates with no events.
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [
        "date=2024-03-01",
        "date=2024-03-02",
    ]
    assert lake.drop_uncommitted(3) == 0


def test_drop_uncommitted_on_a_new_lake(tmp_path: Path) -> None:
    assert LocalLake(tmp_path / "none").drop_uncommitted(0) == 0


def test_duckdb_reads_the_date_partition_back(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    lake.write_batch(events([1, 2, 3], [MIDNIGHT - 1, MIDNIGHT, MIDNIGHT + DAY]), 1, 3)

    with duckdb.connect() as con:
        rows = con.sql(
            "SELECT seq, date FROM read_parquet($glob, hive_partitioning=true, "
            "union_by_name=true) ORDER BY seq",
            params={"glob": lake.glob()},
        ).fetchall()

    assert rows == [
        (1, dt.date(2024, 3, 1)),
        (2, dt.date(2024, 3, 2)),
        (3, dt.date(2024, 3, 3)),
    ]


def test_has_files_and_stats(tmp_path: Path) -> None:
    lake = LocalLake(tmp_path)
    assert not lake.has_files()
    assert lake_stats(lake)["files"] == 0

    lake.write_batch(events([1, 2], [MIDNIGHT - 1, MIDNIGHT]), 1, 2)
    lake.write_batch(events([3], [MIDNIGHT + 1]), 3, 3)

    assert lake.has_files()
    assert lake_stats(lake) == {
        "files": 3,
        "rows": 3,
        "dates": 2,
        "first_date": "2024-03-01",
        "last_date": "2024-03-02",
    }


def test_event_without_timestamp_is_refused(tmp_path: Path) -> None:
    table = events([1], [MIDNIGHT]).set_column(2, "timestamp", pa.array([None], pa.float64()))

    with pytest.raises(ValueError, match="timestamp"):
        LocalLake(tmp_path).write_batch(table, 1, 1)
