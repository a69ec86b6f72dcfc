"""An engine whose lake and models live on S3 (moto's server stands in for it, see
``tests/s3server.py``): it archives, trains and publishes there; an engine on another
machine (another home) serves that model; erasure and key rotation reach the bucket."""

from __future__ import annotations

import contextlib
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp
from fastapi.testclient import TestClient

from clickrec.api.app import create_app
from clickrec.backends.registry import open_data_keys, open_lake, open_model_store
from clickrec.config import load_settings
from clickrec.core.datakeys import DataKey, DataKeyError, DataKeys, create_key_file
from clickrec.core.schema import EVENT_SCHEMA
from clickrec.core.types import Event
from clickrec.engine import Engine, ServingEngine
from clickrec.lake.reader import lake_stats
from clickrec.models.base import Artifact
from clickrec.rekey import rotate_data_key
from clickrec.testing.synthetic import BlogSpec, blog_interactions_as_events, generate_blog
from tests.s3server import S3Server

pytestmark = pytest.mark.integration


@pytest.fixture
def shared(s3_bucket: str, s3_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """Settings two machines share: the event log and catalog (one SQLite file each, as a
    stand-in for Redis and PostgreSQL), the lake and models on S3, and the data key."""
    folder = tmp_path / "shared"
    folder.mkdir()
    return {
        **s3_env,
        "CLICKREC_STORES__EVENT_LOG": f"sqlite:///{folder / 'events.db'}",
        "CLICKREC_STORES__CATALOG": f"sqlite:///{folder / 'catalog.db'}",
        "CLICKREC_STORES__LAKE": f"s3://{s3_bucket}/site/lake",
        "CLICKREC_STORES__MODELS": f"s3://{s3_bucket}/site/models",
        "CLICKREC_DATA_KEY": DataKey.generate().to_base64(),
    }


@pytest.fixture
def engines(shared: dict[str, str], tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """A worker (archive, training, the lake's half of erasures) and a server, each with
    its own home folder."""
    worker = Engine(load_settings(tmp_path / "worker", environ=shared))
    try:
        server = ServingEngine(load_settings(tmp_path / "server", environ=shared))
        try:
            yield worker, server
        finally:
            server.close()
    finally:
        worker.close()


def _keys(server: S3Server, bucket: str, prefix: str) -> list[str]:
    with contextlib.closing(server.client()) as client:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [entry["Key"] for page in pages for entry in page.get("Contents", ())]


def test_trained_on_s3_served_from_another_home_and_erased_from_the_bucket(
    engines: tuple[Engine, Engine], s3_server: S3Server, s3_bucket: str
) -> None:
    worker, server = engines
    blog = generate_blog(BlogSpec(users=300, days=6, posts_per_day=25, seed=5))
    events = [Event.model_validate(e) for e in blog_interactions_as_events(blog)]
    for start in range(0, len(events), 1000):
        server.ingestor.ingest(events[start : start + 1000])
    while worker.archive.run_once():
        pass

    assert lake_stats(server.lake)["rows"] == len(events)  # read back through S3 alone
    assert _keys(s3_server, s3_bucket, "site/lake/events/date=")
    assert not (worker.settings.home / "lake").exists()

    run = worker.catalog.create_run("test", worker.clock.now())
    worker.trainer.step()
    done = worker.catalog.get_run(run["id"])
    assert done is not None and done["state"] == "succeeded", done
    live = worker.catalog.live_model()
    assert live is not None
    location = f"s3://{s3_bucket}/site/models/{live['version']}"
    assert live["path"] == location
    uploaded = _keys(s3_server, s3_bucket, f"site/models/{live['version']}/")
    assert {key.rsplit("/", 1)[-1] for key in uploaded} >= {"meta.json", "similarity.npz"}

    # The server, on another home, loads the model from the bucket into its own cache.
    assert server.recommender is not None and server.recommender.refresh_model()
    cached = server.settings.home / "cache" / "models" / live["version"]
    assert cached.is_dir() and stat.S_IMODE(cached.parent.stat().st_mode) == 0o700
    reader = next(e.user_id for e in events if e.user_id)
    with TestClient(create_app(server)) as client:
        key, _ = server.keys.create("admin", None, server.clock.now())
        auth = {"Authorization": f"Bearer {key}"}
        r = client.get(f"/v1/recommendations?user_id={reader}", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == live["version"] and r.json()["items"]

        # Erasure: the server forgets the reader, the worker (the lake's writer) rewrites
        # the parts in the bucket.
        rows_before = lake_stats(worker.lake)["rows"]
        job = client.delete(f"/v1/users/{reader}", headers=auth).json()
        assert server.eraser.run_online(server.recommender) == 1
        assert worker.eraser.run_lake() == 1
        finished = client.get(f"/v1/erasures/{job['id']}", headers=auth).json()
    assert finished["state"] == "done"
    erased = finished["counts"]["lake_rows"]
    assert erased == sum(1 for e in events if e.user_id == reader) > 0
    assert lake_stats(server.lake)["rows"] == rows_before - erased
    users = {
        user
        for path in server.lake.parts()
        for user in server.lake.read_part(path, ["user_id"])["user_id"].to_pylist()
    }
    assert reader not in users and len(users) > 1


def _tiny_artifact() -> Artifact:
    return Artifact(
        recipe="popularity-count",
        item_ids=np.array(["post-1", "post-2"]),
        popularity=np.array([2.0, 1.0], dtype=np.float32),
        similarity=sp.csr_matrix((2, 2), dtype=np.float32),
        trained_until=time.time(),
    )


def test_a_key_rotation_reseals_the_lake_and_models_in_the_bucket(
    s3_bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "shared" / "data.key"
    assert create_key_file(key_file)
    env = {
        **s3_env,
        "CLICKREC_STORES__LAKE": f"s3://{s3_bucket}/lake",
        "CLICKREC_STORES__MODELS": f"s3://{s3_bucket}/models",
        "CLICKREC_ENCRYPTION__KEY_FILE": str(key_file),
    }
    settings = load_settings(tmp_path / "home", environ=env)
    old = open_data_keys(settings)
    assert old is not None
    lake, models = open_lake(settings, old), open_model_store(settings)
    try:
        table = _events_table()
        lake.write_batch(table, 1, 2)
        folder = models.folder_for("v1")
        _tiny_artifact().save(folder, old)
        location = models.publish("v1", folder)
        assert Artifact.load(models.fetch(location), old).recipe == "popularity-count"
    finally:
        lake.close()
        models.close()

    rotation = rotate_data_key(settings)

    assert rotation.files == 1 + 4  # one part, the artifact's four files
    new = open_data_keys(settings)
    assert new is not None and new.key_ids == [rotation.key_id]
    lake, models = open_lake(settings, new), open_model_store(settings)
    retired = open_lake(settings, DataKeys([old.active]))
    try:
        [part] = lake.parts()
        assert lake.read_part(part)["seq"].to_pylist() == [1, 2]
        with pytest.raises(DataKeyError):
            retired.read_part(part)
        # The home's cached copy (sealed under the retired key) is fetched anew.
        assert Artifact.load(models.fetch(location), new).recipe == "popularity-count"
        with pytest.raises(DataKeyError):
            Artifact.load(models.fetch(location), DataKeys([old.active]))
    finally:
        lake.close()
        models.close()
        retired.close()


def _events_table() -> pa.Table:
    now = time.time()
    rows = [
        {"seq": seq, "event_id": f"e{seq}", "timestamp": now, "session_id": "s1",
         "item_id": "post-1", "event_type": "read", "received_at": now}
        for seq in (1, 2)
    ]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)
