"""Batch jobs: recommendations for many readers at once (newsletters, e-mails), and item
affinity (Personalize's Item-Affinity: for each item, the readers most likely to read it).

Both read the same live state and model as the API, so a newsletter sent at 7:00 reflects
what readers clicked at 6:59. A bad input line is answered with its error on the same line
of the output; the others go on.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import numpy as np
import orjson
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clickrec.config import BatchSettings
from clickrec.core.clock import Clock, SystemClock
from clickrec.core.errors import ClickrecError, Conflict, Gone, InvalidInput, NotFound
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


class OutputTooLarge(InvalidInput):
    """An output grew past its byte quota after ``lines`` answers."""

    def __init__(self, limit: int, lines: int) -> None:
        super().__init__(f"the output passed {limit:,} bytes after {lines} answers")
        self.lines = lines


def create_file(path: Path, mode: int) -> BinaryIO:
    """A new file opened for writing with ``mode`` from its first byte (never a wider one
    for a moment, whatever the umask); a stale file of that name is replaced."""
    path.unlink(missing_ok=True)
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb")


def write_jsonl(
    path: Path,
    answers: Iterable[dict[str, Any]],
    max_bytes: int | None = None,
    mode: int = 0o666,
) -> tuple[int, int]:
    """Write answers as JSON lines (atomically); returns (lines, errors). Past ``max_bytes``
    it stops with OutputTooLarge and leaves nothing behind."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    lines = errors = size = 0
    try:
        with create_file(tmp, mode) as f:
            for answer in answers:
                line = orjson.dumps(answer) + b"\n"
                size += len(line)
                if max_bytes is not None and size > max_bytes:
                    raise OutputTooLarge(max_bytes, lines)
                f.write(line)
                lines += 1
                errors += "error" in answer
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)
    return lines, errors


def read_page(f: BinaryIO, offset: int, limit: int) -> tuple[bytes, int | None]:
    """Lines ``offset`` to ``offset + limit`` of an open output and the offset of the next
    page (None after the last line). A page stops early past PAGE_BYTES (after one line at
    least), so it never holds more than that and one line in memory."""
    page: list[bytes] = []
    size = 0
    for line in itertools.islice(f, offset, None):
        if len(page) == limit or (page and size + len(line) > PAGE_BYTES):
            return b"".join(page), offset + len(page)
        page.append(line)
        size += len(line)
    return b"".join(page), None


def chunks(f: BinaryIO, size: int = 1 << 16) -> Iterator[bytes]:
    """The rest of an open file in pieces of ``size`` bytes; closes it at the end."""
    with f:
        while chunk := f.read(size):
            yield chunk


ERASED = "<erased>"  # what stands in an output for an erased reader's session id


@dataclass(frozen=True)
class Forgotten:
    """Readers an output must not name: erased users, and their anonymous sessions."""

    users: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.users or self.sessions)

    def marks(self) -> list[bytes]:
        """Each id as it appears in JSON (an exact id is also a substring of its line)."""
        return [orjson.dumps(i) for i in (*self.users, *self.sessions)]


def scrub_line(line: bytes, number: int, readers: Forgotten) -> tuple[bytes, int]:
    """(the output line without the readers, how many entries went). An answer that was
    theirs becomes ``{"line": n, "erased": true}``: an output keeps one line per input."""
    if not any(m in line for m in readers.marks()):  # cheap before parsing
        return line, 0
    entry, gone = without_readers(orjson.loads(line), readers)
    if not gone:
        return line, 0
    clean = {"line": number, "erased": True} if entry is None else entry
    return orjson.dumps(clean) + b"\n", gone


def without_readers(entry: Any, readers: Forgotten) -> tuple[Any, int]:
    """(entry without the readers' sub-entries, how many went); None when it is theirs.
    Ids are compared whole (``zz1`` is not ``zz10``); one of their sessions named beside
    another user is replaced by ERASED."""
    if isinstance(entry, dict):
        session = entry.get("session_id")
        theirs = isinstance(session, str) and session in readers.sessions
        user = entry.get("user_id")
        if (isinstance(user, str) and user in readers.users) or (user is None and theirs):
            return None, 1
        gone = 0
        out = {}
        for key, value in entry.items():
            if key == "session_id" and theirs:
                out[key], n = ERASED, 1
            else:
                out[key], n = without_readers(value, readers)
            gone += n
        return out, gone
    if isinstance(entry, list):
        kept, gone = [], 0
        for value in entry:
            clean, n = without_readers(value, readers)
            gone += n
            if clean is not None:
                kept.append(clean)
        return kept, gone
    return entry, 0


def erased_lines(output: Path) -> int:
    """How many lines of an output reader erasures changed (its ``.erased`` sidecar)."""
    try:
        return int(output.with_suffix(".erased").read_text())
    except (FileNotFoundError, ValueError):
        return 0


def record_erased(output: Path, lines: int) -> None:
    """Add ``lines`` to an output's erased count; the sidecar is swapped in whole."""
    sidecar = output.with_suffix(".erased")
    tmp = sidecar.with_suffix(".erased.tmp")
    with create_file(tmp, 0o600) as f:
        f.write(str(erased_lines(output) + lines).encode())
    tmp.replace(sidecar)


# -- jobs run by a server ------------------------------------------------------------------
KINDS = ("recommendations", "segments")
ACTIVE = ("pending", "running")
PAGE_LINES, MAX_PAGE_LINES, PAGE_BYTES = 1000, 10_000, 8 << 20  # a page of an output
SWEEP_SECONDS = 60.0  # at most this often a request lists the folder for stray files
Spawn = Callable[[Callable[[], None]], None]


def _thread(run: Callable[[], None]) -> None:
    threading.Thread(target=run, daemon=True).start()


@dataclass
class Job:
    id: str
    kind: str
    total: int
    created_at: float
    owner: str = field(default="", repr=False)  # the key id that made it
    state: str = "pending"  # pending, running, succeeded, failed, expired
    done: int = 0
    errors: int = 0
    finished_at: float | None = None
    expires_at: float | None = None
    error: str | None = None
    path: Path | None = field(default=None, repr=False)

    pid: int = field(default_factory=os.getpid, repr=False)  # the process that runs it

    def record(self) -> bytes:
        """What another process of the same home reads of this job (no reader ids)."""
        fields = "id kind total created_at owner state done errors finished_at expires_at error pid"
        return orjson.dumps({name: getattr(self, name) for name in fields.split()})

    @classmethod
    def from_record(cls, data: bytes, folder: Path) -> Job:
        job = cls(**orjson.loads(data))
        job.path = folder / f"{job.id}.jsonl"
        return job

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "total": self.total,
            "done": self.done,
            "errors": self.errors,
            "erased_lines": erased_lines(self.path) if self.path else 0,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "expires_at": self.expires_at,
            "error": self.error,
        }


JOB_ID = re.compile(r"[0-9a-f]{16}")
RECORD_SECONDS = 1.0  # a running job's progress reaches other processes this often


class JobRunner:
    """Batch jobs of one server, within each key's quotas (``[batch]`` settings): each runs
    in its own thread and writes its output (0600) under ``<home>/batch/``, deleted after
    the retention period. Each job also has a small record there (``<id>.job``), so every
    process serving the same home (``serve --processes N``) answers for every job, the
    quotas count them all, and a restart finds the finished ones; a job whose process
    stopped while it ran is failed."""

    def __init__(
        self,
        rec: Recommender,
        folder: Path,
        settings: BatchSettings | None = None,
        clock: Clock | None = None,
        max_jobs: int = 100,
        spawn: Spawn = _thread,
    ) -> None:
        self.rec = rec
        self.folder = folder
        self.settings = settings or BatchSettings()
        self.clock = clock or SystemClock()
        self.max_jobs = max_jobs
        self.spawn = spawn
        self.jobs: dict[str, Job] = {}
        # The readers whose erasure is under way (the engine asks the catalog): a job that
        # starts meanwhile never names them, even if asked for them by id.
        self.erasing: Callable[[], Forgotten] = Forgotten
        self._lock = threading.Lock()
        self._next_scan = 0.0
        self.sweep()

    @property
    def _retention(self) -> float:
        return self.settings.retention_hours * 3600

    def submit(self, kind: str, lines: list[dict[str, Any]], owner: str) -> Job:
        """Start a job for ``owner`` (a key id); InvalidInput or Conflict past its quotas."""
        if kind not in KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(KINDS)}")
        most = self.settings.max_lines_per_job
        if len(lines) > most:
            raise InvalidInput(
                f"a batch job takes at most {most:,} lines (batch.max_lines_per_job): "
                "split the input into several jobs"
            )
        self.sweep(scan=True)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        job = Job(uuid.uuid4().hex[:16], kind, len(lines), self.clock.now(), owner)
        job.path = self.folder / f"{job.id}.jsonl"
        with self._lock:
            self._check_quotas(owner)
            self._make_room()
            self.jobs[job.id] = job
            self._save(job)
        self.spawn(lambda: self._run(job, lines))
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, if ``owner`` made it (None: any owner, for admin keys); another key's
        job is as unknown as one that never was."""
        self.sweep()
        with self._lock:
            job = self._find(job_id)
        return job if job is not None and owner in (None, job.owner) else None

    def _find(self, job_id: str) -> Job | None:
        """This process's job, or another's read from its record (call with the lock)."""
        job = self.jobs.get(job_id)
        if job is not None and job.state not in ACTIVE and not self._record(job_id).exists():
            del self.jobs[job_id]  # another process deleted it
            return None
        if job is not None or not JOB_ID.fullmatch(job_id):
            return job
        try:
            job = Job.from_record(self._record(job_id).read_bytes(), self.folder)
        except (FileNotFoundError, ValueError, TypeError):
            return None  # none, or a record cut short: as unknown as one that never was
        if job.state in ACTIVE and not _alive(job.pid):
            job.state, job.finished_at = "failed", self.clock.now()
            job.error = "the server process that ran it stopped before it finished"
            self._save(job)
        elif job.state == "succeeded" and job.expires_at and self.clock.now() >= job.expires_at:
            self._expire(job, self._expiry_note())
        return job

    def _others(self) -> list[Job]:
        """The jobs of the other processes serving this home (call with the lock)."""
        if not self.folder.is_dir():
            return []
        ids = (p.name.removesuffix(".job") for p in self.folder.glob("*.job"))
        found = (self._find(i) for i in ids if i not in self.jobs)
        return [job for job in found if job is not None]

    def _record(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.job"

    def _save(self, job: Job) -> None:
        """Swap in the job's record whole (a reader never sees half of one)."""
        tmp = self.folder / f"{job.id}.job.tmp"
        try:
            with create_file(tmp, 0o600) as f:
                f.write(job.record())
            tmp.replace(self._record(job.id))
        except FileNotFoundError:
            pass  # the folder went (a test's home removed): nothing to tell anyone

    def running_since(self, t: float) -> bool:
        """Whether a job made at or before ``t`` (Unix seconds) is still pending or running:
        its output may yet name a reader erased after it started."""
        with self._lock:
            return any(j.state in ACTIVE and j.created_at <= t for j in self.jobs.values())

    def open_output(self, job_id: str, owner: str | None = None) -> BinaryIO:
        """A succeeded job's output, opened (a sweep or an erasure meanwhile cannot cut the
        read short); NotFound (also for another key's job), Conflict until it succeeded,
        Gone once it was deleted."""
        self.sweep()
        with self._lock:
            job = self._find(job_id)
            if job is None or owner not in (None, job.owner):
                raise NotFound(f"unknown batch job: {job_id}")
            if job.state == "succeeded" and job.path is not None:
                try:
                    return job.path.open("rb")
                except FileNotFoundError:
                    hours = self.settings.retention_hours
                    self._expire(job, f"its file was removed before its {hours:g} h retention")
            if job.state == "expired":
                raise Gone(f"the output of batch job {job_id} is no longer available: {job.error}")
            raise Conflict(f"batch job {job_id} is {job.state}")

    def delete(self, job_id: str, owner: str | None) -> None:
        """Forget a finished job and delete its output; ``owner`` None may delete any."""
        with self._lock:
            job = self._find(job_id)
            if job is None or owner not in (None, job.owner):
                raise NotFound(f"unknown batch job: {job_id}")
            if job.state in ACTIVE:
                raise Conflict(f"batch job {job_id} is {job.state}: delete it once it finished")
            self.jobs.pop(job_id, None)
            self._delete_files(job_id)

    def sweep(self, scan: bool = False) -> None:
        """Delete outputs past their retention (their job then says ``expired``), forget
        jobs one period later, and (when ``scan``, or every SWEEP_SECONDS) delete files no
        job owns once they are older than the retention period (left by a restart)."""
        now = self.clock.now()
        with self._lock:
            for job in list(self.jobs.values()):
                if job.state == "succeeded" and job.expires_at and now >= job.expires_at:
                    self._expire(job, self._expiry_note())
                elif job.state in ("failed", "expired") and now >= self._forget_at(job):
                    del self.jobs[job.id]
                    self._delete_files(job.id)
            if scan or now >= self._next_scan:
                self._next_scan = now + SWEEP_SECONDS
                self._delete_strays(now - self._retention)

    def _expiry_note(self) -> str:
        hours = self.settings.retention_hours
        return f"outputs are deleted {hours:g} h after their job finished (batch.retention_hours)"

    def _forget_at(self, job: Job) -> float:
        return (job.finished_at or job.created_at) + 2 * self._retention

    def _check_quotas(self, owner: str) -> None:
        """Conflict when ``owner`` runs its most jobs at once or keeps its most bytes."""
        s = self.settings
        mine = [j for j in [*self.jobs.values(), *self._others()] if j.owner == owner]
        active = sum(j.state in ACTIVE for j in mine)
        if active >= s.max_running_per_key:
            raise Conflict(
                f"this key has {active} batch jobs pending or running, its most at once "
                "(batch.max_running_per_key): submit again once one has finished"
            )
        kept = sum(_size(j.path) for j in mine if j.state == "succeeded")
        if kept >= s.max_retained_bytes_per_key:
            raise Conflict(
                f"this key's batch outputs take {kept:,} bytes, its quota is "
                f"{s.max_retained_bytes_per_key:,} bytes (batch.max_retained_bytes_per_key): "
                "delete the outputs you have downloaded (DELETE /v1/batch-jobs/{id}) or wait "
                f"until they expire, {s.retention_hours:g} h after their job finished"
            )

    def _make_room(self) -> None:
        """Past ``max_jobs``, forget the oldest finished job and delete its output (no one
        could ask for it any more)."""
        if len(self.jobs) < self.max_jobs:
            return
        done = [j for j in self.jobs.values() if j.state not in ACTIVE]
        if done:
            oldest = min(done, key=lambda j: j.created_at)
            del self.jobs[oldest.id]
            self._delete_files(oldest.id)

    def _expire(self, job: Job, why: str) -> None:
        self._delete_files(job.id, keep_record=True)
        job.state, job.error = "expired", why
        self._save(job)

    def _delete_files(self, job_id: str, keep_record: bool = False) -> None:
        """The output of a job and its companions (temporary file, erased count, record)."""
        for path in self.folder.glob(f"{job_id}.*"):
            if not (keep_record and path.suffix == ".job"):
                path.unlink(missing_ok=True)

    def _delete_strays(self, cutoff: float) -> None:
        """Files of no live job, last written before ``cutoff`` (Unix seconds)."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            job = self._find(path.name.partition(".")[0])
            if job is not None and job.state in (*ACTIVE, "succeeded"):
                continue
            if (
                job is not None
                and path.suffix == ".job"
                and self.clock.now() < self._forget_at(job)
            ):
                continue  # a failed or expired job is still told until it is forgotten
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                continue

    def _run(self, job: Job, lines: list[dict[str, Any]]) -> None:
        job.state = "running"
        self._save(job)
        saved = self.clock.monotonic()

        def advance(n: int) -> None:
            nonlocal saved
            job.done += n
            if self.clock.monotonic() - saved >= RECORD_SECONDS:
                saved = self.clock.monotonic()
                self._save(job)

        run = recommend_many if job.kind == "recommendations" else item_affinity
        limit = self.settings.max_output_bytes
        state, error = "succeeded", None
        try:
            assert job.path is not None
            answers, erased = _forgetting(run(self.rec, lines, advance), self.erasing())
            _, job.errors = write_jsonl(job.path, answers, limit, 0o600)
            if erased:
                record_erased(job.path, len(erased))
        except OutputTooLarge as exc:
            state, error = "failed", _too_large(limit, exc.lines, job.total)
        except Exception as exc:  # noqa: BLE001 - a failed job reports, the server goes on
            state, error = "failed", f"{type(exc).__name__}: {exc}"
        now = self.clock.now()
        with self._lock:
            job.finished_at, job.error = now, error
            job.expires_at = now + self._retention if state == "succeeded" else None
            job.state = state
            self._save(job)


def _forgetting(
    answers: Iterable[dict[str, Any]], readers: Forgotten
) -> tuple[Iterator[dict[str, Any]], list[int]]:
    """The answers without ``readers`` (as an erasure would leave them), and the numbers of
    the lines that changed, filled in as the answers are read."""
    changed: list[int] = []

    def clean() -> Iterator[dict[str, Any]]:
        for number, answer in enumerate(answers, start=1):
            if not readers:
                yield answer
                continue
            entry, gone = without_readers(answer, readers)
            if gone:
                changed.append(number)
            yield {"line": number, "erased": True} if entry is None else entry

    return clean(), changed


def _too_large(limit: int, lines: int, total: int) -> str:
    """The failed job's error: the quota, and how to split the input to stay under it."""
    split = f"split the input into jobs of at most about {lines} lines, or " if lines else ""
    return (
        f"the output passed the quota of {limit:,} bytes per job (batch.max_output_bytes) "
        f"after {lines} of {total} lines: {split}ask for fewer num_results or metadata_columns"
    )


def _alive(pid: int) -> bool:
    """Whether a process of this machine has that id (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except FileNotFoundError:
        return 0
