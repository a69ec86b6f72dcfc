"""The recipes: one small interface (fit, score), one class per recipe, the registry,
and what they fit: time-decayed popularity and session co-occurrence similarity."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import scipy.sparse as sp

from clickrec.models.base import Artifact, Interactions, RecipeParams

if TYPE_CHECKING:
    from clickrec.models.scoring import Scorer

LN2 = np.log(2.0)


def decay_weights(timestamp: np.ndarray, until: float, half_life_hours: float) -> np.ndarray:
    """Weight 1 for an event at ``until``, halving every ``half_life_hours`` before it."""
    age_hours = np.maximum(until - timestamp, 0.0) / 3600.0
    return np.exp2(-age_hours / half_life_hours).astype(np.float32)


def popularity(data: Interactions, until: float, half_life_hours: float) -> np.ndarray:
    """Time-decayed interaction counts per item (the trending-now score at ``until``)."""
    w = decay_weights(data.timestamp, until, half_life_hours)
    return np.bincount(data.item, weights=w, minlength=data.n_items).astype(np.float32)


def _recent_in_group(group: np.ndarray, timestamp: np.ndarray, window: int) -> np.ndarray:
    """Mask of the newest ``window`` events of each group (session or reader): caps
    runaway sessions and readers."""
    order = np.lexsort((-timestamp, group))
    groups = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    run_pos = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    mask = np.zeros(len(order), dtype=bool)
    mask[order[run_pos < window]] = True
    return mask


SEQUENCE_STEPS = 5  # "read next" links an item to the reads up to this many steps later
# Co-read pairs a fit may form (each group of n reads forms n² of them, and each becomes a
# cell of the co-occurrence matrix): ~0.5 GB at most, whatever the readers' appetite.
PAIR_BUDGET = 20_000_000


def _window_within_budget(group_sizes: np.ndarray, window: int) -> int:
    """The largest window up to ``window`` whose newest reads per group form at most
    PAIR_BUDGET pairs (heavy readers over a year of history would otherwise form billions)."""
    sizes = group_sizes[group_sizes > 0]
    while window > 2 and float(np.sum(np.minimum(sizes, window) ** 2.0)) > PAIR_BUDGET:
        window = int(window * 0.8)
    return window


def item_similarity(data: Interactions, until: float, params: RecipeParams) -> sp.csr_matrix:
    """Cosine similarity of items read together (in one session, or by one reader),
    decayed by age, plus ``sequence_weight`` times "read next"; top-k per row."""
    n = data.n_items
    if len(data) == 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    if params.cooccurrence not in ("session", "reader"):
        raise ValueError(f"cooccurrence must be 'session' or 'reader', not {params.cooccurrence!r}")
    group = data.session if params.cooccurrence == "session" else data.reader
    window = _window_within_budget(np.bincount(group), params.session_window)
    keep = _recent_in_group(group, data.timestamp, window)
    item = data.item[keep]
    w = decay_weights(data.timestamp[keep], until, params.half_life_hours)
    _, group_rows = np.unique(group[keep], return_inverse=True)
    x = sp.csr_matrix((w, (group_rows, item)), shape=(int(group_rows.max()) + 1, n))
    x.data = np.minimum(x.data, 1.0)  # a re-read in one session counts once
    co = (x.T @ x).tocoo()
    off = co.row != co.col
    rows, cols, vals = co.row[off], co.col[off], co.data[off]
    norms = np.asarray(x.power(2).sum(axis=0)).ravel()
    denom = np.sqrt(norms[rows] * norms[cols]) + params.shrinkage
    vals = _row_scaled(rows, vals / denom, n)
    if params.sequence_weight > 0:
        s_rows, s_cols, s_vals = transitions(data, until, params)
        summed = (
            sp.coo_matrix(
                (
                    np.r_[vals, params.sequence_weight * _row_scaled(s_rows, s_vals, n)],
                    (np.r_[rows, s_rows], np.r_[cols, s_cols]),
                ),
                shape=(n, n),
            )
            .tocsr()
            .tocoo()
        )  # duplicates summed
        rows, cols, vals = summed.row, summed.col, summed.data
    return _top_k_rows(rows, cols, vals.astype(np.float32), n, params.neighbours)


def transitions(
    data: Interactions, until: float, params: RecipeParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What sessions read next, as (from, to, weight) triples: each pair of reads of one
    session at most SEQUENCE_STEPS apart, weighing 1/steps times the decay of the later
    one (``data`` is in time order, so a stable sort by session keeps each in order)."""
    order = np.argsort(data.session, kind="stable")  # by session, in time within each
    session, item = data.session[order], data.item[order]
    w = decay_weights(data.timestamp[order], until, params.half_life_hours)
    parts = []
    for step in range(1, SEQUENCE_STEPS + 1):
        same = (session[step:] == session[:-step]) & (item[step:] != item[:-step])
        parts.append((item[:-step][same], item[step:][same], w[step:][same] / step))
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    vals = np.concatenate([p[2] for p in parts])
    summed = sp.coo_matrix((vals, (rows, cols)), shape=(data.n_items,) * 2).tocsr().tocoo()
    return summed.row, summed.col, summed.data


def _row_scaled(rows: np.ndarray, vals: np.ndarray, n: int) -> np.ndarray:
    """``vals`` divided by the largest value of their row (so the best scores 1)."""
    row_max = np.zeros(n, dtype=np.float64)
    np.maximum.at(row_max, rows, vals)
    return vals / np.where(row_max[rows] > 0, row_max[rows], 1.0)


def _top_k_rows(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int, k: int
) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each row, then scale each row to a max of 1."""
    order = np.lexsort((-vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    starts = np.r_[0, np.flatnonzero(np.diff(rows)) + 1] if len(rows) else np.array([], int)
    lengths = np.diff(np.r_[starts, len(rows)])
    rank = np.arange(len(rows)) - np.repeat(starts, lengths)
    keep = rank < k
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    row_max = np.zeros(n, dtype=np.float32)
    np.maximum.at(row_max, rows, vals)
    vals = vals / np.where(row_max[rows] > 0, row_max[rows], 1.0)
    return sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, n))


Parts = tuple[tuple[str, np.ndarray], ...]  # named weighted terms that add up to the scores


class Recipe(ABC):
    """One way to train a model and score a reader with it; ``RECIPES`` holds each by name."""

    name: ClassVar[str]  # on the wire, in meta.json and in the pipeline's candidates

    @abstractmethod
    def fit(self, data: Interactions, params: RecipeParams) -> Artifact:
        """Train on ``data``; the result is what serving loads."""

    def fit_key(self, params: RecipeParams) -> tuple[object, ...]:
        """What ``fit`` depends on: fits with equal keys (of any recipe) are shared by
        ``fit_cached``. By default none is shared with another recipe or other knobs."""
        return (self.name, params)

    @abstractmethod
    def score(
        self,
        scorer: Scorer,
        params: RecipeParams,
        history: np.ndarray,
        trending: np.ndarray,
        bonus: np.ndarray,
    ) -> tuple[np.ndarray, Parts]:
        """One reader's scores over the live items (a new array) and the terms adding up to
        them, from the reader's history (newest first), trending and exploration bonus."""

    def trending_half_life(self, params: RecipeParams, serving: float) -> float:
        """The half-life of the online trending this recipe is replayed with offline."""
        return serving


class _Popular(Recipe):
    """Trending alone: the fit keeps popularity and no similarity."""

    def fit(self, data: Interactions, params: RecipeParams) -> Artifact:
        until = _newest(data)
        pop = popularity(data, until, params.half_life_hours)
        sim = sp.csr_matrix((data.n_items, data.n_items), dtype=np.float32)
        return Artifact(self.name, data.item_ids, pop, sim, until, params)

    def fit_key(self, params: RecipeParams) -> tuple[object, ...]:
        return ("popularity", params.half_life_hours)

    def score(
        self,
        scorer: Scorer,
        params: RecipeParams,
        history: np.ndarray,
        trending: np.ndarray,
        bonus: np.ndarray,
    ) -> tuple[np.ndarray, Parts]:
        return trending + bonus, (("trending", trending), ("bonus", bonus))


class TrendingNow(_Popular):
    """What readers read now: the online state's trending, plus exploration."""

    name = "trending-now"


class PopularityCount(_Popular):
    """Time-decayed read counts (all-time with a half-life no data set comes near)."""

    name = "popularity-count"

    def trending_half_life(self, params: RecipeParams, serving: float) -> float:
        # Serving scores it from the online state's trending, which decays with the serving
        # half-life (the artifact's popularity is never read); offline, the state decays
        # with the recipe's ``half_life_hours`` instead, so with an all-time half-life its
        # trending is the all-time count per item.
        return params.half_life_hours


class _CoRead(Recipe):
    """Taste from items read together, blended with trending."""

    def fit(self, data: Interactions, params: RecipeParams) -> Artifact:
        until = _newest(data)
        pop = popularity(data, until, params.half_life_hours)
        sim = item_similarity(data, until, params)
        return Artifact(self.name, data.item_ids, pop, sim, until, params)

    def fit_key(self, params: RecipeParams) -> tuple[object, ...]:
        p = params  # the knobs of ``item_similarity`` and ``popularity``
        return (
            "co-read",
            p.half_life_hours,
            p.neighbours,
            p.session_window,
            p.shrinkage,
            p.cooccurrence,
            p.sequence_weight,
        )

    def score(
        self,
        scorer: Scorer,
        params: RecipeParams,
        history: np.ndarray,
        trending: np.ndarray,
        bonus: np.ndarray,
    ) -> tuple[np.ndarray, Parts]:
        p, n = params, len(trending)
        if p.category_weight > 0:
            boost = scorer.category_boost(history, trending)
            if boost is not None:  # trending bent toward the reader's sections
                bend = boost if p.category_weight == 1.0 else boost**p.category_weight
                trending = trending * bend
                trending = trending / max(float(trending.max()), 1e-12)
        if p.blend == "product":
            # Taste reorders what is trending now; a reader with no history gets trending.
            personal = trending * (p.personal_weight * scorer.taste(history, n))
            values = trending + personal + bonus
            return values, (("personal", personal), ("trending", trending), ("bonus", bonus))
        personal = p.personal_weight * scorer.taste(history, n)
        # Readers with short histories lean on trending; long ones on their own taste.
        blend = p.trending_weight + (1.0 - p.trending_weight) * 3.0 / (3.0 + len(history))
        values = personal + blend * trending + bonus
        return values, (("personal", personal), ("trending", blend * trending), ("bonus", bonus))


class SimilarItems(_CoRead):
    """Items read together; for a reader, the same blend as ``user-personalization``."""

    name = "similar-items"


class UserPersonalization(_CoRead):
    """A reader's taste (what their reads are read with) blended with trending."""

    name = "user-personalization"


RECIPES: dict[str, Recipe] = {
    r.name: r for r in (TrendingNow(), PopularityCount(), SimilarItems(), UserPersonalization())
}


def recipe_named(name: str) -> Recipe:
    """The registered recipe called ``name``."""
    found = RECIPES.get(name)
    if found is None:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)}")
    return found


def _newest(data: Interactions) -> float:
    return float(data.timestamp.max()) if len(data) else 0.0


def fit(recipe: str, data: Interactions, params: RecipeParams) -> Artifact:
    """Train the recipe called ``recipe`` on ``data``; the result is what serving loads."""
    return recipe_named(recipe).fit(data, params)


FitCache = dict[tuple[object, ...], Artifact]


def fit_cached(recipe: str, data: Interactions, params: RecipeParams, cache: FitCache) -> Artifact:
    """``fit``, sharing the work between candidates that differ only in how they score
    (blend, weights, trending half-life): candidates whose recipes give equal ``fit_key``s
    share one fit. ``cache`` must serve one ``data`` only."""
    key = recipe_named(recipe).fit_key(params)
    found = cache.get(key)
    if found is None:
        found = cache[key] = fit(recipe, data, params)
    return replace(found, recipe=recipe, params=params, metrics={})
