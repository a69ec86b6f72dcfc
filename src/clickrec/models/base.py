"""The training data every recipe fits on, and the artifact every recipe yields."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from clickrec.core.datakeys import DataKeys, unseal_if_sealed

log = logging.getLogger("clickrec.models")


@dataclass(frozen=True)
class Interactions:
    """Interactions in index space: parallel arrays, one entry per event, sorted by time."""

    reader: np.ndarray  # int32 index into reader_ids
    item: np.ndarray  # int32 index into item_ids
    session: np.ndarray  # int32 session index
    timestamp: np.ndarray  # float64 Unix seconds (event time)
    item_ids: np.ndarray  # str per item index
    reader_ids: np.ndarray  # str per reader index ("u:<user>" or "s:<session>")

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_readers(self) -> int:
        return len(self.reader_ids)

    def __len__(self) -> int:
        return len(self.item)

    def subset(self, mask: np.ndarray) -> Interactions:
        """The same index spaces, fewer interactions."""
        return Interactions(
            self.reader[mask],
            self.item[mask],
            self.session[mask],
            self.timestamp[mask],
            self.item_ids,
            self.reader_ids,
        )


@dataclass(frozen=True)
class RecipeParams:
    """Knobs shared by the recipes; frozen so a trained artifact records what made it."""

    half_life_hours: float = 24.0  # decay of an interaction's weight by its age at training
    neighbours: int = 100  # similar items kept per item
    session_window: int = 50  # newest events of a session that count toward co-occurrence
    shrinkage: float = 5.0  # damps similarity between rarely seen items
    personal_weight: float = 1.0
    trending_weight: float = 0.3  # weight of trending for a reader with a long history
    history_half_life: float = 5.0  # in history positions: the 5th newest read counts half
    # How taste and trending combine: "sum" adds them (taste can bring back old posts);
    # "product" lets taste reorder what is trending now (readers who follow fresh news).
    blend: str = "sum"
    # The trending half-life this model scores with (one the online state tracks: its own
    # or TRACKED_HALF_LIVES); None: the serving setting.
    trending_half_life_hours: float | None = None
    # Weight of the last day's trending (24 h half-life) added to that trending: posts a
    # day old that readers still come to keep a place beside the last hour's; 0: none.
    slow_trending_weight: float = 0.0
    # The exploration weight this model scores with (young, unproven posts' bonus); None:
    # serving's setting (``serving.exploration_weight``).
    exploration_weight: float | None = None
    # What "read together" means for similarity: "session" (one visit) or "reader" (all
    # of a reader's newest ``session_window`` reads: long tastes, as in film ratings).
    cooccurrence: str = "session"
    # Weight of "read next" (item j read within a few steps after item i in a session,
    # 1/steps) beside "read together" in the similarity; 0: symmetric co-reads only.
    sequence_weight: float = 0.0
    # How strongly the sections (catalog categories) a reader reads, compared with what
    # everybody reads now, bend trending toward their sections; 0 ignores categories.
    # Works for a post published a minute ago, which no co-read links to anything yet.
    category_weight: float = 0.0
    # Weight of the fresh co-reads (read-next pairs learned from the live stream since the
    # training, ``models.coreads``) beside the trained similarity; 0 ignores them. They
    # reach posts published after the training, which the trained similarity cannot.
    fresh_weight: float = 0.0
    # Weight of content similarity (posts that share words: title, text, sections, tags;
    # ``models.content``) beside the trained one; 0 ignores it. A post nobody has read yet
    # reaches the readers of posts like it.
    content_weight: float = 0.0


@dataclass
class Artifact:
    """What training yields and serving loads: similarity, popularity and their ids."""

    recipe: str
    item_ids: np.ndarray
    popularity: np.ndarray  # float32 time-decayed counts at trained_until
    similarity: sp.csr_matrix  # item × item, top `neighbours` per row, rows scaled to max 1
    trained_until: float  # newest event time in the training data
    params: RecipeParams = field(default_factory=RecipeParams)
    metrics: dict[str, Any] = field(default_factory=dict)

    def save(self, folder: Path, data_keys: DataKeys | None = None) -> None:
        """Write the artifact's files, each sealed with ``data_keys`` when they encrypt."""
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "recipe": self.recipe,
            "trained_until": self.trained_until,
            "params": self.params.__dict__,
            "metrics": self.metrics,
        }
        files = {
            "item_ids.npy": _npy(self.item_ids.astype(str)),
            "popularity.npy": _npy(self.popularity),
            "similarity.npz": _npz(self.similarity),
            "meta.json": json.dumps(meta, indent=1).encode(),
        }
        for name, data in files.items():
            if data_keys is not None and data_keys.encrypt:
                data = data_keys.seal(data)
            (folder / name).write_bytes(data)

    @classmethod
    def load(cls, folder: Path, data_keys: DataKeys | None = None) -> Artifact:
        """Read an artifact, sealed or (written before encryption) in clear."""

        def read(name: str) -> io.BytesIO:
            path = folder / name
            return io.BytesIO(unseal_if_sealed(path.read_bytes(), data_keys, str(path)))

        meta = json.loads(read("meta.json").getvalue())
        known = {f.name for f in fields(RecipeParams)}
        unknown = sorted(set(meta["params"]) - known)
        if unknown:  # written by a newer version: serve with the knobs this one knows
            log.warning("model %s: ignoring unknown recipe settings %s", folder.name, unknown)
        return cls(
            recipe=meta["recipe"],
            item_ids=np.load(read("item_ids.npy"), allow_pickle=False),
            popularity=np.load(read("popularity.npy"), allow_pickle=False),
            similarity=sp.load_npz(read("similarity.npz")).tocsr(),
            trained_until=float(meta["trained_until"]),
            params=RecipeParams(**{k: v for k, v in meta["params"].items() if k in known}),
            metrics=meta.get("metrics", {}),
        )


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _npz(matrix: sp.csr_matrix) -> bytes:
    out = io.BytesIO()
    sp.save_npz(out, matrix)
    return out.getvalue()
