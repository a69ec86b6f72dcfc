"""Choosing what to publish by what serving does: every candidate is fitted before a cut
near the end of the data, then fed the events after it in time order, as live traffic, and
asked for each reader's list just before they first touch an item (the replay protocol of
``evaluation.replay``). Posts published after the cut are targets too, so the choice sees
what matters on a news site: how fresh trending is, and what reaches a post no model knew.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from clickrec.core.errors import NotEnoughData
from clickrec.evaluation.live import ReaderItems
from clickrec.evaluation.replay import Stream, first_touches, rates
from clickrec.models.base import Interactions, RecipeParams
from clickrec.models.online import state_from
from clickrec.models.recipes import FitCache, fit_cached
from clickrec.models.scoring import Exploration, Scorer, top_n

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
    item_texts: Mapping[str, str] = field(default_factory=dict)  # words per item id


Progress = Callable[[str], None]


def replay_scores(
    configs: Sequence[tuple[str, str, RecipeParams]],
    data: Interactions,
    replay: Replay,
    setup: ServingSetup,
    cache: FitCache,
    progress: Progress = lambda name: None,
) -> dict[str, dict[str, float]]:
    """(name, recipe, params) → its replay figures (REPORTED), fitted through ``cache``.

    Every candidate reads the same online state (what serving keeps does not depend on the
    model), so the state is built and fed once and each candidate's scorer is asked at each
    query: the same answers as replaying each alone (``evaluation.replay.run`` with a
    ``RecipeModel`` apiece), for one state's cost instead of one per candidate."""
    stream = replay.stream
    train = data.subset(stream.train)
    progress("fit")
    artifacts = [fit_cached(recipe, train, params, cache) for _, recipe, params in configs]
    known = setup.item_facts
    facts = {  # what the catalog says of each item of the data; nothing known: nothing said
        item_id: (when, list(cats or []))
        for item_id in map(str, data.item_ids.tolist())
        for when, cats in [known.get(item_id, (None, []))]
    }
    state = state_from(
        train, facts, setup.trending_half_life_hours, setup.history_length, setup.seen_length
    )
    texts = [(state.item_index[i], t) for i, t in setup.item_texts.items() if i in state.item_index]
    state.content.set_texts([k for k, _ in texts], [t for _, t in texts])
    scorers = [Scorer(artifact, state, setup.exploration) for artifact in artifacts]
    progress("replay")
    k = 20
    ranks = np.zeros((len(configs), len(stream.queries)), dtype=np.int64)
    touched = ReaderItems.of(train)
    readers, items = data.reader_ids, data.item_ids
    fed = 0
    for q, pos in enumerate(stream.queries.tolist()):
        chunk = stream.events[fed:pos]
        if len(chunk):
            state.observe(
                readers[data.reader[chunk]].tolist(),
                items[data.item[chunk]].tolist(),
                data.timestamp[chunk].tolist(),
            )
            touched.add(data.reader[chunk], data.item[chunk])
        fed = pos
        event = stream.events[pos]
        reader = int(data.reader[event])
        exclude = np.unique(touched.items(reader))
        target = int(data.item[event])
        for m, scorer in enumerate(scorers):
            values = scorer.for_reader(str(readers[reader])).values[: data.n_items]
            values[exclude] = -np.inf
            where = np.flatnonzero(top_n(values, k) == target)
            ranks[m, q] = int(where[0]) + 1 if len(where) else 0
    return {
        name: {key: figures[key] for key in REPORTED}
        for (name, _, _), figures in zip(configs, (rates(r, (10, 20)) for r in ranks), strict=True)
    }
