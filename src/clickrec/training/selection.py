"""Choosing what to publish by what serving does: every candidate is fitted before a cut
near the end of the data, then fed the events after it in time order, as live traffic, and
asked for each reader's list just before they first touch an item (the replay protocol of
``evaluation.replay``). Posts published after the cut are targets too, so the choice sees
what matters on a news site: how fresh trending is, and what reaches a post no model knew.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from clickrec.core.errors import NotEnoughData
from clickrec.evaluation.live import RecipeModel
from clickrec.evaluation.replay import Stream, first_touches, run
from clickrec.models.base import Interactions, RecipeParams
from clickrec.models.recipes import FitCache
from clickrec.models.scoring import Exploration

SELECT_METRIC = "mrr@20"
REPORTED = ("hr@10", "mrr@10", "hr@20", "mrr@20")
MAX_QUERIES = 1000  # first touches asked about, drawn with a fixed seed
ENOUGH_QUERIES = 200  # a window with fewer is widened (a smaller one is kept at the widest)
WIDEST = 0.8  # the newest share of events a replay may widen to
MAX_REPLAY_EVENTS = 200_000  # a window never replays more events than this


@dataclass(frozen=True)
class Replay:
    """The events a run replays: its stream, the cut, and how it was chosen."""

    stream: Stream
    cut: float
    window: float  # the share of the data's events after the cut
    new_item_share: float  # of the queried items, the share no event before the cut touched

    def describe(self) -> dict[str, float | str]:
        return {
            "protocol": "replay",
            "cut": self.cut,
            "window": self.window,
            "replayed_events": float(len(self.stream.events)),
            "queries": float(len(self.stream.queries)),
            "new_item_share": self.new_item_share,
        }


def windows(first: float) -> list[float]:
    """``first``, doubled up to WIDEST: the shares of the newest events a replay tries."""
    out = [first]
    while out[-1] * 2 <= WIDEST:
        out.append(out[-1] * 2)
    return out


def replay_window(data: Interactions, first: float = 0.1) -> Replay:
    """The newest ``first`` share of the events (at most MAX_REPLAY_EVENTS), doubled while
    fewer than ENOUGH_QUERIES first touches follow the cut: the newest readers may only come
    back to what they read before. NotEnoughData when no reader touches anything new."""
    best: Replay | None = None
    for window in windows(first):
        n = min(int(len(data) * window), MAX_REPLAY_EVENTS)
        if n < 1 or n >= len(data):
            continue
        cut = float(np.sort(data.timestamp)[len(data) - n])
        if cut <= float(data.timestamp.min()):
            continue  # nothing would be left to fit on
        try:
            stream = first_touches(data, cut, MAX_QUERIES, seed=0)
        except ValueError:
            continue
        best = Replay(stream, cut, window, _new_share(data, stream))
        if len(stream.queries) >= ENOUGH_QUERIES:
            break
    if best is None:
        raise NotEnoughData(
            "not enough data to choose a model: no reader touched an item new to them "
            f"in the newest {windows(first)[-1]:.0%} of the events"
        )
    return best


def _new_share(data: Interactions, stream: Stream) -> float:
    """Of the queried items, the share that no event before the cut touched."""
    known = np.zeros(data.n_items, dtype=bool)
    known[data.item[stream.train]] = True
    asked = data.item[stream.events[stream.queries]]
    return float((~known[asked]).mean()) if len(asked) else 0.0


@dataclass(frozen=True)
class ServingSetup:
    """How serving runs a model, for the replay to run it the same way."""

    item_facts: Mapping[str, tuple[float | None, list[str]]]
    exploration: Exploration
    trending_half_life_hours: float
    history_length: int
    seen_length: int


Progress = Callable[[str], None]


def replay_scores(
    configs: Sequence[tuple[str, str, RecipeParams]],
    data: Interactions,
    replay: Replay,
    setup: ServingSetup,
    cache: FitCache,
    progress: Progress = lambda name: None,
) -> dict[str, dict[str, float]]:
    """(name, recipe, params) → its replay figures (REPORTED), fitted through ``cache``."""
    published, categories = _catalog_columns(data, setup.item_facts)
    models = [
        RecipeModel(
            name,
            recipe,
            params,
            setup.trending_half_life_hours,
            setup.history_length,
            setup.seen_length,
            setup.exploration,
            published_at=published,
            categories=categories,
            cache=cache,
        )
        for name, recipe, params in configs
    ]
    results = run(models, data, replay.stream, ks=(10, 20), progress=progress)
    return {name: {k: figures[k] for k in REPORTED} for name, figures in results.items()}


def _catalog_columns(
    data: Interactions, facts: Mapping[str, tuple[float | None, list[str]]]
) -> tuple[np.ndarray, list[list[str]]]:
    """Publication time (NaN: unknown) and categories per item of ``data``."""
    published = np.full(data.n_items, np.nan)
    categories: list[list[str]] = [[] for _ in range(data.n_items)]
    for k, item_id in enumerate(data.item_ids.tolist()):
        fact = facts.get(str(item_id))
        if fact is not None:
            when, cats = fact
            published[k] = np.nan if when is None else when
            categories[k] = list(cats or [])
    return published, categories
