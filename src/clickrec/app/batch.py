"""Batch jobs: recommendations for many readers (newsletters) or the readers most likely
to read each of many items (segments). A server runs them in the background within each
key's quotas, and a key sees the jobs it made (an admin key, every one); the command line
runs one from a file to a file, here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from clickrec.batch import (
    PAGE_LINES,
    Progress,
    chunks,
    item_affinity,
    read_page,
    recommend_many,
    write_jsonl,
)
from clickrec.core.errors import NotFound
from clickrec.engine import ServingEngine
from clickrec.keys import Principal


def submit(
    engine: ServingEngine, kind: str, lines: list[dict[str, Any]], key: Principal
) -> dict[str, Any]:
    """Start a job for ``key``; its view. InvalidInput past the lines per job, Conflict
    past the jobs running at once or the bytes of outputs kept (``[batch]`` settings)."""
    return engine.jobs.submit(kind, lines, key.key_id).view()


def job(engine: ServingEngine, job_id: str, key: Principal) -> dict[str, Any]:
    """A job's view; NotFound for one that never was or that another key made."""
    found = engine.jobs.get(job_id, _owner(key))
    if found is None:
        raise NotFound(f"unknown batch job: {job_id}")
    return found.view()


def output(engine: ServingEngine, job_id: str, key: Principal) -> Iterator[bytes]:
    """A finished job's whole output (JSON lines), in pieces. The job is checked now, not
    when the pieces are read: Conflict until it succeeded, Gone once its output went."""
    return chunks(engine.jobs.open_output(job_id, _owner(key)))


def page(
    engine: ServingEngine,
    job_id: str,
    key: Principal,
    offset: int = 0,
    limit: int = PAGE_LINES,
) -> tuple[bytes, int | None]:
    """``limit`` lines of a finished job's output from line ``offset`` (fewer past the page
    bytes) and the offset of the next page (None after the last line)."""
    with engine.jobs.open_output(job_id, _owner(key)) as f:
        return read_page(f, offset, limit)


def delete(engine: ServingEngine, job_id: str, key: Principal) -> None:
    """Delete a finished job's output and forget the job, freeing the key's quota."""
    engine.jobs.delete(job_id, _owner(key))


def run_file(
    engine: ServingEngine, kind: str, lines: list[bytes], target: Path, progress: Progress
) -> tuple[int, int]:
    """Answer every line (``recommendations`` or ``segments``) into ``target`` as JSON
    lines, in this process; (lines written, lines with an error)."""
    run = recommend_many if kind == "recommendations" else item_affinity
    return write_jsonl(target, run(engine.recommender, lines, progress))


def _owner(key: Principal) -> str | None:
    """Whose jobs a key may see: its own; an admin key, every one."""
    return None if key.scope == "admin" else key.key_id
