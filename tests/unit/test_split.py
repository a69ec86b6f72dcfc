"""Temporal split: cut position, train mask, test readers and new-item targets."""

from __future__ import annotations

import numpy as np
import pytest

from clickrec.evaluation.split import TemporalSplit, temporal_split

# (reader, item, timestamp); with holdout_fraction=0.5 the cut falls between 5 and 8.
HAND = np.array(
    [
        (0, 0, 1),
        (0, 1, 2),
        (1, 2, 3),
        (2, 3, 4),
        (3, 0, 5),
        (0, 1, 8),  # reader 0 touches item 1 again: not a target
        (0, 2, 9),  # new to reader 0: target
        (1, 2, 10),  # reader 1 only repeats: no target, not a test reader
        (4, 1, 11),  # reader 4 is only after the cut: not a test reader
        (2, 4, 12),  # new to reader 2: target
        (2, 4, 13),  # duplicate target stays 1
    ]
)


def split_hand(holdout_fraction: float = 0.5) -> TemporalSplit:
    readers, items, times = HAND.T
    return temporal_split(readers, items, times.astype(float), 5, 5, holdout_fraction)


def test_hand_example() -> None:
    s = split_hand()
    assert s.cut == pytest.approx(np.quantile(HAND[:, 2], 0.5))
    assert 5 < s.cut <= 8
    assert s.train.tolist() == [True] * 5 + [False] * 6
    assert s.test_readers.dtype == np.int32
    assert s.test_readers.tolist() == [0, 2]
    assert s.targets.shape == (5, 5)
    assert s.targets.toarray().tolist() == [
        [0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]


def test_cut_is_the_quantile_of_timestamps() -> None:
    times = np.arange(100.0)
    readers = np.arange(100) % 4
    items = np.arange(100) % 50
    s = temporal_split(readers, items, times, 4, 50, holdout_fraction=0.1)
    assert s.cut == pytest.approx(89.1)
    assert int((~s.train).sum()) == 10


def test_properties_on_random_data() -> None:
    rng = np.random.default_rng(7)
    n, n_readers, n_items = 5000, 200, 300
    readers = rng.integers(0, n_readers, n)
    items = rng.integers(0, n_items, n)
    times = rng.uniform(0, 1e6, n)
    s = temporal_split(readers, items, times, n_readers, n_items, holdout_fraction=0.2)

    np.testing.assert_array_equal(s.train, times < s.cut)
    assert abs((~s.train).mean() - 0.2) < 0.01
    assert np.all(np.diff(s.test_readers) > 0)

    rows, cols = s.targets.nonzero()
    assert np.all(s.targets.data == 1)
    assert set(np.unique(rows)) == set(s.test_readers.tolist())
    before = set(readers[s.train].tolist())
    seen = set(zip(readers[s.train].tolist(), items[s.train].tolist(), strict=True))
    after = set(zip(readers[~s.train].tolist(), items[~s.train].tolist(), strict=True))
    pairs = set(zip(rows.tolist(), cols.tolist(), strict=True))
    assert not pairs & seen
    assert pairs == {(r, i) for r, i in after - seen if r in before}
    assert set(s.test_readers.tolist()) <= before
    assert set(s.test_readers.tolist()) <= set(readers[~s.train].tolist())


def test_no_test_readers_raises() -> None:
    readers = np.array([0, 0, 1])
    items = np.array([0, 1, 2])
    times = np.array([1.0, 2.0, 3.0])  # only reader 1 is after the cut, and never before
    with pytest.raises(ValueError, match="no test readers"):
        temporal_split(readers, items, times, 2, 3, holdout_fraction=0.3)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_holdout_fraction_raises(fraction: float) -> None:
    with pytest.raises(ValueError, match="holdout_fraction"):
        split_hand(fraction)


def test_out_of_range_index_raises() -> None:
    with pytest.raises(ValueError, match="item_idx"):
        temporal_split(np.array([0]), np.array([3]), np.array([1.0]), 1, 3)


def test_last_event_split_holds_out_each_recent_readers_new_last_item() -> None:
    from clickrec.evaluation.split import last_event_split

    # reader 0: a, b (recent, new) | reader 1: c, c (recent re-read) | reader 2: d (alone)
    # reader 3: e, f long ago (not recent)
    reader = np.array([0, 0, 1, 1, 2, 3, 3])
    item = np.array([0, 1, 2, 2, 3, 4, 5])
    ts = np.array([90.0, 100.0, 95.0, 99.0, 98.0, 1.0, 2.0])
    split = last_event_split(reader, item, ts, n_readers=4, n_items=6, holdout_fraction=0.5)
    assert split.test_readers.tolist() == [0]
    assert split.targets[0].indices.tolist() == [1]
    assert split.train.tolist() == [True, False, True, True, True, True, True]


def test_last_event_split_without_any_target_raises() -> None:
    from clickrec.evaluation.split import last_event_split

    with pytest.raises(ValueError, match="no test readers"):
        last_event_split(np.array([0, 1]), np.array([0, 1]), np.array([1.0, 2.0]), 2, 2, 0.5)
