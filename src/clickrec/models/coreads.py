"""Fresh co-reads: which post readers read right after which, learned from the live stream
between trainings, so a post published an hour ago has neighbours before the next training.

Each event adds a pair (the reader's previous read → this one) when the two are at most
``max_gap_hours`` apart: full weight forward ("read next"), ``backward`` of it the other
way. Weights decay with event time at ``half_life_hours`` (kept relative to an anchor, as
trending's are, so nothing is rescaled per event); pairs that decayed below a thousandth of
a new pair's weight are dropped, and past ``max_pairs`` the weakest go, so memory is bounded.

New pairs wait in a short buffer that ``compact`` folds into a sparse matrix (the serving
process's refresher calls it every fraction of a second; a long buffer compacts itself);
``spread`` reads both, so an answer reflects the event acknowledged just before it.
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse as sp

_REANCHOR_HALVINGS = 400.0
_FORGET = 2.0**-10  # pairs this much weaker than a new one are dropped at compaction
_NONE = np.zeros(0, dtype=np.int64)
RECENT_PAIRS = 200_000  # the recent matrix is folded into the main one past this (or 1/8)


class FreshCoreads:
    """Decayed "read next" pair weights over a growing item index."""

    def __init__(
        self,
        half_life_hours: float = 72.0,
        max_pairs: int = 2_000_000,
        max_gap_hours: float = 24.0,
        backward: float = 0.5,
        compact_at: int = 50_000,
    ) -> None:
        self.half_life_s = half_life_hours * 3600.0
        self.max_pairs = max_pairs
        self.max_gap_s = max_gap_hours * 3600.0
        self.backward = backward
        self.compact_at = compact_at
        self.anchor: float | None = None
        self.newest = -np.inf
        self.matrix = sp.csr_matrix((0, 0))  # the main pairs, rewritten now and then
        self.recent = sp.csr_matrix((0, 0))  # pairs since, folded in often (it is small)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_n = 0
        self.lock = threading.Lock()

    @property
    def pairs(self) -> int:
        """Pairs held: compacted (a pair in both matrices counts twice) and waiting."""
        return int(self.matrix.nnz + self.recent.nnz) + self._pending_n

    def add(self, prev: np.ndarray, nxt: np.ndarray, times: np.ndarray) -> None:
        """Pairs (prev → next) read at ``times`` (event time, Unix seconds)."""
        if len(prev) == 0:
            return
        prev, nxt = np.asarray(prev, np.int64), np.asarray(nxt, np.int64)
        times = np.asarray(times, np.float64)
        with self.lock:
            if self.anchor is None:
                self.anchor = float(times.min())
            self.newest = max(self.newest, float(times.max()))
            self._pending.append((prev, nxt, times))
            self._pending_n += len(prev)
            due = self._pending_n >= self.compact_at
        if due:
            self.compact()

    def add_reads(
        self, prev: np.ndarray, prev_times: np.ndarray, items: np.ndarray, times: np.ndarray
    ) -> None:
        """Each read with the reader's read before it (-1: none) and that read's time:
        a pair when the two are different posts at most ``max_gap_hours`` apart."""
        prev, items = np.asarray(prev, np.int64), np.asarray(items, np.int64)
        prev_times, times = np.asarray(prev_times, np.float64), np.asarray(times, np.float64)
        keep = (prev >= 0) & (prev != items) & (times - prev_times <= self.max_gap_s)
        self.add(prev[keep], items[keep], times[keep])

    def compact(self, full: bool = False) -> None:
        """Fold the waiting pairs into the small recent matrix; once that holds an eighth
        of the main one (or RECENT_PAIRS), or when ``full``, fold it in too, dropping what
        decayed and, past ``max_pairs``, the weakest. Each fold costs the size of what it
        merges, so the main matrix is rewritten only every so many new pairs."""
        with self.lock:
            if (not self._pending and not full) or self.anchor is None:
                return
            waiting = self._pending or [(_NONE, _NONE, np.zeros(0))]
            prev = np.concatenate([p for p, _, _ in waiting])
            nxt = np.concatenate([n for _, n, _ in waiting])
            times = np.concatenate([t for _, _, t in waiting])
            self._pending, self._pending_n = [], 0
            if (self.newest - self.anchor) / self.half_life_s > _REANCHOR_HALVINGS:
                scale = np.exp2((self.anchor - self.newest) / self.half_life_s)
                self.matrix = self.matrix * scale
                self.recent = self.recent * scale
                self.anchor = self.newest
            w = np.exp2((times - self.anchor) / self.half_life_s)
            highest = int(max(prev.max(), nxt.max())) if len(prev) else -1
            size = max(self.matrix.shape[0], self.recent.shape[0], highest + 1)
            fresh = sp.csr_matrix(
                (np.r_[w, self.backward * w], (np.r_[prev, nxt], np.r_[nxt, prev])),
                shape=(size, size),
            )
            self.recent = (_sized(self.recent, size) + fresh).tocsr()
            if not full and self.recent.nnz < max(RECENT_PAIRS, self.matrix.nnz // 8):
                return
            merged = (_sized(self.matrix, size) + self.recent).tocsr()
            self.recent = sp.csr_matrix((size, size))
            floor = _FORGET * np.exp2((self.newest - self.anchor) / self.half_life_s)
            if merged.nnz > self.max_pairs:
                strongest = np.partition(merged.data, -self.max_pairs)[-self.max_pairs]
                floor = max(floor, float(strongest))
            merged.data[merged.data < floor] = 0.0
            merged.eliminate_zeros()
            self.matrix = merged

    def spread(self, items: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
        """Σ over ``items`` of weight × the pair weights from that item, per item index
        (length ``n``): what fresh co-reads say a reader of ``items`` reads next."""
        out = np.zeros(n)
        if len(items) == 0:
            return out
        with self.lock:
            if len(self._pending) > 1:  # one chunk to read, however many batches made it
                prev, nxt, times = (
                    np.concatenate(part) for part in zip(*self._pending, strict=True)
                )
                self._pending = [(prev, nxt, times)]
            matrices, pending = (self.matrix, self.recent), list(self._pending)
            anchor = self.anchor
        if anchor is None:
            return out
        for matrix in matrices:
            held = items < matrix.shape[0]
            if held.any() and matrix.nnz:
                summed = np.asarray(matrix[items[held]].T @ weights[held]).ravel()
                m = min(n, len(summed))
                out[:m] += summed[:m]
        if pending:
            by_item = np.zeros(max(n, int(items.max()) + 1))
            np.maximum.at(by_item, items, weights)
            for prev, nxt, times in pending:
                w = np.exp2((times - anchor) / self.half_life_s)
                for src, dst, share in ((prev, nxt, 1.0), (nxt, prev, self.backward)):
                    inside = (src < len(by_item)) & (dst < n)
                    gain = by_item[src[inside]] * w[inside] * share
                    out += np.bincount(dst[inside], gain, minlength=n)[:n]
        return out


def _sized(matrix: sp.csr_matrix, size: int) -> sp.csr_matrix:
    """``matrix`` grown to ``size`` × ``size`` (a copy when it grows: a reader may hold it)."""
    if matrix.shape[0] >= size:
        return matrix
    grown = matrix.copy()
    grown.resize((size, size))
    return grown
