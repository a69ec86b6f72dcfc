"""Batch jobs: recommendations for many readers at once (newsletters, e-mails), and item
affinity (Personalize's Item-Affinity: for each item, the readers most likely to read it).

Both read the same live state and model as the API, so a newsletter sent at 7:00 reflects
what readers clicked at 6:59. A bad input line is answered with its error on the same line
of the output; the others go on.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clickrec.core.errors import ClickrecError, InvalidInput
from clickrec.core.types import FilterName, FilterValues, Id, MetadataColumns
from clickrec.serving.service import Extras, Recommender, Selection

MAX_SEGMENT_READERS = 10_000
Progress = Callable[[int], None]


class ReaderLine(BaseModel):
    """One line of a batch recommendation input."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id | None = None
    session_id: Id | None = None
    num_results: int = Field(default=25, ge=1, le=500)
    category: Id | None = None
    filter: FilterName | None = None
    filter_values: FilterValues | None = None
    metadata_columns: MetadataColumns | None = None


class ItemLine(BaseModel):
    """One line of an item-affinity input."""

    model_config = ConfigDict(extra="forbid")

    item_id: Id
    num_results: Annotated[int, Field(ge=1, le=MAX_SEGMENT_READERS)] = 100


def _error(line: int, exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"line {line}: {where}: {first['msg']}" if where else f"line {line}: {first['msg']}"
    if isinstance(exc, InvalidInput) and exc.errors:
        return f"line {line}: " + "; ".join(e.message for e in exc.errors)
    return f"line {line}: {exc}"


def _parse(raw: bytes | str | dict[str, Any], model: type[BaseModel]) -> Any:
    if isinstance(raw, dict):
        return model.model_validate(raw)
    return model.model_validate_json(raw)


def recommend_many(
    rec: Recommender, lines: Iterable[bytes | str | dict[str, Any]], progress: Progress
) -> Iterator[dict[str, Any]]:
    """One answer per input line, in order: the reader's list, or the line's error."""
    for number, raw in enumerate(lines, start=1):
        try:
            line = _parse(raw, ReaderLine)
            selection = Selection(line.filter, line.filter_values or {}) if line.filter else None
            extras = Extras(tuple(c.lower() for c in line.metadata_columns or ()))
            ranked = rec.recommend(
                line.user_id, line.session_id, line.num_results, line.category, selection, extras
            )
            answer = {"user_id": line.user_id, "session_id": line.session_id, **ranked.as_dict()}
            yield {k: v for k, v in answer.items() if v is not None or k == "model_version"}
        except (ValidationError, ClickrecError, ValueError) as exc:
            yield {"line": number, "error": _error(number, exc)}
        progress(1)


def item_affinity(
    rec: Recommender, lines: Iterable[bytes | str | dict[str, Any]], progress: Progress
) -> Iterator[dict[str, Any]]:
    """For each item, the readers whose recent reads make it most likely their next read:
    the reader × item scores of user-personalization, for every reader at once (one sparse
    product), best readers first. Readers who already read the item are left out."""
    parsed: list[ItemLine | dict[str, Any]] = []
    for number, raw in enumerate(lines, start=1):
        try:
            parsed.append(_parse(raw, ItemLine))
        except (ValidationError, ValueError) as exc:
            parsed.append({"line": number, "error": _error(number, exc)})
    wanted = [p for p in parsed if isinstance(p, ItemLine)]
    scores, readers, columns = _affinity(rec, [p.item_id for p in wanted])
    for p in parsed:
        if not isinstance(p, ItemLine):
            yield p
            progress(1)
            continue
        col = columns.get(p.item_id)
        if col is None:
            yield {"item_id": p.item_id, "error": f"unknown item, or not in the model: {p.item_id}"}
            progress(1)
            continue
        values = scores[:, col].toarray().ravel()
        top = np.flatnonzero(values > 0)
        top = top[np.argsort(-values[top], kind="stable")][: p.num_results]
        yield {
            "item_id": p.item_id,
            "readers": [_reader(readers[r], float(values[r])) for r in top.tolist()],
        }
        progress(1)


def _reader(key: str, score: float) -> dict[str, Any]:
    kind, _, name = key.partition(":")
    return {"user_id" if kind == "u" else "session_id": name, "score": round(score, 6)}


def _affinity(
    rec: Recommender, item_ids: list[str]
) -> tuple[sp.csc_matrix, list[str], dict[str, int]]:
    """(readers × wanted items scores, reader keys, item id → column)."""
    scorer = rec.scorer
    art = scorer.artifact
    state = rec.state
    empty = sp.csc_matrix((0, 0))
    if art is None:
        return empty, [], {}
    model_index = {str(i): k for k, i in enumerate(art.item_ids)}
    known = list(dict.fromkeys(i for i in item_ids if i in model_index))
    if not known:
        return empty, [], {}
    rows, cols, weights, seen_rows, seen_cols = [], [], [], [], []
    with state.lock:
        readers = list(state.readers)
        for r, key in enumerate(readers):
            items, _ = state.history(key)
            live = items < len(scorer.model_of_live)
            model = np.where(live, scorer.model_of_live[np.where(live, items, 0)], -1)
            pos = np.flatnonzero(model >= 0)
            rows.append(np.full(len(pos), r))
            cols.append(model[pos])
            weights.append(np.exp2(-pos / art.params.history_half_life))
            seen = state.seen(key)
            seen_rows.append(np.full(len(seen), r))
            seen_cols.append(seen)
    history = sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(readers), len(art.item_ids)),
    )
    wanted = [model_index[i] for i in known]
    scores = (history @ art.similarity[:, wanted]).tocsc()
    # Leave out readers who already read the item.
    live_of_wanted = scorer.live_of_model[wanted]
    seen = sp.csr_matrix(
        (
            np.ones(sum(len(c) for c in seen_cols)),
            (np.concatenate(seen_rows), np.concatenate(seen_cols)),
        ),
        shape=(len(readers), max(state.n_items, int(live_of_wanted.max()) + 1)),
    )[:, live_of_wanted]
    scores = scores - scores.multiply(seen > 0)
    scores.eliminate_zeros()
    return scores.tocsc(), readers, {i: k for k, i in enumerate(known)}


def write_jsonl(path: Path, answers: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """Write answers as JSON lines (atomically); returns (lines, errors)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    lines = errors = 0
    with tmp.open("wb") as f:
        for answer in answers:
            f.write(orjson.dumps(answer) + b"\n")
            lines += 1
            errors += "error" in answer
    tmp.replace(path)
    return lines, errors


# -- jobs run by a server ------------------------------------------------------------------
KINDS = ("recommendations", "segments")


@dataclass
class Job:
    id: str
    kind: str
    total: int
    created_at: float
    state: str = "pending"  # pending, running, succeeded, failed
    done: int = 0
    errors: int = 0
    finished_at: float | None = None
    error: str | None = None
    path: Path | None = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "errors": self.errors,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }


class JobRunner:
    """Batch jobs of one server: each runs in its own thread and writes its output under
    ``<home>/batch/``; the job list lives in memory (a restart forgets finished jobs' status
    but keeps their output files)."""

    def __init__(self, rec: Recommender, folder: Path, max_jobs: int = 100) -> None:
        self.rec = rec
        self.folder = folder
        self.max_jobs = max_jobs
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, kind: str, lines: list[dict[str, Any]]) -> Job:
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
        job = Job(uuid.uuid4().hex[:16], kind, len(lines), time.time())
        self.folder.mkdir(parents=True, exist_ok=True)
        job.path = self.folder / f"{job.id}.jsonl"
        with self._lock:
            if len(self.jobs) >= self.max_jobs:  # forget the oldest finished job
                done = [j for j in self.jobs.values() if j.state in ("succeeded", "failed")]
                if done:
                    del self.jobs[min(done, key=lambda j: j.created_at).id]
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job, lines), daemon=True).start()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def _run(self, job: Job, lines: list[dict[str, Any]]) -> None:
        job.state = "running"

        def advance(n: int) -> None:
            job.done += n

        run = recommend_many if job.kind == "recommendations" else item_affinity
        try:
            assert job.path is not None
            _, job.errors = write_jsonl(job.path, run(self.rec, lines, advance))
            job.state = "succeeded"
        except Exception as exc:  # noqa: BLE001 - a failed job reports, the server goes on
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        job.finished_at = time.time()
