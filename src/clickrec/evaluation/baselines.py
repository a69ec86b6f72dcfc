"""Baselines as ``LiveModel``s: what clickrec's recipes must beat on the same stream.

Popularity (all-time or live trending) and random need only numpy. The others use
``implicit`` (the optional ``quality`` extra), imported when they are fitted: ALS with
fold-in of new events (``recalculate_user``), BPR, and item-item kNN (cosine, BM25).
Their user × item data is the live history: every observed event joins the reader's row,
so a click changes the next answer. Where a model has nothing to say (a reader with no
history, too few scored items), the list is filled with the all-time most popular items.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp

from clickrec.evaluation.live import ReaderItems
from clickrec.models.base import Interactions
from clickrec.models.scoring import top_n

_REANCHOR_HALVINGS = 400.0  # rescale before 2**x overflows float64


class LivePopularity:
    """Interaction counts per item, every event counted as it arrives; with a half-life,
    each count halves every ``half_life_hours`` of event time (live trending)."""

    def __init__(self, name: str = "popularity", half_life_hours: float | None = None) -> None:
        self.name = name
        self.half_life_s = None if half_life_hours is None else half_life_hours * 3600.0
        self._scores = np.zeros(0)
        self._anchor = 0.0

    def fit(self, train: Interactions) -> None:
        self._scores = np.zeros(train.n_items)
        self._anchor = float(train.timestamp.max()) if len(train) else 0.0
        self.observe(train.reader, train.item, train.timestamp)

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        if len(items) == 0:
            return
        if self.half_life_s is None:
            np.add.at(self._scores, items, 1.0)
            return
        newest = float(np.max(times))
        if (newest - self._anchor) / self.half_life_s > _REANCHOR_HALVINGS:
            self._scores *= np.exp2((self._anchor - newest) / self.half_life_s)
            self._anchor = newest
        np.add.at(self._scores, items, np.exp2((times - self._anchor) / self.half_life_s))

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        values = self._scores.copy()
        values[exclude] = -np.inf
        return top_n(values, k)


class RandomItems:
    """Uniformly random items the reader has not touched: the floor, HR@k ≈ k / items."""

    def __init__(self, name: str = "random", seed: int = 0) -> None:
        self.name = name
        self.seed = seed
        self._n = 0
        self._rng = np.random.default_rng(seed)

    def fit(self, train: Interactions) -> None:
        self._n = train.n_items
        self._rng = np.random.default_rng(self.seed)

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        pass

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        draw = self._rng.choice(self._n, min(self._n, k + len(exclude)), replace=False)
        return draw[~np.isin(draw, exclude)][:k]


@contextlib.contextmanager
def _quiet_blas() -> Iterator[None]:
    """One BLAS thread while fitting (implicit warns, and slows down, otherwise) and no
    warning for the COO matrix implicit's BM25 makes itself."""
    from implicit.utils import ParameterWarning
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ParameterWarning)
        yield


class _ImplicitModel:
    """Shared by the implicit baselines: the live history, popularity to fill with."""

    def __init__(self, name: str, threads: int) -> None:
        self.name = name
        self.threads = threads
        self._history = ReaderItems(0)
        self._counts = np.zeros(0)

    def fit(self, train: Interactions) -> None:
        self._history = ReaderItems.of(train)
        self._counts = np.bincount(train.item, minlength=train.n_items).astype(np.float64)
        counts = np.ones(len(train), dtype=np.float32)
        matrix = sp.csr_matrix(
            (counts, (train.reader, train.item)), shape=(train.n_readers, train.n_items)
        )
        with _quiet_blas():
            self._fit(matrix)

    def _fit(self, user_items: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _top(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        self._history.add(readers, items)
        np.add.at(self._counts, items, 1.0)

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        k = min(k, len(self._counts) - len(exclude))  # implicit pads a short list with 0s
        if len(self._history.items(reader)) == 0 or k <= 0:
            top = np.zeros(0, dtype=np.int64)
        else:
            top = np.asarray(self._top(reader, k, exclude), dtype=np.int64)[:k]
        if len(top) < k:
            values = self._counts.copy()
            values[exclude] = -np.inf
            values[top] = -np.inf
            top = np.r_[top, top_n(values, k - len(top))]
        return top


def _filter(exclude: np.ndarray) -> np.ndarray | None:
    return exclude.astype(np.int32) if len(exclude) else None


class ALSFoldIn(_ImplicitModel):
    """implicit's ALS; a reader's factors are recomputed from their live row at every
    request (``recalculate_user``), so events after training count without a refit."""

    def __init__(
        self,
        name: str = "ALS",
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 1.0,
        iterations: int = 15,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(name, threads)
        self.options = dict(
            factors=factors, regularization=regularization, alpha=alpha, iterations=iterations
        )
        self.seed = seed
        self._model: Any = None

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        self._model = AlternatingLeastSquares(
            **self.options, num_threads=self.threads, random_state=self.seed
        )
        self._model.fit(user_items, show_progress=False)

    def _top(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        ids, _ = self._model.recommend(
            0,
            self._history.row(reader),
            N=k,
            filter_already_liked_items=False,
            filter_items=_filter(exclude),
            recalculate_user=True,
        )
        return np.asarray(ids)


class BPRFoldIn(_ImplicitModel):
    """implicit's BPR. It has no ``recalculate_user``, so a reader's vector is folded in
    as the mean of the factors of their newest ``recent`` items (all when None); the item
    bias column is kept."""

    def __init__(
        self,
        name: str = "BPR",
        factors: int = 64,
        learning_rate: float = 0.01,
        regularization: float = 0.01,
        iterations: int = 100,
        recent: int | None = None,
        threads: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__(name, threads)
        self.options = dict(
            factors=factors,
            learning_rate=learning_rate,
            regularization=regularization,
            iterations=iterations,
        )
        self.recent = recent
        self.seed = seed
        self._items = np.zeros((0, 0), dtype=np.float32)

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            **self.options, num_threads=self.threads, random_state=self.seed
        )
        model.fit(user_items, show_progress=False)
        self._items = np.asarray(model.item_factors)

    def _top(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        items = self._history.items(reader)
        if self.recent is not None:
            items = items[-self.recent :]
        user = self._items[items].mean(axis=0)
        user[-1] = 1.0  # the user side of the item-bias column
        values = (self._items @ user).astype(np.float64)
        values[exclude] = -np.inf
        return top_n(values, k)


class ItemKNN(_ImplicitModel):
    """implicit's item-item kNN (``cosine`` or ``bm25``) on the training part; a reader is
    scored from their live row, so new reads count at once (similarities stay fixed)."""

    def __init__(
        self,
        name: str = "item-kNN",
        kind: str = "cosine",
        neighbours: int = 100,
        bm25_b: float = 0.75,
        threads: int = 1,
    ) -> None:
        if kind not in ("cosine", "bm25"):
            raise ValueError(f"kind must be cosine or bm25, not {kind!r}")
        super().__init__(name, threads)
        self.kind = kind
        self.neighbours = neighbours
        self.bm25_b = bm25_b
        self._model: Any = None

    def _fit(self, user_items: sp.csr_matrix) -> None:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        if self.kind == "cosine":
            self._model = CosineRecommender(K=self.neighbours, num_threads=self.threads)
        else:
            self._model = BM25Recommender(
                K=self.neighbours, B=self.bm25_b, num_threads=self.threads
            )
        self._model.fit(user_items, show_progress=False)

    def _top(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        ids, _ = self._model.recommend(
            0,
            self._history.row(reader),
            N=k,
            filter_already_liked_items=False,
            filter_items=_filter(exclude),
        )
        return np.asarray(ids)
