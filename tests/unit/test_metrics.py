"""Ranking metrics, top-k selection and popular items, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse

from clickrec.evaluation.metrics import rank_metrics, top_k, top_popular


def targets_of(rows: list[list[int]], n_items: int = 10) -> scipy.sparse.csr_matrix:
    """A (len(rows), n_items) binary target matrix; row r marks the items in rows[r]."""
    data = scipy.sparse.lil_matrix((len(rows), n_items), dtype=np.float32)
    for r, items in enumerate(rows):
        for item in items:
            data[r, item] = 1
    return data.tocsr()


def test_single_target_at_rank_two() -> None:
    targets = targets_of([[3]])
    m = rank_metrics(np.array([[5, 3, 7, 1, 2]]), targets, np.array([0]), ks=(1, 2, 5))
    for name in ("precision", "recall", "ndcg", "mrr", "hit_rate"):
        assert m[f"{name}@1"] == 0.0
    assert m["precision@2"] == pytest.approx(0.5)
    assert m["recall@2"] == pytest.approx(1.0)
    assert m["ndcg@2"] == pytest.approx(1 / math.log2(3))
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["hit_rate@2"] == 1.0
    assert m["precision@5"] == pytest.approx(0.2)
    assert m["ndcg@5"] == pytest.approx(1 / math.log2(3))
    assert m["mrr@5"] == pytest.approx(0.5)


def test_two_targets_at_ranks_one_and_three() -> None:
    m = rank_metrics(np.array([[4, 0, 6]]), targets_of([[4, 6]]), np.array([0]), ks=(3,))
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert m["recall@3"] == pytest.approx(1.0)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert m["mrr@3"] == pytest.approx(1.0)


def test_recall_and_ideal_dcg_use_min_of_k_and_relevant() -> None:
    m = rank_metrics(np.array([[0, 1, 9]]), targets_of([[0, 1, 2, 3, 4]]), np.array([0]), ks=(2,))
    assert m["recall@2"] == pytest.approx(1.0)  # 2 hits / min(2, 5)
    assert m["ndcg@2"] == pytest.approx(1.0)


def test_metrics_average_over_readers_and_follow_reader_indices() -> None:
    targets = targets_of([[1], [], [2]])
    recommended = np.array([[2, 0], [0, 1]])  # for readers 2 then 0
    m = rank_metrics(recommended, targets, np.array([2, 0]), ks=(1, 2))
    assert m["hit_rate@1"] == pytest.approx(0.5)
    assert m["mrr@2"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["precision@2"] == pytest.approx(0.5)


def test_empty_slots_are_misses() -> None:
    targets = targets_of([[9], [2, 4]])
    recommended = np.array([[9, -1, -1], [2, -1, -1]])
    m = rank_metrics(recommended, targets, np.array([0, 1]), ks=(3,), n_items=10)
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx((1.0 + 0.5) / 2)
    assert m["coverage@3"] == pytest.approx(2 / 10)


def test_empty_slot_does_not_match_previous_readers_last_item() -> None:
    targets = targets_of([[9], [0]])  # -1 in row 1 would alias item 9 of row 0 if unmasked
    recommended = np.array([[9, 1], [-1, -1]])
    m = rank_metrics(recommended, targets, np.array([0, 1]), ks=(2,))
    assert m["hit_rate@2"] == pytest.approx(0.5)


def test_coverage_counts_distinct_items_over_all_readers() -> None:
    targets = targets_of([[0], [0]], n_items=6)
    m = rank_metrics(np.array([[0, 1], [1, 2]]), targets, np.array([0, 1]), ks=(1, 2), n_items=6)
    assert m["coverage@1"] == pytest.approx(2 / 6)
    assert m["coverage@2"] == pytest.approx(3 / 6)


def test_popular_share_skips_empty_slots_and_readers_without_slots() -> None:
    targets = targets_of([[5], [5], [5]])
    recommended = np.array([[0, 1], [0, -1], [-1, -1]])
    m = rank_metrics(
        recommended, targets, np.array([0, 1, 2]), ks=(2,), popular_items=np.array([0])
    )
    assert m["popular_share@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert "coverage@2" not in m


@pytest.mark.parametrize(
    ("recommended", "readers", "message"),
    [
        (np.array([[1, 2]]), np.array([1]), "no relevant items"),
        (np.array([[1, 1]]), np.array([0]), "more than once"),
        (np.array([[1]]), np.array([0]), "fewer than k"),
        (np.array([[1, 10]]), np.array([0]), "must be < 10"),
        (np.array([[1, 2], [3, 4]]), np.array([0]), "shape"),
    ],
)
def test_rank_metrics_rejects_bad_input(
    recommended: np.ndarray, readers: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        rank_metrics(recommended, targets_of([[1], []]), readers, ks=(2,))


def test_top_popular_orders_by_count_then_index() -> None:
    items = np.array([3, 3, 3, 1, 1, 4, 4, 0])
    assert top_popular(items, n_items=5, share=0.6).tolist() == [3, 1, 4]
    assert top_popular(items, n_items=5, share=0.01).tolist() == [3]


def test_top_popular_size_is_not_inflated_by_float_error() -> None:
    assert top_popular(np.arange(100), n_items=100, share=0.07).size == 7  # 0.07 * 100 > 7.0


def test_top_k_orders_best_first() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    assert top_k(scores, 3).tolist() == [[1, 2, 3], [0, 1, 2]]


def test_top_k_skips_excluded_entries_without_touching_scores() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    before = scores.copy()
    exclude = scipy.sparse.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 1, 0]]))
    assert top_k(scores, 2, exclude=exclude).tolist() == [[2, 3], [1, 3]]
    np.testing.assert_array_equal(scores, before)


def test_top_k_pads_with_minus_one_when_too_few_recommendable() -> None:
    scores = np.array([[-np.inf, 2.0, np.nan], [-np.inf, -np.inf, -np.inf]])
    exclude = scipy.sparse.csr_matrix(np.array([[0, 0, 0], [0, 0, 0]]))
    assert top_k(scores, 2, exclude=exclude).tolist() == [[1, -1], [-1, -1]]
    assert top_k(scores, 5).tolist() == [[1, -1, -1, -1, -1], [-1] * 5]


def test_top_k_output_feeds_rank_metrics() -> None:
    scores = np.array([[0.2, 0.8, 0.5], [0.9, 0.1, 0.4]])
    exclude = scipy.sparse.csr_matrix(np.array([[0, 1, 0], [0, 0, 0]]))
    recommended = top_k(scores, 2, exclude=exclude)  # [[2, 0], [0, 2]]
    m = rank_metrics(recommended, targets_of([[0], [2]], n_items=3), np.array([0, 1]), ks=(2,))
    assert m["mrr@2"] == pytest.approx(0.5)
    assert m["ndcg@2"] == pytest.approx(1 / math.log2(3))
