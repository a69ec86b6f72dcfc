"""Why an item is in a list, in words a reader or an editor understands.

Each reason names the term that contributed most to the item's score: the reader's own
reads (and which one; named too when they add at least half as much as the largest term),
what is trending (and where), or the exploration of new posts.
Only the items returned are explained, so it costs little per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from clickrec.models.scoring import NEWEST_TIEBREAK

_TITLE_CHARS = 80
PERSONAL_SHARE = 0.5  # see Explainer.scored


def title_of(fields: dict[str, Any] | None, item_id: str) -> str:
    title = (fields or {}).get("title")
    text = title if isinstance(title, str) and title.strip() else item_id
    return text if len(text) <= _TITLE_CHARS else text[: _TITLE_CHARS - 1] + "…"


def first_category(fields: dict[str, Any] | None) -> str | None:
    cats = (fields or {}).get("categories")
    return cats[0] if isinstance(cats, list) and cats and isinstance(cats[0], str) else None


class Explainer:
    """Reasons for the items of one response."""

    def __init__(self, item_ids: Sequence[str], fields: Sequence[dict[str, Any] | None]) -> None:
        self.item_ids = item_ids
        self.fields = fields

    def _fields(self, i: int) -> dict[str, Any] | None:
        return self.fields[i] if i < len(self.fields) else None

    def title(self, i: int) -> str:
        return title_of(self._fields(i), self.item_ids[i])

    def trending(self, i: int, category: str | None) -> str:
        where = category or first_category(self._fields(i))
        return f"trending in {where}" if where else "trending now"

    def scored(
        self,
        idx: np.ndarray,
        parts: Sequence[tuple[str, np.ndarray]],
        anchors: np.ndarray,
        category: str | None,
    ) -> list[str]:
        """Reasons for items ranked by a reader's scores (``anchors``: see Scorer.anchors)."""
        out = []
        for k, i in enumerate(idx.tolist()):
            terms = {name: float(values[i]) for name, values in parts}
            best = max(terms, key=lambda name: terms[name], default="")
            # The reader's own reads are the reason a reader understands best: named when
            # they add at least half as much as the largest term (in the "within trending"
            # blend taste multiplies trending, so it never adds more than trending itself).
            if terms.get("personal", 0.0) >= PERSONAL_SHARE * terms.get(best, 0.0) > 0:
                best = "personal"
            if not terms or terms[best] <= 2 * NEWEST_TIEBREAK:
                out.append("new")  # nothing read it yet: ordered newest first
            elif best == "personal" and anchors[k] >= 0:
                out.append(f'because you read "{self.title(int(anchors[k]))}"')
            elif best == "bonus":
                out.append("exploration: a new post few readers have seen yet")
            else:
                out.append(self.trending(i, category))
        return out

    def similar(self, idx: np.ndarray, anchor: int, by_model: np.ndarray) -> list[str]:
        """Reasons for items similar to ``anchor``: read together, or the same section."""
        out = []
        for k, i in enumerate(idx.tolist()):
            if by_model[k]:
                out.append(f'read together with "{self.title(anchor)}"')
            else:
                cat = first_category(self._fields(i))
                out.append(f"also in {cat}" if cat else "also new")
        return out
