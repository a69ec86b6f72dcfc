"""Content similarity: posts that share words, for a post nobody has read yet."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from clickrec.models.base import RecipeParams
from clickrec.models.content import ContentIndex, item_text
from clickrec.models.online import state_from
from clickrec.models.recipes import fit
from clickrec.models.scoring import Exploration, Scorer, top_n
from clickrec.testing.synthetic import BlogSpec, generate_blog
from tests.blogdata import interactions_of

TOPICS = {
    "vote": "election parliament vote minister coalition ballot",
    "ball": "football striker goal match league referee",
    "food": "recipe pasta tomato basil oven dinner",
}


def _posts(n: int) -> list[str]:
    names = list(TOPICS)
    return [f"{TOPICS[names[k % 3]]} story{k} extra{k}" for k in range(n)]


def neighbours(index: ContentIndex, post: int) -> set[int]:
    return set(index.similarity[post].indices.tolist())


def test_posts_that_share_words_are_neighbours_and_others_are_not() -> None:
    index = ContentIndex(neighbours=5)
    index.set_texts(list(range(30)), _posts(30))
    assert neighbours(index, 0) and all(k % 3 == 0 for k in neighbours(index, 0))
    assert 0 not in neighbours(index, 0)


def test_a_new_post_is_linked_both_ways_without_a_rebuild() -> None:
    index = ContentIndex(neighbours=5, rebuild_growth=0.5)
    index.set_texts(list(range(30)), _posts(30))
    built = index.vocabulary
    index.set_texts([30], ["the striker scored a late goal in the league match"])
    assert index.vocabulary is built  # linked with the vocabulary in force
    assert neighbours(index, 30) and all(k % 3 == 1 for k in neighbours(index, 30))
    assert not index.maintain()  # 1 post in 30 is not the half that calls for a rebuild
    assert any(30 in neighbours(index, k) for k in neighbours(index, 30))
    reader_of = min(neighbours(index, 30))  # whoever read one of its neighbours…
    spread = index.spread(np.array([reader_of]), np.array([1.0]), 31)
    assert spread[30] > 0  # …is pointed to the new post


def test_an_edited_post_moves_and_a_deleted_one_leaves() -> None:
    index = ContentIndex(neighbours=5, rebuild_growth=0.5)
    index.set_texts(list(range(30)), _posts(30))
    index.set_texts([0], ["pasta tomato basil oven dinner recipe"])  # was about the vote
    assert neighbours(index, 0) and all(k % 3 == 2 for k in neighbours(index, 0))
    assert not any(0 in neighbours(index, k) for k in (3, 6, 9))
    index.set_texts([0], [""])
    assert not neighbours(index, 0) and not any(0 in neighbours(index, k) for k in range(30))


def test_item_text_takes_title_text_sections_tags_and_author() -> None:
    record = {"title": "Cup final", "text": "a late goal", "categories": ["sport"], "tags": ["cup"]}
    assert item_text({**record, "author": "ana", "url": "https://x"}) == (
        "Cup final a late goal ana sport cup"
    )


def test_a_post_nobody_read_reaches_the_readers_of_posts_like_it() -> None:
    data = interactions_of(generate_blog(BlogSpec(users=200, days=4, seed=2)).interactions)
    params = RecipeParams()
    artifact = fit("user-personalization", data, params)
    state = state_from(data, {}, trending_half_life_hours=6.0, history_length=50)
    ids = [str(i) for i in data.item_ids]
    texts = [f"post {i} about topic{k % 7} and words{k % 11}" for k, i in enumerate(ids)]
    read = ids[5]
    new = state.index_of("brand-new")
    state.content.set_texts(
        [state.item_index[i] for i in ids] + [new], [*texts, texts[5] + " update"]
    )
    state.observe(["u:me"], [read], [float(data.timestamp.max()) + 60])

    def rank(weight: float) -> int:
        model = replace(artifact, params=replace(params, content_weight=weight))
        scorer = Scorer(model, state, Exploration(weight=0.0))
        order = [state.item_ids[i] for i in top_n(scorer.for_reader("u:me").values, 100)]
        return order.index("brand-new") if "brand-new" in order else 100

    assert rank(1.0) < 10 <= rank(0.0)


def test_a_catalog_that_grew_a_tenth_is_rebuilt_by_maintain() -> None:
    index = ContentIndex(neighbours=5)
    index.set_texts(list(range(30)), _posts(30))
    index.set_texts(list(range(30, 36)), _posts(36)[30:])  # linked at once…
    assert neighbours(index, 33) and index.due
    assert index.maintain() and not index.due  # …and rebuilt off the request path
    assert all(k % 3 == 0 for k in neighbours(index, 33))
