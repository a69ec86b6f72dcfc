"""Fitting the recipes: time-decayed popularity and session co-occurrence similarity."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from clickrec.models.base import Artifact, Interactions, RecipeParams

LN2 = np.log(2.0)


def decay_weights(timestamp: np.ndarray, until: float, half_life_hours: float) -> np.ndarray:
    """Weight 1 for an event at ``until``, halving every ``half_life_hours`` before it."""
    age_hours = np.maximum(until - timestamp, 0.0) / 3600.0
    return np.exp2(-age_hours / half_life_hours).astype(np.float32)


def popularity(data: Interactions, until: float, half_life_hours: float) -> np.ndarray:
    """Time-decayed interaction counts per item (the trending-now score at ``until``)."""
    w = decay_weights(data.timestamp, until, half_life_hours)
    return np.bincount(data.item, weights=w, minlength=data.n_items).astype(np.float32)


def _recent_in_session(data: Interactions, window: int) -> np.ndarray:
    """Mask of the newest ``window`` events of each session (caps runaway sessions)."""
    order = np.lexsort((-data.timestamp, data.session))
    sessions = data.session[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sessions)) + 1]
    run_pos = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    mask = np.zeros(len(order), dtype=bool)
    mask[order[run_pos < window]] = True
    return mask


def item_similarity(data: Interactions, until: float, params: RecipeParams) -> sp.csr_matrix:
    """Cosine similarity of items read in the same sessions, decayed by age, top-k per row."""
    n = data.n_items
    if len(data) == 0:
        return sp.csr_matrix((n, n), dtype=np.float32)
    keep = _recent_in_session(data, params.session_window)
    sess = data.session[keep]
    item = data.item[keep]
    w = decay_weights(data.timestamp[keep], until, params.half_life_hours)
    _, sess_rows = np.unique(sess, return_inverse=True)
    x = sp.csr_matrix((w, (sess_rows, item)), shape=(int(sess_rows.max()) + 1, n))
    x.data = np.minimum(x.data, 1.0)  # a re-read in one session counts once
    co = (x.T @ x).tocoo()
    off = co.row != co.col
    rows, cols, vals = co.row[off], co.col[off], co.data[off]
    norms = np.asarray(x.power(2).sum(axis=0)).ravel()
    denom = np.sqrt(norms[rows] * norms[cols]) + params.shrinkage
    vals = vals / denom
    return _top_k_rows(rows, cols, vals.astype(np.float32), n, params.neighbours)


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


def fit(recipe: str, data: Interactions, params: RecipeParams) -> Artifact:
    """Train one recipe on ``data``; the result is what serving loads."""
    until = float(data.timestamp.max()) if len(data) else 0.0
    pop = popularity(data, until, params.half_life_hours)
    if recipe in ("trending-now", "popularity-count"):
        sim = sp.csr_matrix((data.n_items, data.n_items), dtype=np.float32)
    else:
        sim = item_similarity(data, until, params)
    return Artifact(recipe, data.item_ids, pop, sim, until, params)


FitCache = dict[tuple[object, ...], Artifact]


def fit_cached(recipe: str, data: Interactions, params: RecipeParams, cache: FitCache) -> Artifact:
    """``fit``, sharing the work between candidates that differ only in how they score
    (blend, weights, trending half-life): the similarity and popularity depend on the
    recipe's kind and four knobs. ``cache`` must serve one ``data`` only."""
    similar = recipe not in ("trending-now", "popularity-count")
    key: tuple[object, ...] = (similar, params.half_life_hours, params.neighbours)
    key += (params.session_window, params.shrinkage)
    found = cache.get(key)
    if found is None:
        found = cache[key] = fit(recipe, data, params)
    return replace(found, recipe=recipe, params=params, metrics={})
