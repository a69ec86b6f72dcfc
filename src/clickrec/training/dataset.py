"""From stored events (a pyarrow table) to index-space interactions, and the readiness check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from clickrec.core.errors import NotEnoughData
from clickrec.core.schema import reader_column
from clickrec.models.base import Interactions

TRAINING_COLUMNS = ("seq", "timestamp", "user_id", "session_id", "item_id", "event_type")


def training_table(table: pa.Table) -> pa.Table:
    """Events with at least the training columns (``seq`` is not needed, and any is
    replaced), in time order (a stable sort), numbered 1..n: what ``to_interactions``
    takes, from a file or a generator."""
    if "seq" in table.column_names:
        table = table.drop_columns(["seq"])
    table = table.sort_by([("timestamp", "ascending")])
    seq = pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64))
    return table.append_column("seq", seq).select(list(TRAINING_COLUMNS))


def reads_only(table: pa.Table, ignored: Sequence[str]) -> pa.Table:
    """Events without those of the ``ignored`` types (what a reader was shown, not read)."""
    if not ignored or table.num_rows == 0:
        return table
    shown = pc.is_in(table.column("event_type"), value_set=pa.array(list(ignored), pa.string()))
    return table.filter(pc.invert(pc.fill_null(shown, False)))


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Dense integer codes for a string column, and the distinct values in code order."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    return (
        encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        np.asarray(encoded.dictionary.to_pylist(), dtype=object),
    )


def with_logins(table: pa.Table) -> pa.Table:
    """Anonymous events of a session in which a reader logged in (an event carrying both
    ids) belong to that reader, as in the online state; a session seen with several users
    (a shared or reused id) is left as it is."""
    if table.num_rows == 0 or "user_id" not in table.column_names:
        return table
    known = table.filter(pc.is_valid(table.column("user_id")))
    if known.num_rows == 0 or known.num_rows == table.num_rows:
        return table
    owners = known.group_by("session_id").aggregate(
        [("user_id", "min"), ("user_id", "count_distinct")]
    )
    owners = owners.filter(pc.equal(owners.column("user_id_count_distinct"), 1))
    index = pc.index_in(table.column("session_id"), value_set=owners.column("session_id"))
    owner = pc.take(owners.column("user_id_min"), index)
    user = pc.coalesce(table.column("user_id"), owner)
    return table.set_column(table.column_names.index("user_id"), "user_id", user)


def to_interactions(table: pa.Table) -> Interactions:
    """Index-space arrays, sorted by event time (stable on seq); a session's anonymous
    events count for the reader who logged in during it (``with_logins``)."""
    table = with_logins(table).sort_by([("timestamp", "ascending"), ("seq", "ascending")])
    reader, reader_ids = _codes(reader_column(table))
    item, item_ids = _codes(table.column("item_id"))
    session_key = pc.binary_join_element_wise(reader_column(table), table.column("session_id"), "|")
    session, _ = _codes(session_key)
    ts = table.column("timestamp").to_numpy().astype(np.float64)
    return Interactions(reader, item, session, ts, item_ids.astype(str), reader_ids.astype(str))


@dataclass(frozen=True)
class Readiness:
    interactions: int
    active_readers: int  # readers with at least `min_events_per_reader` events
    min_events_per_reader: int = 2

    def check(self, min_interactions: int, min_readers: int) -> None:
        """Raise NotEnoughData naming what is missing, like Personalize's thresholds."""
        missing = []
        if self.interactions < min_interactions:
            missing.append(f"have {self.interactions} interactions, need {min_interactions}")
        if self.active_readers < min_readers:
            missing.append(
                f"have {self.active_readers} readers with {self.min_events_per_reader} or more"
                f" events, need {min_readers}"
            )
        if missing:
            raise NotEnoughData("not enough data: " + "; ".join(missing))


def readiness(data: Interactions, min_events_per_reader: int = 2) -> Readiness:
    counts = np.bincount(data.reader, minlength=data.n_readers)
    active = int((counts >= min_events_per_reader).sum())
    return Readiness(len(data), active, min_events_per_reader)
