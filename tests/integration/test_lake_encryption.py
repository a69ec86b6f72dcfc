"""Encryption at rest: the lake and model artifacts hold no reader data in clear, read back
exactly, fail loudly under a wrong key, and survive a key rotation cut short."""

from __future__ import annotations

import base64
import datetime as dt
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from clickrec.backends.registry import open_data_keys, open_lake
from clickrec.backends.sqlite_log import SQLiteEventLog
from clickrec.cli import app
from clickrec.config import Settings, load_settings
from clickrec.core.datakeys import DataKey, DataKeyError, DataKeys, read_key_file
from clickrec.core.errors import Conflict
from clickrec.ingestion.archive import ArchiveConsumer
from clickrec.lake.localfs import LocalLake
from clickrec.lake.reader import lake_stats, load_events
from clickrec.models.base import Artifact
from clickrec.rekey import rotate_data_key

pytestmark = pytest.mark.integration

START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp()
DAY = 86_400.0
# Every row carries these, so a part in clear shows them in its column statistics at least.
SECRETS = (b"4f9c", b"7d21", b"bookmark")


def records(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"e{i}",
            "timestamp": START + (i % 3) * DAY + i,
            "user_id": "reader-4f9c",
            "session_id": f"s{i % 5}",
            "item_id": f"post-7d21-{i % 4}",
            "event_type": "bookmark",
            "event_value": float(i) if i % 5 == 0 else None,
            "recommendation_id": None,
            "impression": None,
            "context": '{"device": "mobile"}',
            "properties": None,
            "received_at": time.time(),
        }
        for i in range(first, first + count)
    ]


def artifact() -> Artifact:
    return Artifact(
        recipe="similar-items",
        item_ids=np.array(["post-7d21-0", "post-7d21-1"]),
        popularity=np.array([2.0, 1.0], dtype=np.float32),
        similarity=sp.csr_matrix(np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float32)),
        trained_until=START,
        metrics={"reader": "reader-4f9c"},
    )


def leaked(folder: Path) -> list[tuple[str, bytes]]:
    """(file, secret) for every secret found in clear in any file under ``folder``."""
    return [
        (file.name, secret)
        for file in folder.rglob("*")
        if file.is_file()
        for secret in SECRETS
        if secret in file.read_bytes()
    ]


def archive_all(log: SQLiteEventLog, lake: Any, batch_size: int = 40) -> None:
    consumer = ArchiveConsumer(log, lake, batch_size=batch_size)
    while consumer.run_once():
        pass


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path / "home", environ={})


@pytest.fixture
def log(settings: Settings) -> Iterator[SQLiteEventLog]:
    settings.home.mkdir(parents=True)
    event_log = SQLiteEventLog(settings.home / "events.db")
    yield event_log
    event_log.close()


def parts(settings: Settings) -> list[Path]:
    return sorted((settings.home / "lake" / "events").glob("*/*.parquet"))


def save_model(settings: Settings, keys: DataKeys | None) -> Path:
    folder = settings.home / "models" / "v1"
    artifact().save(folder, keys)
    return folder


def test_nothing_in_clear_and_everything_back(settings: Settings, log: SQLiteEventLog) -> None:
    keys = open_data_keys(settings)
    assert keys is not None
    assert stat.S_IMODE((settings.home / "data.key").stat().st_mode) == 0o600
    lake = open_lake(settings, keys)
    log.append(records(1, 200))
    archive_all(log, lake)
    model = save_model(settings, keys)

    assert len(parts(settings)) == 15  # 5 batches × 3 dates
    assert leaked(settings.home / "lake") == []
    assert leaked(settings.home / "models") == []
    assert load_events(lake, log).equals(log.read(0, 1000))
    assert lake_stats(lake) == {
        "files": 15,
        "rows": 200,
        "dates": 3,
        "first_date": "2024-05-01",
        "last_date": "2024-05-03",
    }
    loaded = Artifact.load(model, keys)
    assert loaded.item_ids.tolist() == ["post-7d21-0", "post-7d21-1"]
    assert (loaded.similarity != artifact().similarity).nnz == 0
    assert loaded.metrics == {"reader": "reader-4f9c"}


def test_the_same_check_finds_a_plain_lake(settings: Settings, log: SQLiteEventLog) -> None:
    """The control: without encryption the secrets are found, so the check above can fail."""
    lake = LocalLake(settings.home / "lake")
    log.append(records(1, 200))
    archive_all(log, lake)
    save_model(settings, None)

    assert {secret for _, secret in leaked(settings.home / "lake")} == set(SECRETS)
    assert leaked(settings.home / "models")
    # The pyarrow reader agrees with what DuckDB, which read the lake before, says of it.
    with duckdb.connect() as con:
        [(files, rows, dates)] = con.sql(
            "SELECT count(DISTINCT filename), count(*), count(DISTINCT date) "
            "FROM read_parquet($glob, hive_partitioning=true, filename=true)",
            params={"glob": lake.glob()},
        ).fetchall()
    stats = lake_stats(lake)
    assert (stats["files"], stats["rows"], stats["dates"]) == (files, rows, dates)


def test_a_wrong_key_names_the_file(settings: Settings, log: SQLiteEventLog) -> None:
    keys = open_data_keys(settings)
    lake = open_lake(settings, keys)
    log.append(records(1, 30))
    archive_all(log, lake)
    model = save_model(settings, keys)
    other = DataKeys([DataKey.generate()])

    for wrong in (other, None):
        stranger = LocalLake(settings.home / "lake", wrong)
        with pytest.raises(DataKeyError, match=r"cannot decrypt .*part-\d+-\d+\.parquet"):
            load_events(stranger, log)
        with pytest.raises(DataKeyError, match=r"similarity\.npz|meta\.json|\.npy"):
            Artifact.load(model, wrong)


def test_a_mixed_lake_reads_fully(settings: Settings, log: SQLiteEventLog) -> None:
    log.append(records(1, 100))
    archive_all(log, LocalLake(settings.home / "lake"))  # before encryption was turned on
    plain = set(parts(settings))
    keys = open_data_keys(settings)
    lake = open_lake(settings, keys)
    log.append(records(101, 100))
    archive_all(log, lake)

    tails = {path: path.read_bytes()[-4:] for path in parts(settings)}
    assert {tails[path] for path in plain} == {b"PAR1"}
    assert {tail for path, tail in tails.items() if path not in plain} == {b"PARE"}
    assert load_events(lake, log).equals(log.read(0, 1000))
    assert lake_stats(lake)["rows"] == 200


def test_rotation_reencrypts_everything_and_retires_the_old_key(
    settings: Settings, log: SQLiteEventLog
) -> None:
    log.append(records(1, 50))
    archive_all(log, LocalLake(settings.home / "lake"))  # a plain part gets encrypted too
    old = open_data_keys(settings)
    assert old is not None
    log.append(records(51, 100))
    archive_all(log, open_lake(settings, old))
    model = save_model(settings, old)
    expected = log.read(0, 1000)

    rotation = rotate_data_key(settings)

    [new] = read_key_file(settings.home / "data.key")
    assert rotation.key_id == new.key_id != old.active.key_id
    assert rotation.retired == [old.active.key_id]
    assert rotation.files == len(parts(settings)) + 4
    assert {path.read_bytes()[-4:] for path in parts(settings)} == {b"PARE"}
    assert leaked(settings.home / "lake") == []
    keys = open_data_keys(settings)
    assert load_events(open_lake(settings, keys), log).equals(expected)
    assert Artifact.load(model, keys).recipe == "similar-items"
    with pytest.raises(DataKeyError, match="cannot decrypt"):
        load_events(open_lake(settings, old), log)
    with pytest.raises(DataKeyError, match="cannot decrypt"):
        Artifact.load(model, old)


def test_a_rotation_cut_short_leaves_everything_readable(
    settings: Settings, log: SQLiteEventLog
) -> None:
    old = open_data_keys(settings)
    lake = open_lake(settings, old)
    log.append(records(1, 150))
    archive_all(log, lake, batch_size=50)
    model = save_model(settings, old)
    expected = log.read(0, 1000)

    def crash_after_four(done: int, total: int) -> None:
        if done == 4:
            raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        rotate_data_key(settings, crash_after_four)

    both = open_data_keys(settings)
    assert both is not None and len(both.key_ids) == 2
    assert load_events(open_lake(settings, both), log).equals(expected)
    assert Artifact.load(model, both).recipe == "similar-items"
    assert not list((settings.home / "lake").rglob("*.tmp"))

    rotation = rotate_data_key(settings)  # running it again finishes under the same new key

    assert rotation.key_id == both.active.key_id
    keys = open_data_keys(settings)
    assert keys is not None and keys.key_ids == [both.active.key_id]
    assert load_events(open_lake(settings, keys), log).equals(expected)
    assert Artifact.load(model, keys).recipe == "similar-items"


def test_rotation_waits_for_no_running_archive(settings: Settings, log: SQLiteEventLog) -> None:
    lake = open_lake(settings, open_data_keys(settings))
    assert lake.acquire_writer(threading.Event())
    try:
        with pytest.raises(Conflict, match="serve"):
            rotate_data_key(settings, lock_wait=0.1)
    finally:
        lake.release_writer()
    assert len(read_key_file(settings.home / "data.key")) == 1


def test_key_settings(tmp_path: Path) -> None:
    key = DataKey.generate()
    from_env = load_settings(tmp_path / "a", environ={"CLICKREC_DATA_KEY": key.to_base64()})
    keys = open_data_keys(from_env)
    assert keys is not None and keys.key_ids == [key.key_id]
    assert not (tmp_path / "a" / "data.key").exists()

    off = load_settings(tmp_path / "b", environ={"CLICKREC_ENCRYPTION__ENABLED": "false"})
    assert open_data_keys(off) is None
    assert not (tmp_path / "b" / "data.key").exists()

    elsewhere = load_settings(tmp_path / "c", environ={"CLICKREC_ENCRYPTION__KEY_FILE": "k"})
    with pytest.raises(DataKeyError, match="does not exist"):
        open_data_keys(elsewhere)
    with pytest.raises(DataKeyError, match="base64"):
        DataKey.from_base64("not base64!")
    assert len(base64.b64decode(DataKey.generate().to_base64())) == 32


def test_encryption_off_writes_plain_and_still_reads_old(
    settings: Settings, log: SQLiteEventLog
) -> None:
    keys = open_data_keys(settings)
    assert keys is not None
    log.append(records(1, 30))
    archive_all(log, open_lake(settings, keys))
    lake = open_lake(settings, DataKeys([keys.active], encrypt=False))
    log.append(records(31, 30))
    archive_all(log, lake)

    assert {path.read_bytes()[-4:] for path in parts(settings)} == {b"PAR1", b"PARE"}
    assert load_events(lake, log).equals(log.read(0, 1000))


def test_cli_init_makes_a_key_and_rotate_uses_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--home", str(home)]).exit_code == 0
    key_file = home / "data.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    [before] = read_key_file(key_file)

    result = runner.invoke(app, ["keys", "rotate-data-key", "--home", str(home)])

    assert result.exit_code == 0, result.output
    [after] = read_key_file(key_file)
    assert after.key_id != before.key_id
    assert f"retired {before.key_id}" in result.output


def test_sigv4_secrets_survive_a_rotation(settings: Settings) -> None:
    """API keys' SigV4 secrets are sealed with the data key: a rotation reseals them, so
    boto3 clients keep working after the old data key is retired."""
    from clickrec.backends.registry import open_catalog
    from clickrec.keys import KeyRing

    catalog = open_catalog(settings)
    try:
        made = KeyRing(catalog, open_data_keys(settings)).create_key("read", None, 1.0)
        rotate_data_key(settings)
        after = KeyRing(catalog, open_data_keys(settings)).sigv4_credentials(made.aws_access_key_id)
    finally:
        catalog.close()
    assert after is not None and after.secret == made.aws_secret_access_key
