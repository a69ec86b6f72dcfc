"""From stored events to training interactions."""

from __future__ import annotations

import pyarrow as pa

from clickrec.training.dataset import to_interactions


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
