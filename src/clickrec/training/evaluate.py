"""Offline evaluation on a time holdout, through the same scorer that serving uses."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from clickrec.evaluation.metrics import rank_metrics, top_popular
from clickrec.evaluation.split import TemporalSplit
from clickrec.models.base import Interactions, RecipeParams
from clickrec.models.online import state_from
from clickrec.models.recipes import FitCache, fit, fit_cached
from clickrec.models.scoring import Exploration, Scorer, top_n

K = 20


def evaluate_recipe(
    recipe: str,
    params: RecipeParams,
    data: Interactions,
    split: TemporalSplit,
    item_facts: Mapping[str, tuple[float | None, list[str]]],
    exploration: Exploration,
    trending_half_life_hours: float,
    history_length: int,
    max_readers: int = 2000,
    seed: int = 0,
    seen_length: int = 500,
    cache: FitCache | None = None,
) -> dict[str, float]:
    """Fit on the part before the cut, rank the full catalog for test readers, score.
    ``cache``: shared by the candidates of one split (see ``fit_cached``)."""
    train = data.subset(split.train)
    artifact = (
        fit(recipe, train, params) if cache is None else fit_cached(recipe, train, params, cache)
    )
    state = state_from(train, item_facts, trending_half_life_hours, history_length, seen_length)
    scorer = Scorer(artifact, state, exploration)
    readers = split.test_readers
    if len(readers) > max_readers:
        readers = np.sort(np.random.default_rng(seed).choice(readers, max_readers, replace=False))
    recommended = np.full((len(readers), K), -1, dtype=np.int64)
    for row, r in enumerate(readers):
        scores = scorer.for_reader(str(data.reader_ids[r]))
        idx = top_n(scores.values[: data.n_items], K)
        recommended[row, : len(idx)] = idx
    popular = top_popular(train.item, data.n_items)
    metrics = rank_metrics(
        recommended,
        split.targets,
        readers,
        (5, 10, 20),
        n_items=data.n_items,
        popular_items=popular,
    )
    metrics["test_readers"] = float(len(readers))
    return metrics
