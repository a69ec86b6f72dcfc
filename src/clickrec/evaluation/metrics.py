"""Ranking metrics over top-k recommendations, plus top-k selection and popular items."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse


def rank_metrics(
    recommended: np.ndarray,
    targets: scipy.sparse.csr_matrix,
    readers: np.ndarray,
    ks: Sequence[int] = (5, 10, 20),
    n_items: int | None = None,
    popular_items: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean over readers of precision (hits/k), recall (hits/min(k, n_relevant)), ndcg, mrr…@k.

    ``recommended[i]`` ranks items (best first, -1 = empty slot) for reader ``readers[i]``,
    whose relevant items are the nonzero columns of ``targets[readers[i]]``. Every reader
    must have at least one relevant item. Empty slots count as misses. ``ndcg@k`` uses binary
    relevance, a 1/log2(rank + 1) discount and an ideal DCG over min(k, n_relevant) ranks.
    ``coverage@k`` (only with ``n_items``) is distinct items in all top-k lists / n_items.
    ``popular_share@k`` (only with ``popular_items``) is each reader's share of non-empty
    top-k slots holding a popular item, averaged over readers with a non-empty slot.
    """
    recommended = np.asarray(recommended)
    readers = np.asarray(readers)
    ks = _checked_ks(ks, recommended, readers)
    hits = _hit_matrix(recommended, targets, readers)
    n_relevant = _relevant_counts(targets, readers)

    metrics: dict[str, float] = {}
    for k in ks:
        metrics.update(_accuracy_at(hits[:, :k], n_relevant, k))
        top = recommended[:, :k]
        if n_items is not None:
            metrics[f"coverage@{k}"] = _coverage(top, n_items)
        if popular_items is not None:
            metrics[f"popular_share@{k}"] = _popular_share(top, popular_items)
    return metrics


def top_popular(item_idx: np.ndarray, n_items: int, share: float = 0.01) -> np.ndarray:
    """The ceil(share * n_items) most-interacted item indices, most first (ties: lower index)."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    counts = np.bincount(np.asarray(item_idx, dtype=np.int64), minlength=n_items)
    if counts.size > n_items:
        raise ValueError(f"item_idx must be in [0, {n_items})")
    # Round first so that e.g. 0.07 * 100 = 7.000000000000001 gives 7, not 8.
    n_popular = math.ceil(round(share * n_items, 9))
    return np.argsort(-counts, kind="stable")[:n_popular]


def top_k(scores: np.ndarray, k: int, exclude: scipy.sparse.csr_matrix | None = None) -> np.ndarray:
    """Int64 (n_rows, k) column indices of each row's k best scores, best first; -1 pads.

    Entries that are nonzero in ``exclude``, -inf or NaN are never recommended; a row with
    fewer than k such recommendable scores gets -1 in its remaining slots. ``scores`` is
    not modified.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scores = _recommendable_scores(scores, exclude)
    n_rows, n_cols = scores.shape
    k_real = min(k, n_cols)
    result = np.full((n_rows, k), -1, dtype=np.int64)
    if k_real == 0 or n_rows == 0:
        return result

    candidates = np.argpartition(scores, n_cols - k_real, axis=1)[:, n_cols - k_real :]
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    best = np.take_along_axis(candidates, order, axis=1)
    best_scores = np.take_along_axis(candidate_scores, order, axis=1)
    result[:, :k_real] = np.where(best_scores == -np.inf, -1, best)
    return result


def _recommendable_scores(
    scores: np.ndarray, exclude: scipy.sparse.csr_matrix | None
) -> np.ndarray:
    """A float copy of ``scores`` with excluded entries and NaN set to -inf."""
    scores = np.array(scores, dtype=np.result_type(scores, np.float32), copy=True)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_rows, n_items), got shape {scores.shape}")
    scores[np.isnan(scores)] = -np.inf
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, scores {scores.shape}")
        rows, cols = exclude.nonzero()
        scores[rows, cols] = -np.inf
    return scores


def _checked_ks(ks: Sequence[int], recommended: np.ndarray, readers: np.ndarray) -> list[int]:
    """The ks as a list, or ValueError if they or the recommendation shape do not fit."""
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive integers, got {ks}")
    if recommended.ndim != 2 or recommended.shape[0] != readers.shape[0]:
        raise ValueError(
            f"recommended must have shape (len(readers), K) = ({readers.shape[0]}, K), "
            f"got {recommended.shape}"
        )
    if readers.size == 0:
        raise ValueError("no readers to evaluate")
    if recommended.shape[1] < max(ks):
        raise ValueError(f"recommended has {recommended.shape[1]} columns, fewer than k={max(ks)}")
    return ks


def _hit_matrix(
    recommended: np.ndarray, targets: scipy.sparse.csr_matrix, readers: np.ndarray
) -> np.ndarray:
    """Boolean (n_readers, K): whether each recommended slot holds a relevant item."""
    n_items = targets.shape[1]
    filled = recommended >= 0
    if (recommended >= n_items).any():
        raise ValueError(f"recommended item indices must be < {n_items} (or -1 for empty)")
    _check_no_duplicates(recommended)
    relevant = scipy.sparse.coo_matrix(targets[readers])
    nonzero = relevant.data != 0
    relevant_keys = relevant.row[nonzero].astype(np.int64) * n_items + relevant.col[nonzero]
    row = np.arange(recommended.shape[0], dtype=np.int64)[:, None]
    slot_keys = row * n_items + recommended
    return filled & np.isin(slot_keys, relevant_keys)


def _check_no_duplicates(recommended: np.ndarray) -> None:
    """ValueError if a row lists the same item twice (that would count one hit twice)."""
    ordered = np.sort(recommended, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        row = int(np.flatnonzero(repeated.any(axis=1))[0])
        raise ValueError(f"recommended row {row} lists an item more than once")


def _relevant_counts(targets: scipy.sparse.csr_matrix, readers: np.ndarray) -> np.ndarray:
    """Number of relevant (nonzero) items per evaluated reader; ValueError if any has none."""
    counts = np.asarray((targets[readers] != 0).sum(axis=1)).ravel()
    if (counts == 0).any():
        reader = int(readers[np.flatnonzero(counts == 0)[0]])
        raise ValueError(f"reader {reader} has no relevant items; evaluate test readers only")
    return counts


def _accuracy_at(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, float]:
    """Precision, recall, ndcg, mrr and hit rate at k from the (n_readers, k) hit matrix."""
    n_hits = hits.sum(axis=1)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ideal_dcg = np.cumsum(discount)[np.minimum(k, n_relevant) - 1]
    dcg = hits @ discount
    any_hit = hits.any(axis=1)
    first_rank = hits.argmax(axis=1) + 1
    return {
        f"precision@{k}": float(np.mean(n_hits / k)),
        f"recall@{k}": float(np.mean(n_hits / np.minimum(k, n_relevant))),
        f"ndcg@{k}": float(np.mean(dcg / ideal_dcg)),
        f"mrr@{k}": float(np.mean(np.where(any_hit, 1.0 / first_rank, 0.0))),
        f"hit_rate@{k}": float(np.mean(any_hit)),
    }


def _coverage(top: np.ndarray, n_items: int) -> float:
    """Distinct items across all readers' top-k lists, over n_items."""
    return np.unique(top[top >= 0]).size / n_items


def _popular_share(top: np.ndarray, popular_items: np.ndarray) -> float:
    """Mean over readers with a filled slot of the share of their filled slots that are popular."""
    filled = top >= 0
    n_filled = filled.sum(axis=1)
    n_popular = (filled & np.isin(top, popular_items)).sum(axis=1)
    has_any = n_filled > 0
    if not has_any.any():
        return 0.0
    return float(np.mean(n_popular[has_any] / n_filled[has_any]))
