"""Temporal train/test split of interactions: train before a time cut, targets after it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from clickrec.models.base import Interactions


@dataclass(frozen=True)
class TemporalSplit:
    """The result of ``temporal_split``; masks and indices refer to the input arrays."""

    cut: float  # timestamp of the cut, input units; the holdout is timestamp >= cut
    train: np.ndarray  # bool mask over the input interactions: timestamp < cut
    test_readers: np.ndarray  # sorted int32 readers active on both sides, with >= 1 target
    targets: scipy.sparse.csr_matrix  # (n_readers, n_items) float32; 1 = new item after the cut


def temporal_split(
    reader_idx: np.ndarray,
    item_idx: np.ndarray,
    timestamp: np.ndarray,
    n_readers: int,
    n_items: int,
    holdout_fraction: float = 0.1,
) -> TemporalSplit:
    """Cut at the (1 - holdout_fraction) timestamp quantile; targets are items new to a reader."""
    reader_idx, item_idx, timestamp = _checked_arrays(
        reader_idx, item_idx, timestamp, n_readers, n_items, holdout_fraction
    )
    cut = float(np.quantile(timestamp, 1.0 - holdout_fraction))
    train = timestamp < cut

    seen = _pair_keys(reader_idx[train], item_idx[train], n_items)
    after = _pair_keys(reader_idx[~train], item_idx[~train], n_items)
    new = np.setdiff1d(after, seen, assume_unique=True)
    target_readers, target_items = np.divmod(new, n_items)

    active_before = np.zeros(n_readers, dtype=bool)
    active_before[reader_idx[train]] = True
    keep = active_before[target_readers]
    target_readers, target_items = target_readers[keep], target_items[keep]

    test_readers = np.unique(target_readers).astype(np.int32)
    if test_readers.size == 0:
        raise ValueError(
            f"no test readers: no reader was active before the cut ({cut}) and touched a new "
            f"item at or after it; try a larger holdout_fraction (now {holdout_fraction})"
        )
    targets = scipy.sparse.csr_matrix(
        (np.ones(target_readers.size, dtype=np.float32), (target_readers, target_items)),
        shape=(n_readers, n_items),
    )
    return TemporalSplit(cut=cut, train=train, test_readers=test_readers, targets=targets)


def last_event_split(
    reader_idx: np.ndarray,
    item_idx: np.ndarray,
    timestamp: np.ndarray,
    n_readers: int,
    n_items: int,
    holdout_fraction: float = 0.1,
) -> TemporalSplit:
    """Hold out each recent reader's last event: for data where few readers span a time cut
    (anonymous sessions, short visits). A reader counts when their last event is at or
    after the (1 - holdout_fraction) time quantile, they have an earlier event, and the
    last item is new to them. Everything else trains, later events of others included.
    """
    reader_idx, item_idx, timestamp = _checked_arrays(
        reader_idx, item_idx, timestamp, n_readers, n_items, holdout_fraction
    )
    cut = float(np.quantile(timestamp, 1.0 - holdout_fraction))
    order = np.lexsort((np.arange(len(timestamp)), timestamp, reader_idx))
    readers = reader_idx[order]
    is_last = np.r_[readers[1:] != readers[:-1], True]
    has_earlier = np.r_[False, readers[1:] == readers[:-1]]
    last = order[is_last & has_earlier & (timestamp[order] >= cut)]
    held = np.zeros(len(timestamp), dtype=bool)
    held[last] = True
    earlier = _pair_keys(reader_idx[~held], item_idx[~held], n_items)
    last_keys = reader_idx[last].astype(np.int64) * n_items + item_idx[last]
    new = ~np.isin(last_keys, earlier)
    held[last[~new]] = False  # a re-read is not a target, and stays in training
    target_readers, target_items = reader_idx[last[new]], item_idx[last[new]]
    if target_readers.size == 0:
        raise ValueError("no test readers: no recent reader has a new item as last event")
    targets = scipy.sparse.csr_matrix(
        (np.ones(target_readers.size, dtype=np.float32), (target_readers, target_items)),
        shape=(n_readers, n_items),
    )
    return TemporalSplit(
        cut=cut,
        train=~held,
        test_readers=np.unique(target_readers).astype(np.int32),
        targets=targets,
    )


def _pair_keys(readers: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted unique int64 keys reader * n_items + item, one per distinct (reader, item) pair."""
    return np.unique(readers.astype(np.int64) * n_items + items)


def _checked_arrays(
    reader_idx: np.ndarray,
    item_idx: np.ndarray,
    timestamp: np.ndarray,
    n_readers: int,
    n_items: int,
    holdout_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inputs as 1-D int64, int64 and float64 arrays, or ValueError if they do not fit."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    readers = np.asarray(reader_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    times = np.asarray(timestamp, dtype=np.float64)
    if readers.ndim != 1 or readers.shape != items.shape or readers.shape != times.shape:
        raise ValueError(
            "reader_idx, item_idx and timestamp must be 1-D arrays of one length, got shapes "
            f"{readers.shape}, {items.shape}, {times.shape}"
        )
    if readers.size == 0:
        raise ValueError("no interactions to split")
    if readers.min() < 0 or readers.max() >= n_readers:
        raise ValueError(f"reader_idx must be in [0, {n_readers})")
    if items.min() < 0 or items.max() >= n_items:
        raise ValueError(f"item_idx must be in [0, {n_items})")
    if not np.isfinite(times).all():
        raise ValueError("timestamp must be finite")
    return readers, items, times


MIN_TEST_READERS = 50


def holdout(
    data: Interactions, fraction: float, min_readers: int = MIN_TEST_READERS
) -> tuple[TemporalSplit, str]:
    """A time cut when at least ``min_readers`` readers span it; else each recent reader's
    last event (data made of short anonymous sessions rarely spans a cut). Returns the
    split and which it is ("temporal" or "last-event"); ValueError if neither works."""
    args = (data.reader, data.item, data.timestamp, data.n_readers, data.n_items, fraction)
    try:
        split = temporal_split(*args)
        if len(split.test_readers) >= min_readers:
            return split, "temporal"
    except ValueError:
        pass
    return last_event_split(*args), "last-event"
