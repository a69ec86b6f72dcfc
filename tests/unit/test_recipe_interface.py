"""The recipe interface: a recipe is one class and one registry entry; the rest of clickrec
(fit, the fit cache, scoring, the replay, saved artifacts) finds it by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from clickrec.evaluation.live import RecipeModel
from clickrec.models.base import Artifact, Interactions, RecipeParams
from clickrec.models.online import state_from
from clickrec.models.recipes import (
    RECIPES,
    Parts,
    Recipe,
    fit,
    fit_cached,
    popularity,
    recipe_named,
)
from clickrec.models.scoring import Exploration, Scorer
from clickrec.testing.synthetic import BlogSpec
from clickrec.training.pipeline import candidates
from clickrec.training.selection import ServingSetup, replay_scores, replay_window
from tests.blogdata import blog_data

NAME = "trained-counts"
Blog = tuple[Interactions, dict[str, tuple[float | None, list[str]]]]


class TrainedCounts(Recipe):
    """Ranks by the counts fitted at training time, which no built-in recipe scores by."""

    name = NAME

    def fit(self, data: Interactions, params: RecipeParams) -> Artifact:
        until = float(data.timestamp.max())
        pop = popularity(data, until, params.half_life_hours)
        sim = sp.csr_matrix((data.n_items, data.n_items), dtype=np.float32)
        return Artifact(self.name, data.item_ids, pop, sim, until, params)

    def score(
        self,
        scorer: Scorer,
        params: RecipeParams,
        history: np.ndarray,
        trending: np.ndarray,
        bonus: np.ndarray,
    ) -> tuple[np.ndarray, Parts]:
        assert scorer.artifact is not None
        counts = np.zeros(len(trending))
        live = scorer.live_of_model
        inside = live < len(counts)
        counts[live[inside]] = scorer.artifact.popularity[inside]
        return counts + bonus, (("counts", counts), ("bonus", bonus))


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Recipe:
    recipe = TrainedCounts()
    monkeypatch.setitem(RECIPES, NAME, recipe)
    return recipe


@pytest.fixture(scope="module")
def blog() -> Blog:
    return blog_data(BlogSpec(users=300, days=4, seed=5))


def test_the_registry_lists_exactly_the_known_recipes() -> None:
    assert list(RECIPES) == [
        "trending-now",
        "popularity-count",
        "similar-items",
        "user-personalization",
    ]
    assert all(RECIPES[name].name == name for name in RECIPES)


def test_every_pipeline_candidate_names_a_registered_recipe() -> None:
    assert {c.recipe for c in candidates(RecipeParams())} <= set(RECIPES)


def test_an_unknown_recipe_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        recipe_named("nope")


def test_a_model_of_a_recipe_this_version_does_not_know_is_served_as_trending(
    blog: Blog, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer version published it, then this one was rolled back: answers go on."""
    data, facts = blog
    artifact = fit("trending-now", data, RecipeParams())
    artifact.recipe = "from-the-future"
    state = state_from(data, facts, 6.0, 50, 500)
    scorer = Scorer(artifact, state, Exploration())
    trending = Scorer(None, state, Exploration())
    reader = str(data.reader_ids[0])
    assert np.array_equal(scorer.for_reader(reader).values, trending.for_reader(reader).values)
    assert "unknown recipe 'from-the-future'" in caplog.text


def test_a_registered_recipe_is_fitted_saved_and_scored_by_name(
    registered: Recipe, blog: Blog, tmp_path: Path
) -> None:
    data, facts = blog
    artifact = fit(NAME, data, RecipeParams(half_life_hours=1e9))
    artifact.save(tmp_path)
    loaded = Artifact.load(tmp_path)
    assert loaded.recipe == NAME

    state = state_from(data, facts, 6.0, 50, 500)
    most_read = int(np.bincount(data.item).argmax())
    reader = str(data.reader_ids[np.setdiff1d(data.reader, data.reader[data.item == most_read])[0]])
    scores = Scorer(loaded, state, Exploration(weight=0.0)).for_reader(reader)

    assert scores.recipe == NAME
    assert [name for name, _ in scores.parts] == ["counts", "bonus"]
    assert state.item_ids[int(np.argmax(scores.values))] == data.item_ids[most_read]
    assert np.isneginf(scores.values[state.seen(reader)]).all()


def test_the_fit_cache_never_hands_a_new_recipe_a_built_in_fit(
    registered: Recipe, blog: Blog
) -> None:
    data, _ = blog
    cache: dict[tuple[object, ...], Artifact] = {}
    trending = fit_cached("trending-now", data, RecipeParams(), cache)
    mine = fit_cached(NAME, data, RecipeParams(), cache)
    assert (trending.recipe, mine.recipe) == ("trending-now", NAME)
    assert len(cache) == 2


def test_a_registered_recipe_runs_in_the_pipeline_replay_and_the_offline_model(
    registered: Recipe, blog: Blog
) -> None:
    data, facts = blog
    replay = replay_window(data, 0.1)
    setup = ServingSetup(facts, Exploration(), 6.0, 50, 500)
    configs = [("mine", NAME, RecipeParams()), ("trending", "trending-now", RecipeParams())]
    figures = replay_scores(configs, data, replay, setup, {})
    assert figures["mine"]["mrr@20"] != figures["trending"]["mrr@20"]  # really scored its way

    model = RecipeModel("mine", NAME)
    model.fit(data)
    assert len(model.recommend(0, 10, np.zeros(0, dtype=np.int64))) == 10
