"""The pipeline's choice is made on a replay: its window, and its lockstep run of every
candidate over one online state, which must score exactly as replaying each alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from clickrec.core.errors import NotEnoughData
from clickrec.evaluation.live import RecipeModel
from clickrec.evaluation.replay import run
from clickrec.models.base import Interactions, RecipeParams
from clickrec.models.scoring import Exploration
from clickrec.testing.synthetic import BlogSpec
from clickrec.training.dataset import to_interactions
from clickrec.training.selection import ServingSetup, replay_scores, replay_window, windows
from tests.blogdata import Facts, blog_data


@pytest.fixture(scope="module")
def blog() -> tuple[Interactions, Facts]:
    return blog_data(BlogSpec(users=1000, days=5, seed=4))


def test_windows_double_up_to_the_widest() -> None:
    assert windows(0.1) == [0.1, 0.2, 0.4, 0.8]
    assert windows(0.3) == [0.3, 0.6]


def test_the_replay_asks_before_first_touches_and_counts_new_posts(blog) -> None:  # type: ignore[no-untyped-def]
    data, _ = blog
    replay = replay_window(data, 0.1)
    stream = replay.stream
    assert replay.window == 0.1 and len(stream.queries) >= 200
    assert (data.timestamp[stream.events] >= replay.cut).all()
    asked = data.item[stream.events[stream.queries]]
    known = np.isin(asked, data.item[stream.train])
    assert replay.new_item_share == pytest.approx(float((~known).mean()))
    assert 0 < replay.new_item_share < 1  # a blog: some targets were published after the cut


def test_a_stream_without_anything_new_is_not_enough_data() -> None:
    """Four readers read ten posts each, then only come back to them (a load test of
    re-reads): no window up to the widest holds a first touch."""
    first = [(r, i) for r in range(4) for i in range(10)]
    rows = first + first * 5
    table = pa.table(
        {
            "user_id": [f"u{r}" for r, _ in rows],
            "session_id": [f"s{r}" for r, _ in rows],
            "item_id": [f"p{i}" for _, i in rows],
            "event_type": ["read"] * len(rows),
            "timestamp": np.arange(len(rows), dtype=float),
            "seq": np.arange(1, len(rows) + 1),
        }
    )
    with pytest.raises(NotEnoughData, match="no reader touched an item new to them"):
        replay_window(to_interactions(table), 0.1)


def test_lockstep_scores_equal_a_replay_of_each_candidate_alone(blog) -> None:  # type: ignore[no-untyped-def]
    data, facts = blog
    replay = replay_window(data, 0.1)
    base = RecipeParams()
    configs = [
        ("trending", "trending-now", replace(base, trending_half_life_hours=1.0)),
        ("within", "user-personalization", replace(base, blend="product", fresh_weight=1.0)),
        ("sections", "user-personalization", replace(base, blend="product", category_weight=1.0)),
    ]
    setup = ServingSetup(facts, Exploration(), 6.0, 50, 500)
    together = replay_scores(configs, data, replay, setup, {})
    published = np.array([facts[str(i)][0] for i in data.item_ids], dtype=float)
    sections = [facts[str(i)][1] for i in data.item_ids]
    alone = run(
        [
            RecipeModel(name, recipe, params, 6.0, 50, 500, Exploration(), 0.0, published, sections)
            for name, recipe, params in configs
        ],
        data,
        replay.stream,
        ks=(10, 20),
    )
    for name, _, _ in configs:
        for metric in ("hr@10", "mrr@10", "hr@20", "mrr@20"):
            assert together[name][metric] == pytest.approx(alone[name][metric]), (name, metric)
