"""Reasons: which term of a score an item is said to be there for."""

from __future__ import annotations

import numpy as np

from clickrec.serving.explain import Explainer


def _reasons(personal: float, trending: float, bonus: float = 0.0) -> str:
    explainer = Explainer(["read", "listed"], [{"title": "A read"}, {"title": "Listed"}])
    parts = (
        ("personal", np.array([0.0, personal])),
        ("trending", np.array([0.0, trending])),
        ("bonus", np.array([0.0, bonus])),
    )
    return explainer.scored(np.array([1]), parts, np.array([0]), None)[0]


def test_the_readers_own_reads_are_named_when_they_add_half_as_much_as_the_most() -> None:
    # Within trending, taste multiplies trending: personal = trending x taste <= trending.
    assert _reasons(personal=0.3, trending=0.5) == 'because you read "A read"'
    assert _reasons(personal=0.2, trending=0.5) == "trending now"
    assert _reasons(personal=0.9, trending=0.5) == 'because you read "A read"'
    assert _reasons(personal=0.1, trending=0.05, bonus=0.3).startswith("exploration")
    assert _reasons(personal=0.0, trending=0.0) == "new"
