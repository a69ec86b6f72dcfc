"""Models that learn from a live event stream: the one interface every protocol drives.

A ``LiveModel`` is fitted once on the events before a cut, then fed later events in time
order (``observe``) and asked for a reader's top k between them (``recommend``), exactly
as serving feeds the online state. Readers and items are indices into the fitted
``Interactions``' ``reader_ids`` and ``item_ids``: the whole catalog is known up front, so
every model ranks the same items.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from clickrec.models.base import Interactions, RecipeParams
from clickrec.models.online import OnlineState, state_from
from clickrec.models.recipes import FitCache, fit, fit_cached
from clickrec.models.scoring import Exploration, Scorer, top_n


class LiveModel(Protocol):
    """Fit on the past, then learn event by event and answer between events."""

    name: str

    def fit(self, train: Interactions) -> None:
        """Learn from ``train``; its index spaces are those of every later call."""
        ...

    def observe(self, readers: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        """Learn from events that just happened, oldest first (times: Unix seconds)."""
        ...

    def recommend(self, reader: int, k: int, exclude: np.ndarray) -> np.ndarray:
        """At most ``k`` distinct item indices, best first, none of them in ``exclude``."""
        ...


class ReaderItems:
    """Every reader's items so far, oldest first, repeats kept: a live user × item log."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self._items: dict[int, list[int]] = {}

    @classmethod
    def of(cls, data: Interactions) -> ReaderItems:
        """The log of ``data`` (which is sorted by time)."""
        log = cls(data.n_items)
        order = np.argsort(data.reader, kind="stable")
        readers = data.reader[order]
        starts = np.flatnonzero(np.r_[True, readers[1:] != readers[:-1]])
        for reader, items in zip(
            readers[starts].tolist(), np.split(data.item[order], starts[1:]), strict=True
        ):
            log._items[reader] = items.tolist()
        return log

    def add(self, readers: np.ndarray, items: np.ndarray) -> None:
        for reader, item in zip(readers.tolist(), items.tolist(), strict=True):
            self._items.setdefault(reader, []).append(item)

    def items(self, reader: int) -> np.ndarray:
        """The reader's items, oldest first (int64; empty for a reader never seen)."""
        return np.asarray(self._items.get(reader, ()), dtype=np.int64)

    def row(self, reader: int) -> sp.csr_matrix:
        """The reader's counts per item as a 1 × n_items float32 CSR row."""
        items, counts = np.unique(self.items(reader), return_counts=True)
        indptr = np.array([0, len(items)])
        return sp.csr_matrix((counts.astype(np.float32), items, indptr), shape=(1, self.n_items))


class RecipeModel:
    """One of clickrec's recipes as serving runs it: the trained artifact and a live
    ``OnlineState`` bound by a ``Scorer``, so ``observe`` is the engine's real update."""

    def __init__(
        self,
        name: str,
        recipe: str,
        params: RecipeParams = RecipeParams(),
        trending_half_life_hours: float = 6.0,
        history_length: int = 50,
        seen_length: int = 500,
        exploration: Exploration = Exploration(),
        context_weight: float = 0.0,
        published_at: np.ndarray | None = None,
        categories: Sequence[Sequence[str]] | None = None,
        cache: FitCache | None = None,
    ) -> None:
        self.name = name
        self.cache = cache  # shared by models fitted on the same data (``fit_cached``)
        self.recipe = recipe
        self.context_weight = context_weight  # > 0: fed contexts, asked with one
        # Publication time per item of the data (NaN: unknown), as the catalog tells
        # serving; exploration only favours posts whose age it knows.
        self.published_at = published_at
        # Categories per item of the data, as the catalog tells serving (None: none known).
        self.categories = categories
        self.params = params
        self.trending_half_life_hours = trending_half_life_hours
        self.history_length = history_length
        self.seen_length = seen_length
        self.exploration = exploration
        self._item_ids = np.zeros(0, dtype=str)
        self._reader_ids = np.zeros(0, dtype=str)
        self._state = OnlineState()
        self._scorer = Scorer(None, self._state)

    @property
    def state(self) -> OnlineState:
        return self._state

    @property
    def uses_context(self) -> bool:
        return self.context_weight > 0

    def fit(
        self, train: Interactions, contexts: Sequence[dict[str, str] | None] | None = None
    ) -> None:
        self._item_ids, self._reader_ids = train.item_ids, train.reader_ids
        if self.cache is None:
            artifact = fit(self.recipe, train, self.params)
        else:
            artifact = fit_cached(self.recipe, train, self.params, self.cache)
        state = state_from(
            train,
            self._item_facts(train.item_ids),
            self.trending_half_life_hours,
            self.history_length,
            self.seen_length,
            contexts,
        )
        self._state = state
        self._scorer = Scorer(artifact, state, self.exploration, self.context_weight)

    def _item_facts(self, item_ids: np.ndarray) -> dict[str, tuple[float | None, list[str]]]:
        """What the catalog tells serving, per item id: (published_at, categories)."""
        if self.published_at is None and self.categories is None:
            return {}
        n = len(item_ids)
        published = self.published_at if self.published_at is not None else np.full(n, np.nan)
        sections = self.categories if self.categories is not None else [()] * n
        return {
            item_id: (None if np.isnan(when) else when, list(cats))
            for item_id, when, cats in zip(
                item_ids.tolist(), published.tolist(), sections, strict=True
            )
        }

    def observe(
        self,
        readers: np.ndarray,
        items: np.ndarray,
        times: np.ndarray,
        contexts: Sequence[dict[str, str] | None] | None = None,
    ) -> None:
        self._state.observe(
            self._reader_ids[readers].tolist(),
            self._item_ids[items].tolist(),
            np.asarray(times, dtype=np.float64).tolist(),
            contexts=contexts,
        )

    def recommend(
        self, reader: int, k: int, exclude: np.ndarray, context: dict[str, str] | None = None
    ) -> np.ndarray:
        scores = self._scorer.for_reader(str(self._reader_ids[reader]), context=context)
        values = scores.values
        values = values[: len(self._item_ids)]
        values[exclude] = -np.inf
        return top_n(values, k)
