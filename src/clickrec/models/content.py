"""Content similarity: posts that share words (title, text or summary, sections, tags,
author), for the posts nobody has read yet. A post put in the catalog a minute ago is
linked to what readers read recently from that minute on, before any co-read exists.

Words are lower-cased runs of letters and digits; each post is a TF-IDF vector (sublinear
term frequency, smoothed IDF, L2-normalized; words in more than MAX_DF of the posts, or half
of a small catalog's, are dropped). The NEWEST posts (those readers come to) keep their
``neighbours`` most cosine-similar posts, and each older post is linked back from theirs.
New posts are vectorized with the vocabulary and IDF in force, compared with every post (one
sparse product) and linked both ways; once a tenth more posts arrived, all is rebuilt.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

_WORD = re.compile(r"[^\W_]{2,}", re.UNICODE)
MAX_DF = 0.05  # words in more posts than this share say little about a pair (and cost most)
NEWEST = 5000  # a rebuild finds the neighbours of the newest posts; older ones are linked back


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class ContentIndex:
    """TF-IDF neighbours of the posts of a growing item index (live indices)."""

    def __init__(self, neighbours: int = 50, rebuild_growth: float = 0.1) -> None:
        self.neighbours = neighbours
        self.rebuild_growth = rebuild_growth
        self.texts: dict[int, str] = {}
        self.vocabulary: dict[str, int] = {}
        self.idf = np.zeros(0)
        self.vectors = sp.csr_matrix((0, 0))  # posts × words, rows L2-normalized
        self.similarity = sp.csr_matrix((0, 0))  # posts × posts, top ``neighbours`` per row
        self._built_with = 0
        self.lock = threading.Lock()  # swaps of the matrices, which readers take as they are
        self._writing = threading.Lock()  # one change at a time

    def set_texts(self, items: Sequence[int], texts: Sequence[str]) -> None:
        """The words of these posts (new or edited); an empty text removes a post's words.
        Readers go on with the previous neighbours while the new ones are computed."""
        if not items:
            return
        with self._writing:
            for item, text in zip(items, texts, strict=True):
                if text.strip():
                    self.texts[int(item)] = text
                else:
                    self.texts.pop(int(item), None)
            if not self.vocabulary:
                self._rebuild()
            else:
                self._link(sorted({int(i) for i in items}))

    @property
    def due(self) -> bool:
        """Whether a tenth more posts arrived since the vocabulary and IDF were built."""
        return len(self.texts) - self._built_with > self.rebuild_growth * max(self._built_with, 1)

    def maintain(self) -> bool:
        """Rebuild when ``due`` (a few seconds for 50k posts: call it off the request
        path, as the serving refresher does); True when it did."""
        if not self.due:
            return False
        with self._writing:
            self._rebuild()
        return True

    def _rebuild(self) -> None:
        """Vocabulary, IDF, vectors and neighbours from every post's words."""
        posts = sorted(self.texts)
        tokens = [words(self.texts[p]) for p in posts]
        df: dict[str, int] = {}
        for toks in tokens:
            for w in set(toks):
                df[w] = df.get(w, 0) + 1
        n = len(posts)
        most = max(MAX_DF * n, min(50.0, 0.5 * n))  # a small catalog keeps more words
        kept = sorted(w for w, d in df.items() if n < 4 or d <= most)
        self.vocabulary = {w: k for k, w in enumerate(kept)}
        counts = np.array([df[w] for w in kept], dtype=np.float64)
        self.idf = np.log((1.0 + n) / (1.0 + counts)) + 1.0
        size = max(posts, default=-1) + 1
        vectors = self._vectorize(posts, tokens, size)
        # Readers come to the newest posts; an old post is linked to them from their side.
        newest = _without_rows(vectors, posts[:-NEWEST]) if len(posts) > NEWEST else vectors
        rows = _neighbours_of(newest, vectors, self.neighbours, square=True)
        similarity = rows.maximum(rows.T).tocsr()
        with self.lock:
            self.vectors, self.similarity = vectors, similarity
        self._built_with = n

    def _vectorize(
        self, posts: Sequence[int], tokens: Sequence[list[str]], size: int
    ) -> sp.csr_matrix:
        """Rows ``posts`` of a ``size`` × vocabulary matrix: the posts' TF-IDF vectors."""
        rows, cols, vals = [], [], []
        for post, toks in zip(posts, tokens, strict=True):
            known = [self.vocabulary[w] for w in toks if w in self.vocabulary]
            ids, tf = np.unique(np.asarray(known, dtype=np.int64), return_counts=True)
            if len(ids) == 0:
                continue
            weight = (1.0 + np.log(tf)) * self.idf[ids]
            rows.append(np.full(len(ids), post))
            cols.append(ids)
            vals.append(weight / np.linalg.norm(weight))
        if not rows:
            return sp.csr_matrix((size, len(self.vocabulary)))
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(size, len(self.vocabulary)),
        )

    def _link(self, posts: list[int]) -> None:
        """Vectorize ``posts`` with the vocabulary in force and link each to its most
        similar posts, both ways (an edited post's old links are replaced)."""
        size = max(self.vectors.shape[0], max(posts) + 1)
        present = [p for p in posts if p in self.texts]
        fresh = self._vectorize(present, [words(self.texts[p]) for p in present], size)
        others = _without_rows(_grown(self.vectors, size), posts)
        vectors = (others + fresh).tocsr()
        rows = _neighbours_of(fresh, vectors, self.neighbours, square=True)  # size × size
        kept = _without_rows(_grown(self.similarity, size), posts)
        kept = _without_rows(kept.T.tocsr(), posts).T.tocsr()  # nor links to them
        similarity = kept.maximum(rows).maximum(rows.T).tocsr()
        with self.lock:
            self.vectors, self.similarity = vectors, similarity

    def spread(self, items: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
        """Σ over ``items`` of weight × their posts' content similarity, per item index."""
        out = np.zeros(n)
        with self.lock:
            similarity = self.similarity
        held = items < similarity.shape[0]
        if not held.any() or similarity.nnz == 0:
            return out
        summed = np.asarray(similarity[items[held]].T @ weights[held]).ravel()
        m = min(n, len(summed))
        out[:m] = summed[:m]
        return out


def item_text(record: dict) -> str:
    """The words a catalog item offers: title, text, sections, tags and author."""
    parts = [record.get("title"), record.get("text"), record.get("author")]
    parts += list(record.get("categories") or []) + list(record.get("tags") or [])
    return " ".join(str(p) for p in parts if p)


def _neighbours_of(
    queries: sp.csr_matrix, vectors: sp.csr_matrix, k: int, square: bool, block: int = 2048
) -> sp.csr_matrix:
    """For each row of ``queries``, its ``k`` most cosine-similar rows of ``vectors`` (never
    itself, when ``square``), as a sparse rows × rows matrix; computed in blocks of rows so
    memory stays bounded whatever the catalog's size."""
    size = vectors.shape[0]
    wanted = np.flatnonzero(np.diff(queries.indptr))  # rows with any word
    indptr = np.zeros(queries.shape[0] + 1, dtype=np.int64)
    cols_out, data_out = [], []
    counts = np.zeros(queries.shape[0], dtype=np.int64)
    for lo in range(0, len(wanted), block):
        rows = wanted[lo : lo + block]
        scores = (queries[rows] @ vectors.T).tocsr()
        if square:
            scores = scores.tolil()
            scores[np.arange(len(rows)), rows] = 0
            scores = scores.tocsr()
        scores.eliminate_zeros()
        for r, row in enumerate(rows.tolist()):
            a, b = scores.indptr[r], scores.indptr[r + 1]
            data, cols = scores.data[a:b], scores.indices[a:b]
            if len(data) > k:
                best = np.argpartition(data, -k)[-k:]
                data, cols = data[best], cols[best]
            order = np.argsort(cols)
            cols_out.append(cols[order])
            data_out.append(data[order])
            counts[row] = len(data)
    if not data_out:
        return sp.csr_matrix((queries.shape[0], size))
    indptr[1:] = np.cumsum(counts)  # rows with words come in order; the others are empty
    return sp.csr_matrix(
        (np.concatenate(data_out), np.concatenate(cols_out), indptr),
        shape=(queries.shape[0], size),
    )


def _without_rows(matrix: sp.csr_matrix, rows: Sequence[int]) -> sp.csr_matrix:
    """``matrix`` with ``rows`` emptied."""
    keep = np.ones(matrix.shape[0])
    keep[[r for r in rows if r < matrix.shape[0]]] = 0.0
    return (sp.diags(keep) @ matrix).tocsr()


def _grown(matrix: sp.csr_matrix, rows: int) -> sp.csr_matrix:
    """``matrix`` with at least ``rows`` rows (and as many columns when it is square)."""
    if matrix.shape[0] >= rows:
        return matrix
    grown = matrix.copy()
    square = matrix.shape[0] == matrix.shape[1]
    grown.resize((rows, rows if square else matrix.shape[1]))
    return grown
