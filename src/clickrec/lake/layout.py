"""Where a lake keeps a batch, whatever holds the files: ``events/date=YYYY-MM-DD/<part>``.

A part is named by its batch's seq range, ``part-<first>-<last>.parquet`` (20 digits each),
so recovery and erasure can tell from a name alone which batch a file belongs to.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

EVENTS = "events"
PART_NAME = re.compile(r"^part-(\d{20})-(\d{20})\.parquet$")
TEMP_SUFFIX = ".tmp"


def part_name(batch_first: int, batch_last: int) -> str:
    return f"part-{batch_first:020d}-{batch_last:020d}.parquet"


def date_folder(day: dt.date) -> str:
    return f"date={day.isoformat()}"


def is_uncommitted(name: str, committed_seq: int) -> bool:
    """A temp file, or a part of a batch past the committed offset (a crash residue)."""
    if name.endswith(TEMP_SUFFIX):
        return True
    match = PART_NAME.match(name)
    return match is not None and int(match.group(1)) > committed_seq


def may_hold(name: str, max_seq: int | None) -> bool:
    """Whether the part may hold a seq <= ``max_seq`` (None: any part)."""
    match = PART_NAME.match(name)
    return max_seq is None or match is None or int(match.group(1)) <= max_seq


def event_dates(table: pa.Table) -> pa.Array:
    """The UTC calendar date of each row's ``timestamp`` (Unix seconds, float)."""
    timestamp = table["timestamp"]
    if timestamp.null_count:
        raise ValueError("cannot partition events without a timestamp")
    # Floor to whole seconds first: it is exact, whereas dividing a float by 86400 can round
    # an event a hair before midnight into the next day. The timestamp→date cast floors too.
    seconds = pc.cast(pc.floor(timestamp), pa.int64())
    return pc.cast(pc.cast(seconds, pa.timestamp("s")), pa.date32())


def split_by_date(table: pa.Table) -> Iterator[tuple[dt.date, pa.Table]]:
    """One sub-table per distinct event date; the loop is over dates, never rows."""
    dates = event_dates(table)
    for day in pc.unique(dates).to_pylist():
        yield day, table.filter(pc.equal(dates, pa.scalar(day, pa.date32())))
