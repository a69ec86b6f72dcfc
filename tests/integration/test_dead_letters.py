"""Dead letters: a poison event is retried, parked with its error and attempts while the
others flow on, shown by the CLI and the admin API, and after its cause is fixed a replay
archives it exactly once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from clickrec.cli import app
from clickrec.core.clock import FixedClock
from clickrec.engine import Engine
from clickrec.ingestion.archive import ArchiveConsumer, problems

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]


def events(first: int, n: int) -> list[dict]:
    return [
        {"event_id": f"e{i}", "session_id": "s", "item_id": f"p{i}"}
        for i in range(first, first + n)
    ]


def archived(engine: Engine) -> list[str]:
    lake = engine.lake
    ids = [lake.read_part(path, ["event_id"]) for path in lake.parts()]
    return sorted(e for t in ids for e in t.column("event_id").to_pylist())


def test_a_poison_event_is_parked_fixed_replayed_and_archived_once(
    client: TestClient, keys: H, engine: Engine
) -> None:
    assert (
        client.post("/v1/events", json={"events": events(0, 5)}, headers=keys["ingest"]).status_code
        == 202
    )
    # Another producer wrote a record with a broken JSON field straight into the log.
    db = sqlite3.connect(engine.log.path)  # type: ignore[attr-defined]
    db.execute(
        "INSERT INTO events (event_id, timestamp, session_id, item_id, event_type, context, "
        "received_at) VALUES ('poison', 1.0, 's', 'p-poison', 'view', '{not json', 1.0)"
    )
    db.commit()
    assert (
        client.post("/v1/events", json={"events": events(5, 5)}, headers=keys["ingest"]).status_code
        == 202
    )
    clock = FixedClock(1_800_000_000.0)
    archive = ArchiveConsumer(engine.log, engine.lake, max_attempts=3, clock=clock)

    assert archive.run_once() == 5  # the five before it go on; the poison is retried
    assert archive.run_once() == 0 and archive.run_once() == 6  # third attempt: parked
    assert archived(engine) == sorted(f"e{i}" for i in range(10))  # the others flowed on

    letters = client.get("/v1/dead-letters", headers=keys["admin"]).json()
    assert letters["count"] == 1
    (letter,) = letters["dead_letters"]
    assert letter["event_id"] == "poison" and letter["attempts"] == 3
    assert letter["parked_at"] == clock.now()
    assert "context is not valid JSON" in letter["error"]
    shown = client.get(f"/v1/dead-letters/{letter['seq']}", headers=keys["admin"]).json()
    assert shown["event"]["context"] == "{not json"
    assert client.get("/v1/dead-letters", headers=keys["read"]).status_code == 403
    listed = CliRunner().invoke(app, ["dlq", "list", "--home", str(engine.settings.home)])
    assert listed.exit_code == 0 and "poison" in listed.output

    # A replay before the fix parks it again, one attempt more.
    r = client.post("/v1/dead-letters/replay", json={}, headers=keys["admin"])
    assert r.json() == {"requested": 1}
    assert archive.replay_dead_letters() == 0
    assert (
        client.get("/v1/dead-letters", headers=keys["admin"]).json()["dead_letters"][0]["attempts"]
        == 4
    )

    # The operator fixes the record, then replays it: archived, exactly once.
    db.execute("UPDATE events SET context = '{\"fixed\": true}' WHERE event_id = 'poison'")
    db.commit()
    db.close()
    replayed = CliRunner().invoke(
        app, ["dlq", "replay", str(letter["seq"]), "--home", str(engine.settings.home)]
    )
    assert replayed.exit_code == 0, replayed.output
    clock.advance(60)
    assert archive.replay_dead_letters() == 1
    assert archive.replay_dead_letters() == 0  # done: not again
    assert archived(engine) == sorted([*(f"e{i}" for i in range(10)), "poison"])
    assert client.get("/v1/dead-letters", headers=keys["admin"]).json()["count"] == 0
    done = client.get("/v1/dead-letters?state=done", headers=keys["admin"]).json()
    assert done["dead_letters"][0]["replayed_at"] == clock.now()
    metrics = client.get("/metrics", headers=keys["admin"]).text
    assert 'clickrec_dead_letters{consumer="archive"} 0.0' in metrics


def test_problems_name_each_bad_row() -> None:
    import pyarrow as pa

    table = pa.table(
        {
            "event_id": ["a", "", "c", "d"],
            "session_id": ["s", "s", "s", "s"],
            "item_id": ["i", "i", None, "i"],
            "event_type": ["v", "v", "v", "v"],
            "timestamp": [1.0, 1.0, 1.0, float("nan")],
            "context": [None, None, None, "[1"],
        }
    )
    assert problems(table) == {
        1: "event_id is empty",
        2: "item_id is empty",
        3: "timestamp is not a finite number",
    }
    assert pc.sum(pc.is_null(table["context"])).as_py() == 3


def test_purge_gives_up_on_a_letter(
    client: TestClient, keys: H, engine: Engine, tmp_path: Path
) -> None:
    db = sqlite3.connect(engine.log.path)  # type: ignore[attr-defined]
    db.execute(
        "INSERT INTO events (event_id, timestamp, session_id, item_id, event_type, received_at) "
        "VALUES ('bad', 1.0, 's', '', 'view', 1.0)"
    )
    db.commit()
    db.close()
    archive = ArchiveConsumer(engine.log, engine.lake, max_attempts=1)
    assert archive.run_once() == 1  # parked at once (one attempt allowed)
    purged = client.post("/v1/dead-letters/purge", json={"seqs": [1]}, headers=keys["admin"])
    assert purged.json() == {"purged": 1}
    assert client.get("/v1/dead-letters", headers=keys["admin"]).json()["count"] == 0
    assert archived(engine) == []
