"""The lake contract: a local folder and an S3 bucket keep the same promises.

Every test runs on both backends, opened from settings as the engine opens them. The S3
runs go to moto's server (``tests/s3server.py``), which stands in for S3 here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from clickrec.backends.base import Lake
from clickrec.backends.registry import open_lake, open_model_store
from clickrec.config import load_settings
from clickrec.core.datakeys import DataKey, DataKeyError, DataKeys
from clickrec.core.errors import Conflict, StoreUnavailable
from clickrec.core.schema import EVENT_SCHEMA
from clickrec.lake.reader import lake_stats
from tests.s3server import S3Server

pytestmark = pytest.mark.integration

MIDNIGHT = dt.datetime(2024, 3, 2, tzinfo=dt.UTC).timestamp()  # 2024-03-02T00:00:00Z
DAY = 86_400.0
NEEDLE_READER = "reader-" + "7d3e9a"  # distinctive: found in raw bytes only if stored in clear
LEASE_SECONDS = 1.0  # the S3 writer lease in these tests: a dead holder is replaced fast
LIVE_HOLDER_WAIT = 3 * LEASE_SECONDS  # long enough that an unrenewed lease would lapse


def events(seqs: list[int], timestamps: list[float]) -> pa.Table:
    n = len(seqs)
    return pa.table(
        {
            "seq": seqs,
            "event_id": [f"e{s}" for s in seqs],
            "timestamp": timestamps,
            "user_id": [NEEDLE_READER] * n,
            "session_id": ["s1"] * n,
            "item_id": ["post"] * n,
            "event_type": ["view"] * n,
            "event_value": [None] * n,
            "recommendation_id": [None] * n,
            "impression": [None] * n,
            "context": [None] * n,
            "properties": [None] * n,
            "received_at": timestamps,
        },
        schema=EVENT_SCHEMA,
    )


@dataclass
class Backend:
    """One lake store, opened (as often as a test likes) from the engine's settings."""

    kind: str
    home: Path
    env: dict[str, str]
    raw: Callable[[PurePath], bytes]
    opened: list[Lake] = field(default_factory=list)

    def open(self, data_keys: DataKeys | None = None) -> Lake:
        lake = open_lake(load_settings(self.home, environ=self.env), data_keys)
        self.opened.append(lake)
        return lake


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "local":
        env = {"CLICKREC_STORES__LAKE": f"file://{tmp_path / 'lake'}"}
        store = Backend("local", tmp_path, env, lambda path: Path(path).read_bytes())
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        env = {
            **request.getfixturevalue("s3_env"),
            "CLICKREC_STORES__LAKE": f"s3://{bucket}/site/lake",
            "CLICKREC_S3__WRITER_LEASE_SECONDS": str(LEASE_SECONDS),
        }

        def raw(path: PurePath) -> bytes:
            with contextlib.closing(server.client()) as client:
                key = path.as_posix().removeprefix(f"{bucket}/")
                return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())

        store = Backend("s3", tmp_path, env, raw)
    yield store
    for lake in store.opened:
        lake.close()


def names(paths: list[PurePath] | object) -> list[str]:
    assert isinstance(paths, list | tuple)
    return sorted(f"{p.parent.name}/{p.name}" for p in paths)


def part(first: int, last: int) -> str:
    return f"part-{first:020d}-{last:020d}.parquet"


def test_a_batch_is_split_by_event_date_and_read_back_by_any_reader(backend: Backend) -> None:
    lake = backend.open()
    assert not lake.has_files() and lake.parts() == []
    table = events([1, 2, 3, 4], [MIDNIGHT - 0.001, MIDNIGHT, MIDNIGHT + 5, MIDNIGHT - DAY])

    paths = lake.write_batch(table, 1, 4)

    by_date = {p.parent.name: lake.read_part(p)["seq"].to_pylist() for p in paths}
    assert by_date == {"date=2024-03-01": [1, 4], "date=2024-03-02": [2, 3]}
    assert names(list(paths)) == [f"date=2024-03-01/{part(1, 4)}", f"date=2024-03-02/{part(1, 4)}"]
    reader = backend.open()  # another process, say: it sees every part, whole
    assert lake.has_files() and names(list(reader.parts())) == names(list(paths))
    assert [reader.part_rows(p) for p in reader.parts()] == [2, 2]
    assert reader.read_part(reader.parts()[0], ["seq", "no_such_column"]).column_names == ["seq"]
    stats = lake_stats(reader)
    assert (stats["files"], stats["rows"], stats["dates"]) == (2, 4, 2)
    assert (stats["first_date"], stats["last_date"]) == ("2024-03-01", "2024-03-02")


def test_parts_up_to_a_seq_leave_out_only_later_batches(backend: Backend) -> None:
    lake = backend.open()
    for first, last in [(1, 2), (3, 5), (6, 9)]:
        lake.write_batch(
            events(list(range(first, last + 1)), [MIDNIGHT] * (last - first + 1)), first, last
        )

    assert lake.parts(max_seq=0) == []
    assert [p.name for p in lake.parts(max_seq=3)] == [part(1, 2), part(3, 5)]
    assert [p.name for p in lake.parts(max_seq=5)] == [part(1, 2), part(3, 5)]
    assert [p.name for p in lake.parts()] == [part(1, 2), part(3, 5), part(6, 9)]


def test_batches_past_the_committed_offset_are_dropped(backend: Backend) -> None:
    lake = backend.open()
    lake.write_batch(events([1, 2], [MIDNIGHT, MIDNIGHT]), 1, 2)
    lake.write_batch(events([3, 4], [MIDNIGHT, MIDNIGHT - DAY]), 3, 4)
    lake.write_batch(events([5, 6], [MIDNIGHT, MIDNIGHT + DAY]), 5, 6)

    assert lake.drop_uncommitted(committed_seq=2) == 4
    assert [p.name for p in lake.parts()] == [part(1, 2)]
    assert lake.drop_uncommitted(committed_seq=2) == 0
    assert lake_stats(backend.open())["rows"] == 2


@pytest.mark.parametrize("as_writer", [False, True], ids=["plain", "lease-holder"])
def test_a_rewritten_batch_leaves_no_copy_under_a_date_it_left(
    backend: Backend, as_writer: bool
) -> None:
    lake = backend.open()
    if as_writer:
        assert lake.acquire_writer(threading.Event())
    lake.write_batch(events([1, 2], [MIDNIGHT - DAY, MIDNIGHT]), 1, 2)
    lake.write_batch(events([3], [MIDNIGHT - DAY]), 3, 3)

    lake.write_batch(events([1, 2], [MIDNIGHT, MIDNIGHT + 1]), 1, 2)

    assert names(list(lake.parts())) == [
        f"date=2024-03-01/{part(3, 3)}",
        f"date=2024-03-02/{part(1, 2)}",
    ]
    assert lake_stats(backend.open())["rows"] == 3
    lake.release_writer()


def test_replacing_a_part_keeps_its_name_and_no_rows_remove_it(backend: Backend) -> None:
    lake = backend.open()
    [path] = lake.write_batch(events([1, 2, 3], [MIDNIGHT] * 3), 1, 3)
    table = lake.read_part(path)

    lake.replace_part(path, table.filter(pc.not_equal(table["seq"], 2)))

    assert lake.parts() == [path]
    assert lake.read_part(path)["seq"].to_pylist() == [1, 3]
    lake.replace_part(path, table.schema.empty_table())
    assert lake.parts() == [] and not lake.has_files()


def test_encrypted_parts_hide_the_readers_and_need_the_key(backend: Backend) -> None:
    key = DataKey.generate()
    lake = backend.open(DataKeys([key], True))
    [path] = lake.write_batch(events([1, 2], [MIDNIGHT, MIDNIGHT]), 1, 2)

    raw = backend.raw(path)
    assert raw.endswith(b"PARE") and NEEDLE_READER.encode() not in raw
    assert lake.read_part(path)["user_id"].to_pylist() == [NEEDLE_READER] * 2
    assert lake.part_rows(path) == 2
    with pytest.raises(DataKeyError, match=path.name):
        backend.open().read_part(path)  # no key configured
    with pytest.raises(DataKeyError, match=path.name):
        backend.open(DataKeys([DataKey.generate()], True)).part_rows(path)  # another key

    # Encryption turned off: new parts are in clear, and the old ones still read.
    clear = backend.open(DataKeys([key], False))
    [plain] = clear.write_batch(events([3], [MIDNIGHT]), 3, 3)
    assert backend.raw(plain).endswith(b"PAR1") and NEEDLE_READER.encode() in backend.raw(plain)
    assert lake_stats(clear)["rows"] == 3


def test_rewriting_parts_moves_them_under_the_active_key(backend: Backend) -> None:
    old, new = DataKey.generate(), DataKey.generate()
    [path] = backend.open().write_batch(events([1, 2], [MIDNIGHT, MIDNIGHT]), 1, 2)

    backend.open(DataKeys([old], True)).rewrite_part(path)  # encryption turned on
    assert backend.raw(path).endswith(b"PARE")
    backend.open(DataKeys([new, old], True)).rewrite_part(path)  # a key rotation

    assert backend.open(DataKeys([new], True)).read_part(path)["seq"].to_pylist() == [1, 2]
    with pytest.raises(DataKeyError):
        backend.open(DataKeys([old], True)).read_part(path)
    assert [p.name for p in backend.open().parts()] == [part(1, 2)]


def test_a_second_writer_waits_until_the_first_releases(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    assert first.acquire_writer(threading.Event())

    assert not second.acquire_writer(_stop_after(LIVE_HOLDER_WAIT))

    first.release_writer()
    assert second.acquire_writer(_stop_after(60))
    second.write_batch(events([1], [MIDNIGHT]), 1, 1)
    assert lake_stats(first)["rows"] == 1


HOLD_LAKE = """
import sys, threading, time
from pathlib import Path
from clickrec.backends.registry import open_lake
from clickrec.config import load_settings
lake = open_lake(load_settings(Path(sys.argv[1])))
assert lake.acquire_writer(threading.Event())
print("holding", flush=True)
time.sleep(600)
"""


def test_a_dead_writers_lease_passes_to_the_next(backend: Backend) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LAKE, str(backend.home)],
        env={**os.environ, **backend.env},
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"holding\n"
        waiter = backend.open()
        assert not waiter.acquire_writer(_stop_after(LIVE_HOLDER_WAIT))  # alive: it renews

        holder.kill()  # no release: the lease is left to lapse (S3) or the OS frees it
        holder.wait(timeout=30)

        assert waiter.acquire_writer(_stop_after(60))
        waiter.write_batch(events([1], [MIDNIGHT]), 1, 1)
        assert waiter.drop_uncommitted(committed_seq=1) == 0
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


def test_an_s3_writer_whose_lease_was_taken_writes_no_more(
    s3_server: S3Server, s3_bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **s3_env,
        "CLICKREC_STORES__LAKE": f"s3://{s3_bucket}/lake",
        "CLICKREC_S3__WRITER_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    lake = open_lake(load_settings(tmp_path, environ=env))
    try:
        assert lake.acquire_writer(threading.Event())
        # What a writer that wrongly judged this one dead would do: overwrite the lock.
        with contextlib.closing(s3_server.client()) as client:
            client.put_object(Bucket=s3_bucket, Key="lake/.writer.lock", Body=b'{"holder": "x"}')
        refused = None
        deadline = threading.Event()
        timer = threading.Timer(60, deadline.set)
        timer.start()
        try:
            while refused is None and not deadline.wait(LEASE_SECONDS / 10):
                try:
                    lake.write_batch(events([1], [MIDNIGHT]), 1, 1)
                except Conflict as exc:
                    refused = exc
        finally:
            timer.cancel()
        assert refused is not None and "another writer" in str(refused)
        with pytest.raises(Conflict):
            lake.replace_part(lake.parts()[0], events([], []))
        assert lake_stats(lake)["rows"] == 1  # the part written before is untouched
    finally:
        lake.close()


class _IgnoresConditions:
    """A client of a store that drops If-Match / If-None-Match (some S3-compatible do)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def put_object(self, **request: Any) -> Any:
        request.pop("IfMatch", None)
        request.pop("IfNoneMatch", None)
        return self.client.put_object(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_an_s3_store_that_ignores_conditional_writes_is_refused_as_the_writer(
    s3_server: S3Server, s3_bucket: str
) -> None:
    from clickrec.lake.s3 import S3Lake  # boto3: only where the S3 tests run

    lake = S3Lake(_IgnoresConditions(s3_server.client()), f"s3://{s3_bucket}/lake")
    try:
        with pytest.raises(StoreUnavailable, match="ignores conditional writes"):
            lake.acquire_writer(threading.Event())
    finally:
        lake.close()


def test_s3_stores_without_boto3_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("boto3", "botocore"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails: ModuleNotFoundError
    for name in ("clickrec.backends.s3", "clickrec.lake.s3", "clickrec.lake.s3_lease"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    env = {"CLICKREC_STORES__LAKE": "s3://bucket/lake", "CLICKREC_STORES__MODELS": "s3://b/m"}
    settings = load_settings(tmp_path, environ=env)

    with pytest.raises(StoreUnavailable, match=r"pip install 'clickrec\[s3\]'"):
        open_lake(settings)
    with pytest.raises(StoreUnavailable, match=r"pip install 'clickrec\[s3\]'"):
        open_model_store(settings)


def test_an_unreachable_bucket_is_one_line_at_start(
    s3_bucket: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**s3_env, "CLICKREC_STORES__LAKE": f"s3://{s3_bucket}-missing/lake"}
    with pytest.raises(StoreUnavailable, match=f"cannot open the lake at s3://{s3_bucket}-missing"):
        open_lake(load_settings(tmp_path, environ=env))


def _stop_after(seconds: float) -> threading.Event:
    """An event set ``seconds`` from now (how long a writer waits for the lease)."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return stop
