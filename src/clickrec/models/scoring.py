"""Scoring a reader: the trained artifact combined with the live online state.

A reader's history is read from the online state at request time, so a click made a
moment ago changes the next answer without retraining. Items the model never saw
(posts published after training) can still appear through trending and exploration.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from clickrec.models.base import Artifact, RecipeParams, log
from clickrec.models.online import OnlineState
from clickrec.models.recipes import Parts, Recipe, TrendingNow, recipe_named


@dataclass(frozen=True)
class Exploration:
    """Like Personalize's explorationWeight and explorationItemAgeCutOff."""

    weight: float = 0.3  # 0 = pure relevance; up to 1 = strongly favour new, unproven posts
    item_age_cutoff_days: float = 2.0  # only posts younger than this are explored


# Reads' worth of everybody's category shares mixed into a reader's own (so one read
# does not make a section everything) in ``Scorer.category_boost``.
PRIOR_READS = 1.0
# The most a section can lift (or sink) an item's trending: a section nobody reads now has
# a share near 0, and an unbounded ratio would lift its stale posts above what trends.
BOOST_LIMIT = 8.0

# Items nobody has read yet are ordered newest first, far below anything read at all, so
# a catalog without events (or before the first model) still gets sensible answers.
NEWEST_TIEBREAK = 1e-6


@dataclass(frozen=True)
class Scores:
    """Scores over the live item index, plus how they were made."""

    values: np.ndarray  # float64 per live item index; -inf means never show
    recipe: str
    # The weighted terms that add up to ``values`` (personal, trending, exploration),
    # kept so an item's reason can name the one that put it there.
    parts: Parts = ()
    history: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


class Spreads(Protocol):
    """Item-item links read for a history (fresh co-reads, content similarity)."""

    def spread(self, items: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray: ...


class Scorer:
    """Binds one artifact to an online state; cheap to rebuild when either changes."""

    def __init__(
        self,
        artifact: Artifact | None,
        state: OnlineState,
        exploration: Exploration = Exploration(),
        context_weight: float = 1.0,
    ) -> None:
        self.artifact = artifact
        self.state = state
        # How a reader is scored; without a model, or with one whose recipe this version
        # does not know (a newer version published it, then this one was rolled back), by
        # trending: the server keeps answering, and says why.
        self.scoring: Recipe = TrendingNow()
        if artifact is not None:
            try:
                self.scoring = recipe_named(artifact.recipe)
            except ValueError as exc:
                log.error("model trained %s: %s; scoring by trending", artifact.trained_until, exc)
        override = artifact.params.exploration_weight if artifact is not None else None
        # A model may carry the exploration weight its replay chose; else serving's setting.
        self.exploration = (
            exploration if override is None else replace(exploration, weight=override)
        )
        # How strongly a request's context (device, referrer…) bends trending toward what
        # trends among events with that context; 0 ignores contexts.
        self.context_weight = context_weight
        if artifact is not None:
            with state.lock:
                live = [state.index_of(str(i)) for i in artifact.item_ids]
            self.live_of_model = np.asarray(live, dtype=np.int64)
            self.model_of_live = np.full(max(live, default=-1) + 1, -1, dtype=np.int64)
            self.model_of_live[self.live_of_model] = np.arange(len(live))
            sim = artifact.similarity
            # Neighbours addressed by live index, so scoring is one gather and one bincount.
            self._indptr = sim.indptr.astype(np.int64)
            self._neighbours = self.live_of_model[sim.indices]
            self._weights = sim.data.astype(np.float64)
        else:
            self.live_of_model = np.zeros(0, dtype=np.int64)
            self.model_of_live = np.zeros(0, dtype=np.int64)
            self._indptr = np.zeros(1, dtype=np.int64)
            self._neighbours = np.zeros(0, dtype=np.int64)
            self._weights = np.zeros(0)
        self._cache_key: tuple[int, int] | None = None
        # Per category, its share of trending, with the cache state it was computed at.
        self._prior: tuple[tuple[object, ...], np.ndarray] | None = None
        self._uncovered_of: tuple[sp.csr_matrix, np.ndarray] | None = None
        self._cache_seen = 0
        self._cache_mark: tuple[float, float | None] = (0.0, None)
        self._cache: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
        self._plain_trending = np.zeros(0)  # the trending that ``_cache`` was built from

    @property
    def recipe(self) -> str:
        return self.artifact.recipe if self.artifact else f"{TrendingNow.name} (no model yet)"

    def personal(self, history: np.ndarray, n: int | None = None) -> np.ndarray:
        """Item-item similarity summed over the history, newer reads weighing more; scaled
        so the best item scores 1. ``n`` is the length of the returned vector."""
        n = self.state.n_items if n is None else n
        art = self.artifact
        if art is None or len(history) == 0 or len(self._neighbours) == 0:
            return np.zeros(n)
        pos = np.flatnonzero(history < len(self.model_of_live))
        rows = self.model_of_live[history[pos]]
        keep = rows >= 0
        rows, pos = rows[keep], pos[keep]
        if len(rows) == 0:
            return np.zeros(n)
        starts, ends = self._indptr[rows], self._indptr[rows + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(n)
        first = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        at = first + np.arange(total)
        w = np.repeat(np.exp2(-pos / art.params.history_half_life), lengths)
        cols = self._neighbours[at]
        inside = cols < n
        out = np.bincount(cols[inside], self._weights[at][inside] * w[inside], minlength=n)
        top = out.max()
        return out / top if top > 0 else out

    def taste(self, history: np.ndarray, n: int) -> np.ndarray:
        """``personal``, plus the fresh co-reads of the live stream and the content
        similarity at the model's ``fresh_weight`` and ``content_weight`` (newer reads
        weighing more, as in ``personal``); best item 1."""
        out = self.personal(history, n)
        art = self.artifact
        if art is None or len(history) == 0:
            return out
        p = art.params
        terms: list[tuple[float, Spreads]] = [
            (p.fresh_weight, self.state.coreads),
            (p.content_weight, self.state.content),
        ]
        if all(weight <= 0 for weight, _ in terms):
            return out
        weights = np.exp2(-np.arange(len(history)) / p.history_half_life)
        items = history.astype(np.int64)
        for weight, source in terms:
            if weight > 0:
                spread = source.spread(items, weights, n)
                top = spread.max()
                if top > 0:
                    out = out + weight * spread / top
        top = out.max()
        return out / top if top > 0 else out

    def freshness(self, now: float, n: int | None = None) -> np.ndarray:
        """Exploration bonus for young posts with few reads, fading with age."""
        n = self.state.n_items if n is None else n
        ex = self.exploration
        if ex.weight <= 0:
            return np.zeros(n)
        age_days = (now - self.state.published_at[:n]) / 86400.0
        young = np.clip(1.0 - age_days / ex.item_age_cutoff_days, 0.0, 1.0)
        young[np.isnan(young)] = 0.0
        unproven = 1.0 / (1.0 + self.state.counts()[:n] / 10.0)
        return ex.weight * young * unproven

    def shared(self) -> tuple[np.ndarray, np.ndarray]:
        """(trending, bonus) over the live items, the same for every reader.

        ``bonus`` is the exploration bonus, -inf where an item may not be shown. Both are
        recomputed after any catalog change and once the events since bring 0.1% of the
        trending mass (weighted by recency, so one event after a quiet month counts in
        full), not per request: they cost O(items). ``settle`` (the serving refresher,
        a few times a second) catches up with every event, so every process that has
        seen the same events gives the same list once the stream pauses, and within
        that 0.1% while it flows.
        """
        return self._shared(exact=False)

    def settle(self) -> None:
        """Bring the shared terms up to every event seen (off the request path)."""
        self._shared(exact=True)

    def _shared(self, exact: bool) -> tuple[np.ndarray, np.ndarray]:
        state = self.state
        seen = state.events_seen
        key = (state.catalog_version, state.n_items)
        stale = seen != self._cache_seen and (
            exact or state.trend_added_since(self._cache_mark) > 1e-3
        )
        if key != self._cache_key or stale:
            self._cache_mark = state.trend_mass_mark()
            n = state.n_items
            now = state.newest_event_time
            bonus = self.freshness(now, n) if np.isfinite(now) else np.zeros(n)
            bonus[~state.available(now)] = -np.inf
            params = self.artifact.params if self.artifact else None
            trending = state.trending(params.trending_half_life_hours if params else None)
            if params is not None and params.slow_trending_weight > 0:
                # What trended over the last day too: older posts still read keep a place.
                trending = trending + params.slow_trending_weight * state.trending(24.0)
                trending = trending / max(float(trending.max()), 1e-12)
            self._plain_trending = trending  # for the section prior (no tiebreak, no context)
            self._cache = (trending + NEWEST_TIEBREAK * state.newness(), bonus)
            self._cache_key, self._cache_seen = key, seen
        return self._cache

    def _category_prior(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Each category's share of what trends now (plain trending: never one request's
        context, nor the newness tiebreak), cached with the trending it came from."""
        self.shared()  # refreshes the cache key when trending moved on
        key = (self._cache_key, self._cache_seen, matrix.shape)
        cached = self._prior  # one read: another request may replace it meanwhile
        if cached is not None and cached[0] == key:
            return cached[1]
        everybody = self._plain_trending
        m = min(matrix.shape[0], len(everybody))
        mass = matrix[:m].T @ everybody[:m]
        total = mass.sum()
        prior = mass / total if total > 0 else np.full(len(mass), 1.0 / max(len(mass), 1))
        self._prior = (key, prior)
        return prior

    def _uncovered(self, matrix: sp.csr_matrix) -> np.ndarray:
        """Mask of the matrix's items that have no category, kept while the matrix is."""
        cached = self._uncovered_of
        if cached is None or cached[0] is not matrix:
            cached = self._uncovered_of = (matrix, np.diff(matrix.indptr) == 0)
        return cached[1]

    def category_boost(self, history: np.ndarray, trending: np.ndarray) -> np.ndarray | None:
        """Per item, how much more this reader reads its categories than everybody does
        now: (h_c + PRIOR_READS·g_c) / ((H + PRIOR_READS)·g_c), within [1/BOOST_LIMIT,
        BOOST_LIMIT], averaged over the item's categories, where h_c sums the reader's
        history in c (newer reads weigh more, as in ``personal``), H is its total and g_c
        is category c's share of trending. 1 for items without a category; None when the
        catalog has no categories or the reader no history in any."""
        matrix = self.state.category_matrix()
        n = min(matrix.shape[0], len(trending))
        if matrix.shape[1] == 0 or len(history) == 0 or n == 0:
            return None
        if matrix.shape[0] != n:  # an item added since the trending cache was built
            matrix = matrix[:n]
        history = history[history < n]
        g = np.maximum(self._category_prior(matrix), 1e-6)
        half_life = self.artifact.params.history_half_life if self.artifact else 5.0
        w = np.exp2(-np.arange(len(history)) / half_life)
        # h = matrix[history].T @ w, gathered straight from the CSR arrays (a tenth of the
        # time of scipy's row indexing for a 50-read history)
        starts = matrix.indptr[history]
        lengths = matrix.indptr[history + 1] - starts
        at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        h = np.bincount(
            matrix.indices[at], matrix.data[at] * np.repeat(w, lengths), minlength=matrix.shape[1]
        )
        total = h.sum()
        if total <= 0:
            return None
        ratio = (h + PRIOR_READS * g) / ((total + PRIOR_READS) * g)
        ratio = np.clip(ratio, 1.0 / BOOST_LIMIT, BOOST_LIMIT)
        boost = matrix @ ratio
        boost[self._uncovered(matrix)] = 1.0  # no category: neither favoured nor not
        if len(boost) < len(trending):
            boost = np.r_[boost, np.ones(len(trending) - len(boost))]
        return boost

    def contextual(self, trending: np.ndarray, context: dict[str, str] | None) -> np.ndarray:
        """Trending bent toward what trends among events with this context (scaled so the
        top item scores 1 again); unchanged without a context or one never seen."""
        if not context or self.context_weight <= 0:
            return trending
        lift = self.state.context_lift(context)
        if lift is None:
            return trending
        bent = trending * lift[: len(trending)] ** self.context_weight
        top = bent.max() if len(bent) else 0.0
        return bent / top if top > 0 else bent

    def for_reader(
        self,
        reader: str,
        history: np.ndarray | None = None,
        context: dict[str, str] | None = None,
    ) -> Scores:
        """Scores of every live item for one reader; already-read items are -inf.
        ``history``: the reader's history items, when the caller has read them already;
        ``context``: the request's context map (see ``contextual``)."""
        if history is None:
            history, _ = self.state.history(reader)
        trending, bonus = self.shared()
        trending = self.contextual(trending, context)
        n = len(trending)
        params = self.artifact.params if self.artifact else RecipeParams()
        values, parts = self.scoring.score(self, params, history, trending, bonus)
        seen = self.state.seen(reader)
        values[seen[seen < n]] = -np.inf
        return Scores(values, self.recipe, parts, history)

    def anchors(self, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """For each of ``items``, the history item that adds most to its personal score
        (-1 where none does): the "because you read" of an explanation."""
        out = np.full(len(items), -1, dtype=np.int64)
        art = self.artifact
        if art is None or len(history) == 0 or len(items) == 0 or len(self._neighbours) == 0:
            return out
        pos = np.flatnonzero(history < len(self.model_of_live))
        rows = self.model_of_live[history[pos]]
        pos, rows = pos[rows >= 0], rows[rows >= 0]
        starts, lengths = self._indptr[rows], self._indptr[rows + 1] - self._indptr[rows]
        total = int(lengths.sum())
        if total == 0:
            return out
        at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(total)
        source = np.repeat(pos, lengths)  # which history entry each neighbour comes from
        cols = self._neighbours[at]
        order = np.argsort(items, kind="stable")
        slot = np.searchsorted(items[order], cols)
        slot[slot >= len(items)] = 0
        hit = items[order][slot] == cols
        if not hit.any():
            return out
        gain = self._weights[at][hit] * np.exp2(-source[hit] / art.params.history_half_life)
        target, source = order[slot[hit]], source[hit]
        best = np.lexsort((-gain, target))  # per target, the largest gain first
        first = np.r_[True, target[best][1:] != target[best][:-1]]
        winners = best[first]
        keep = gain[winners] > 0
        out[target[winners][keep]] = history[source[winners][keep]]
        return out

    def neighbours(self, item: int) -> np.ndarray:
        """Live indices of the model's neighbours of an item (empty if the model lacks it)."""
        m = self.model_of_live[item] if item < len(self.model_of_live) else -1
        if self.artifact is None or m < 0:
            return np.zeros(0, dtype=np.int64)
        return self.live_of_model[self.artifact.similarity[m].indices]

    def similar(self, item: int) -> np.ndarray:
        """Scores of items similar to one item (model neighbours, else same category)."""
        state = self.state
        n = state.n_items
        now = state.newest_event_time
        values = np.zeros(n)
        m = self.model_of_live[item] if item < len(self.model_of_live) else -1
        if self.artifact is not None and m >= 0:
            row = self.artifact.similarity[m]
            values[self.live_of_model[row.indices]] = row.data
        # Posts that share a category come next, by trending, so new posts have neighbours.
        same = np.zeros(n, dtype=bool)
        for cat in state.item_category.get(item, []):
            same |= state.category_mask(cat)
        values = values + 0.01 * same * (1.0 + state.trending())
        values[~state.available(now)] = -np.inf
        values[item] = -np.inf
        values[values <= 0] = -np.inf
        return values


def top_n(values: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``n`` best finite scores, best first (fewer if fewer are finite)."""
    if mask is not None:
        values = np.where(mask, values, -np.inf)
    finite = np.isfinite(values)
    count = int(finite.sum())
    n = min(n, count)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    cand = (
        np.argpartition(-np.where(finite, values, -np.inf), n - 1)[:n]
        if n < len(values)
        else np.arange(len(values))
    )
    cand = cand[np.isfinite(values[cand])]
    return cand[np.argsort(-values[cand], kind="stable")][:n]
