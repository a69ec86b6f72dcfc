"""Leave-last-out, the protocol of the sequential-recommendation literature (SASRec,
RecBole's full ranking): hold out each reader's last interaction by time, fit on all the
rest, rank the full catalog for each reader with every item they touched excluded, and
score the held-out item's rank, ties counted against it. HR@k, NDCG@k and MRR@k.

There is no time cut: the other readers' later events are in the training part, and a
reader's "now" is the newest event of the data, not their own last one. So the figures
compare with the literature's, not with serving (``replay`` measures that).

A model that exposes its scores (``Scored``: ``scores(reader)``) is ranked on them, so a
target tied with other items ranks below all of them; any other ``LiveModel`` is ranked on
its ``recommend`` list, whose order among ties is its own (``ties_counted`` says which).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from clickrec.evaluation.baselines import LivePopularity
from clickrec.evaluation.live import LiveModel, ReaderItems, RecipeModel
from clickrec.evaluation.replay import checked
from clickrec.models.base import Interactions

KS = (10, 20)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class LastItems:
    """What models fit on, and the held-out last item of each reader asked."""

    train: np.ndarray  # bool per event of the data: all but the held-out events
    readers: np.ndarray  # int64 readers asked, ascending
    targets: np.ndarray  # int64 held-out item of each reader asked
    repeats: int  # readers not asked: their last item was one they had touched before


def last_items(data: Interactions) -> LastItems:
    """Each reader's last event by time (among events at the same time, the later in
    ``data``) is held out, when the reader has an earlier event and the item is new to
    them; otherwise all their events train (a lone event, or a re-read, predicts nothing)."""
    n = len(data)
    order = np.lexsort((np.arange(n), data.timestamp, data.reader))
    readers = data.reader[order]
    is_last = np.r_[readers[1:] != readers[:-1], True] if n else np.zeros(0, dtype=bool)
    has_earlier = np.r_[False, readers[1:] == readers[:-1]] if n else np.zeros(0, dtype=bool)
    last = order[is_last & has_earlier]
    held = np.zeros(n, dtype=bool)
    held[last] = True
    keys = data.reader.astype(np.int64) * data.n_items + data.item
    repeat = np.isin(keys[last], keys[~held])
    held[last[repeat]] = False
    last = last[~repeat]
    by_reader = np.argsort(data.reader[last], kind="stable")
    return LastItems(
        train=~held,
        readers=data.reader[last][by_reader].astype(np.int64),
        targets=data.item[last][by_reader].astype(np.int64),
        repeats=int(repeat.sum()),
    )


@runtime_checkable
class Scored(Protocol):
    """A model that can tell its score for every item, so ties can be counted."""

    def scores(self, reader: int) -> np.ndarray:
        """A score per item of the fitted data, higher is better (-inf: never shown)."""
        ...


class ScoredRecipeModel(RecipeModel):
    """A ``RecipeModel`` that also gives the serving scorer's full score vector."""

    def scores(self, reader: int) -> np.ndarray:
        values = self._scorer.for_reader(str(self._reader_ids[reader])).values
        return values[: len(self._item_ids)]


class ScoredPopularity(LivePopularity):
    """A ``LivePopularity`` that also gives its counts as scores."""

    def scores(self, reader: int) -> np.ndarray:
        return self._scores.copy()


def target_rank(scores: np.ndarray, target: int, exclude: np.ndarray) -> int:
    """1-based rank of ``target`` among the items not in ``exclude``: every other item
    that scores at least as much ranks above it (ties count against it; NaN is -inf)."""
    values = np.where(np.isnan(scores), -np.inf, scores)
    rivals = np.ones(len(values), dtype=bool)
    rivals[exclude] = False
    rivals[target] = False
    return 1 + int(np.count_nonzero(values[rivals] >= values[target]))


def rates(ranks: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """HR@k, NDCG@k and MRR@k of one target per reader, from 1-based ranks (0: not in
    the list). With one relevant item, NDCG@k is 1 / log2(rank + 1) within k."""
    out: dict[str, float] = {}
    found = ranks > 0
    for k in ks:
        hit = found & (ranks <= k)
        safe = np.maximum(ranks, 1)
        out[f"hr@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(safe + 1.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / safe, 0.0).mean())
    return out


def ranks_of(
    model: LiveModel,
    readers: np.ndarray,
    targets: np.ndarray,
    excludes: Sequence[np.ndarray],
    k: int,
    n_items: int,
) -> np.ndarray:
    """The rank of each reader's target, the model fitted already: on its scores (one per
    item of ``n_items``) when it is ``Scored``, else in its top ``k`` (0 where the list
    leaves the target out)."""
    ranks = np.zeros(len(readers), dtype=np.int64)
    scored = model if isinstance(model, Scored) else None
    for row, (reader, target) in enumerate(zip(readers.tolist(), targets.tolist(), strict=True)):
        exclude = excludes[row]
        if scored is not None:
            values = scored.scores(reader)
            if values.shape != (n_items,):
                raise ValueError(f"{model.name}: scores has shape {values.shape}, not ({n_items},)")
            ranks[row] = target_rank(values, target, exclude)
            continue
        top = checked(model, model.recommend(reader, k, exclude), exclude, k)
        where = np.flatnonzero(top == target)
        ranks[row] = int(where[0]) + 1 if len(where) else 0
    return ranks


def run(
    models: Sequence[LiveModel],
    data: Interactions,
    split: LastItems | None = None,
    ks: Sequence[int] = KS,
    max_readers: int | None = None,
    seed: int = 0,
    progress: Progress = lambda step: None,
) -> dict[str, dict[str, float]]:
    """Per model: ``hr@k``, ``ndcg@k`` and ``mrr@k`` for each k, ``readers`` asked,
    ``ties_counted`` (1: ranked on its scores; 0: on its list), ``fit_s`` and ``rank_s``.

    ``split``: ``last_items(data)`` when None. ``max_readers``: that many of the readers
    asked, drawn with ``seed`` (all when None). No event is observed after the fit."""
    split = last_items(data) if split is None else split
    if len(split.readers) == 0:
        raise ValueError("no reader has a new item after an earlier one: nothing to hold out")
    asked = np.arange(len(split.readers))
    if max_readers is not None and len(asked) > max_readers:
        asked = np.sort(np.random.default_rng(seed).choice(asked, max_readers, replace=False))
    train = data.subset(split.train)
    readers, targets = split.readers[asked], split.targets[asked]
    touched = ReaderItems.of(train)
    excludes = [np.unique(touched.items(reader)) for reader in readers.tolist()]
    results: dict[str, dict[str, float]] = {}
    for model in models:
        progress(model.name)
        started = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - started
        ranks = ranks_of(model, readers, targets, excludes, max(ks), data.n_items)
        results[model.name] = {
            **rates(ranks, ks),
            "readers": float(len(asked)),
            "ties_counted": float(isinstance(model, Scored)),
            "fit_s": fit_s,
            "rank_s": time.perf_counter() - started - fit_s,
        }
    return results
