"""Dead letters: events a consumer could not process after its retries, parked with the
error and the attempts. An operator looks at them, has them processed again once the cause
is fixed (the consumer does it on its next pass), or gives up on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clickrec.core.errors import NotFound
from clickrec.engine import Engine

STATES = ("parked", "replay", "done", "purged")


def letters(engine: Engine, state: str = "parked") -> list[dict[str, Any]]:
    """The letters in ``state`` (one of STATES, or ``all``)."""
    return engine.log.dead_letters(None, STATES if state == "all" else (state,))


def letter(engine: Engine, seq: int) -> dict[str, Any]:
    """One letter and the event it holds, as stored in the log; NotFound if none."""
    found = engine.log.dead_letters(None, STATES, [seq])
    if not found:
        raise NotFound(f"no dead letter with seq {seq}")
    rows = engine.log.read_seqs([seq]).to_pylist()
    return {**found[0], "event": rows[0] if rows else None}


def replay(engine: Engine, seqs: Sequence[int] | None) -> int:
    """Ask the consumer to process these letters again (None: every one parked or already
    waiting for a replay); how many. A letter still bad is parked again with its new
    error."""
    return engine.log.set_dead_state(seqs, "replay")


def purge(engine: Engine, seqs: Sequence[int] | None) -> int:
    """Give up on these letters (None: every one parked or waiting for a replay): never
    archived, though the log keeps the events; how many."""
    return engine.log.set_dead_state(seqs, "purged", engine.clock.now())
