"""Protocols that drive ``LiveModel``s over the same events, so their scores compare.

- ``replay`` (``first_touches``): fit before a global time cut, then feed every later event
  in time order, as live traffic arrives; before each sampled event that is a reader's
  first touch of an item, ask for the reader's top k. HR@k and MRR@k.
- next click (``session_clicks``): fit on the training sessions, feed the test sessions'
  clicks in time order; before each click after the first of a sampled session, ask for
  the session's top k (session-rec's task; a repeated item is a miss, as it is never shown).
- ``holdout``: the pipeline's temporal holdout (``evaluation.split.temporal_split``): fit
  before the cut, rank once per test reader, score the items new to them after the cut.

Every model gets the same events through the same calls, and the same exclusion: every
item the reader touched so far (training part included) is passed as ``exclude``, and a
model that recommends one of them, or an item twice, is an error.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from clickrec.evaluation.live import LiveModel, ReaderItems
from clickrec.evaluation.metrics import rank_metrics, top_popular
from clickrec.evaluation.split import TemporalSplit
from clickrec.models.base import Interactions

KS = (5, 10, 20)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Stream:
    """What models fit on, the events replayed after it, and the ones asked about."""

    train: np.ndarray  # bool per event of the data: the part every model is fitted on
    events: np.ndarray  # int64 indices into the data of the replayed events, in time order
    queries: np.ndarray  # sorted int64 positions in ``events``: asked for just before fed
    cold: np.ndarray  # bool per query: the reader has touched nothing before it


def first_touches(data: Interactions, cut: float, max_events: int = 5000, seed: int = 0) -> Stream:
    """The replay stream: events at or after ``cut``; queries are up to ``max_events``
    (drawn with ``seed``) of those that are a reader's first touch of an item."""
    train = data.timestamp < cut
    events = np.flatnonzero(~train)
    if len(events) == 0:
        raise ValueError(f"no events at or after the cut ({cut})")
    keys = data.reader.astype(np.int64) * data.n_items + data.item
    stream_keys = keys[events]
    _, first = np.unique(stream_keys, return_index=True)
    is_first = np.zeros(len(events), dtype=bool)
    is_first[first] = True
    is_first &= ~np.isin(stream_keys, keys[train])
    candidates = np.flatnonzero(is_first)
    if len(candidates) == 0:
        raise ValueError("no reader touched a new item after the cut: nothing to ask")
    queries = _sample(candidates, max_events, seed)
    return Stream(train, events, queries, _cold(data, train, events, queries))


def session_clicks(
    data: Interactions, test: np.ndarray, max_sessions: int = 5000, seed: int = 0
) -> Stream:
    """The next-click stream: the ``test`` events (bool per event) in time order; queries
    are the clicks after the first of up to ``max_sessions`` sampled test sessions."""
    events = np.flatnonzero(test)
    sessions = data.session[events]
    _, first = np.unique(sessions, return_index=True)
    after_first = np.ones(len(events), dtype=bool)
    after_first[first] = False
    eligible = np.unique(sessions[after_first])
    if len(eligible) == 0:
        raise ValueError("no test session has two clicks or more: nothing to predict")
    chosen = _sample(eligible, max_sessions, seed)
    queries = np.flatnonzero(after_first & np.isin(sessions, chosen))
    return Stream(~test, events, queries, _cold(data, ~test, events, queries))


def late_sessions(data: Interactions, fraction: float) -> np.ndarray:
    """Bool per event: its session ends in the last ``fraction`` of session end times
    (the test sessions of ``training.offline.session_next_click``)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    ends = np.full(int(data.session.max()) + 1, -np.inf)
    np.maximum.at(ends, data.session, data.timestamp)
    cut = float(np.quantile(ends[np.isfinite(ends)], 1.0 - fraction))
    return ends[data.session] >= cut


def _sample(candidates: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(candidates) <= n:
        return np.sort(candidates)
    return np.sort(np.random.default_rng(seed).choice(candidates, n, replace=False))


def _cold(
    data: Interactions, train: np.ndarray, events: np.ndarray, queries: np.ndarray
) -> np.ndarray:
    """Whether each query is its reader's very first event (nothing to personalize on)."""
    readers = data.reader[events]
    _, first = np.unique(readers, return_index=True)
    is_first = np.zeros(len(events), dtype=bool)
    is_first[first] = True
    known = np.zeros(data.n_readers, dtype=bool)
    known[data.reader[train]] = True
    return is_first[queries] & ~known[readers[queries]]


def run(
    models: Sequence[LiveModel],
    data: Interactions,
    stream: Stream,
    ks: Sequence[int] = KS,
    progress: Progress = lambda step: None,
    contexts: Sequence[dict[str, str] | None] | None = None,
    answers: Callable[[str, int, np.ndarray], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Per model: ``hr@k`` and ``mrr@k`` for each k, ``sampled`` queries, ``observed``
    events, ``cold_share`` of queries, and its ``fit_s`` and ``replay_s`` seconds.

    ``contexts`` (one context map per event of ``data``, or None) go to the models that
    use them (``uses_context``): with every event fed, and with each query the context of
    the event asked about (the request comes from where the reader is). ``answers`` is
    told (model name, query number, its top k) for each query, for reports of its own."""
    results: dict[str, dict[str, float]] = {}
    for model in models:
        progress(model.name)
        started = time.perf_counter()
        told = None if answers is None else functools.partial(answers, model.name)
        ranks, observed, fit_s = _ranks(model, data, stream, max(ks), contexts, told)
        results[model.name] = {
            **rates(ranks, ks),
            "sampled": float(len(stream.queries)),
            "observed": float(observed),
            "cold_share": float(stream.cold.mean()) if len(stream.cold) else 0.0,
            "fit_s": fit_s,
            "replay_s": time.perf_counter() - started - fit_s,
        }
    return results


def rates(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """HR@k and MRR@k from 1-based ranks (0 = not in the list)."""
    out: dict[str, float] = {}
    found = ranks > 0
    for k in ks:
        hit = found & (ranks <= k)
        out[f"hr@{k}"] = float(hit.mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / np.maximum(ranks, 1), 0.0).mean())
    return out


def _ranks(
    model: LiveModel,
    data: Interactions,
    stream: Stream,
    k: int,
    contexts: Sequence[dict[str, str] | None] | None = None,
    told: Callable[[int, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, int, float]:
    """1-based rank of each query's item in the model's top ``k``; events fed; fit seconds."""
    started = time.perf_counter()
    train = data.subset(stream.train)
    aware: Any = model if contexts is not None and getattr(model, "uses_context", False) else None
    if aware is not None:
        assert contexts is not None
        aware.fit(train, [contexts[j] for j in np.flatnonzero(stream.train).tolist()])
    else:
        model.fit(train)
    fit_s = time.perf_counter() - started
    touched = ReaderItems.of(train)
    ranks = np.zeros(len(stream.queries), dtype=np.int64)
    fed = 0

    def feed(until: int) -> None:
        chunk = stream.events[fed:until]
        if len(chunk) and aware is not None:
            assert contexts is not None
            seen = [contexts[j] for j in chunk.tolist()]
            aware.observe(data.reader[chunk], data.item[chunk], data.timestamp[chunk], seen)
        elif len(chunk):
            model.observe(data.reader[chunk], data.item[chunk], data.timestamp[chunk])
            touched.add(data.reader[chunk], data.item[chunk])

    for q, pos in enumerate(stream.queries.tolist()):
        feed(pos)
        fed = pos
        event = stream.events[pos]
        reader = int(data.reader[event])
        exclude = np.unique(touched.items(reader))
        if aware is not None:
            assert contexts is not None
            answer = aware.recommend(reader, k, exclude, contexts[event])
        else:
            answer = model.recommend(reader, k, exclude)
        top = checked(model, answer, exclude, k)
        if told is not None:
            told(q, top)
        where = np.flatnonzero(top == data.item[event])
        ranks[q] = int(where[0]) + 1 if len(where) else 0
    feed(len(stream.events))
    return ranks, len(stream.events), fit_s


def checked(model: LiveModel, top: np.ndarray, exclude: np.ndarray, k: int) -> np.ndarray:
    """``top`` as int64, or ValueError if it breaks the ``recommend`` contract."""
    top = np.asarray(top, dtype=np.int64)
    if top.ndim != 1 or len(top) > k:
        raise ValueError(f"{model.name}: recommend returned shape {top.shape}, k={k}")
    if len(np.unique(top)) != len(top):
        raise ValueError(f"{model.name}: recommend listed an item twice: {top.tolist()}")
    if np.isin(top, exclude).any():
        raise ValueError(f"{model.name}: recommend listed an excluded item: {top.tolist()}")
    return top


def holdout(
    models: Sequence[LiveModel],
    data: Interactions,
    split: TemporalSplit,
    max_readers: int = 2000,
    seed: int = 0,
    ks: Sequence[int] = KS,
    progress: Progress = lambda step: None,
) -> dict[str, dict[str, float]]:
    """The temporal holdout per model: ``rank_metrics`` at ``ks`` over up to
    ``max_readers`` test readers (drawn with ``seed``), each excluding all they read before
    the cut; plus ``test_readers`` and ``fit_s``. No event after the cut is observed."""
    train = data.subset(split.train)
    readers = split.test_readers
    if len(readers) > max_readers:
        readers = np.sort(np.random.default_rng(seed).choice(readers, max_readers, replace=False))
    touched = ReaderItems.of(train)
    excludes = [np.unique(touched.items(int(r))) for r in readers]
    popular = top_popular(train.item, data.n_items)
    k = max(ks)
    results: dict[str, dict[str, float]] = {}
    for model in models:
        progress(model.name)
        started = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - started
        recommended = np.full((len(readers), k), -1, dtype=np.int64)
        for row, (reader, exclude) in enumerate(zip(readers.tolist(), excludes, strict=True)):
            top = checked(model, model.recommend(reader, k, exclude), exclude, k)
            recommended[row, : len(top)] = top
        metrics = rank_metrics(
            recommended, split.targets, readers, ks, n_items=data.n_items, popular_items=popular
        )
        results[model.name] = {
            **metrics,
            "test_readers": float(len(readers)),
            "fit_s": fit_s,
            "rank_s": time.perf_counter() - started - fit_s,
        }
    return results
