"""From stored events to training interactions."""

from __future__ import annotations

import pyarrow as pa

from clickrec.training.dataset import TRAINING_COLUMNS, to_interactions, training_table


def test_a_login_brings_the_session_anonymous_reads_into_training() -> None:
    """ana read a and b anonymously in session v1, then logged in and read c: the next
    training sees all three as hers; a session id shared by two users is left alone."""
    rows = [
        (1, 10.0, None, "v1", "a"),
        (2, 11.0, None, "v1", "b"),
        (3, 12.0, "ana", "v1", "c"),
        (4, 13.0, None, "other", "d"),
        (5, 14.0, None, "shared", "e"),
        (6, 15.0, "bo", "shared", "f"),
        (7, 16.0, "cy", "shared", "g"),
    ]
    table = pa.table(
        {
            "seq": pa.array([r[0] for r in rows], pa.int64()),
            "timestamp": [r[1] for r in rows],
            "user_id": pa.array([r[2] for r in rows], pa.string()),
            "session_id": [r[3] for r in rows],
            "item_id": [r[4] for r in rows],
            "event_type": ["read"] * len(rows),
        }
    )
    data = to_interactions(table)
    reader_of = {
        str(data.item_ids[i]): str(data.reader_ids[r])
        for i, r in zip(data.item, data.reader, strict=True)
    }
    assert reader_of["a"] == reader_of["b"] == reader_of["c"] == "u:ana"
    assert reader_of["d"] == "s:other"
    assert reader_of["e"] == "s:shared"  # two users in it: whose would it be?
    # The visit is one session for co-occurrence: the reads before and after the login.
    sessions = {str(data.item_ids[i]): s for i, s in zip(data.item, data.session, strict=True)}
    assert sessions["a"] == sessions["c"]


def test_training_table_renumbers_a_table_that_already_has_seq() -> None:
    # A file loaded for evaluation arrives with its own seq (file order), not time order.
    table = pa.table(
        {
            "seq": pa.array([1, 2, 3], pa.int64()),
            "timestamp": [30.0, 10.0, 20.0],
            "user_id": ["u", "u", "v"],
            "session_id": ["s1", "s1", "s2"],
            "item_id": ["c", "a", "b"],
            "event_type": ["read"] * 3,
        }
    )
    out = training_table(table)
    assert out.column_names == list(TRAINING_COLUMNS)
    assert out["seq"].to_pylist() == [1, 2, 3]
    assert out["item_id"].to_pylist() == ["a", "b", "c"]
