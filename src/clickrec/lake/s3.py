"""Lake in an S3 bucket (or any S3-compatible store), laid out and encrypted as the local one.

``s3://bucket/prefix/events/date=YYYY-MM-DD/part-<first>-<last>.parquet``. A part is written
with one PUT, which S3 shows whole or not at all, so readers never see half a part. Parts
are named by ``bucket/key`` paths, as pyarrow's filesystems name them. One writer at a
time holds the lease in ``prefix/.writer.lock`` (``s3_lease.py``).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import PurePath, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from clickrec.backends.s3 import S3Url
from clickrec.core.datakeys import DataKeys
from clickrec.lake.encryption import PartCipher, open_part, read_part
from clickrec.lake.layout import (
    EVENTS,
    date_folder,
    is_uncommitted,
    may_hold,
    part_name,
    split_by_date,
)
from clickrec.lake.s3_lease import WriterLease

_FOOTER_READ = 64 * 1024  # pyarrow's first read of a Parquet file: its last 64 KiB
_DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes


class S3Lake:
    """The lake at ``s3://bucket/prefix`` through ``client`` (a boto3 S3 client)."""

    def __init__(
        self,
        client: Any,
        url: str,
        data_keys: DataKeys | None = None,
        lease_seconds: float = 30.0,
    ) -> None:
        self.url = S3Url.parse(url)
        self.client = client
        self.root = PurePosixPath(self.url.bucket, self.url.prefix)
        self._events = self.url.key(EVENTS) + "/"
        self._lease = WriterLease(
            client, self.url.bucket, self.url.key(".writer.lock"), lease_seconds
        )
        self._cipher = PartCipher(data_keys) if data_keys is not None else None
        self._encrypt = data_keys is not None and data_keys.encrypt
        # Part name -> its keys; kept while this lake holds the lease (no one else writes
        # then), so a batch need not list the whole lake to find stale copies of itself.
        self._known: dict[str, set[str]] | None = None

    def acquire_writer(self, stop: threading.Event, poll: float = 0.2) -> bool:
        """Wait for the lake's writer lease (until ``stop``); True when held. A holder that
        died keeps it ``s3.writer_lease_seconds`` after its last renewal, then it is taken."""
        if self._lease.held:
            return True
        self._known = None
        return self._lease.acquire(stop, poll)

    def release_writer(self) -> None:
        self._lease.release()
        self._known = None

    def close(self) -> None:
        self.release_writer()
        self.client.close()

    def write_batch(self, table: pa.Table, batch_first: int, batch_last: int) -> list[PurePath]:
        """Write one consumer batch (seq range inclusive), one part per event date."""
        self._lease.check()
        name = part_name(batch_first, batch_last)
        written = [
            self._put(f"{self._events}{date_folder(day)}/{name}", part)
            for day, part in split_by_date(table)
        ]
        # A rewrite replaces the batch everywhere, even under dates it no longer has rows in.
        self._delete(sorted(self._copies(name) - set(written)))
        return [self._path(key) for key in written]

    def drop_uncommitted(self, committed_seq: int) -> int:
        """Remove parts of batches past the committed offset; count them."""
        self._lease.check()
        doomed = [key for key in self._keys() if is_uncommitted(_name(key), committed_seq)]
        self._delete(doomed)
        return len(doomed)

    def has_files(self) -> bool:
        return any(_name(key).endswith(".parquet") for key in self._keys())

    def parts(self, max_seq: int | None = None) -> list[PurePath]:
        """Every part (only those that may hold a seq <= ``max_seq``), by date then seq."""
        return sorted(
            self._path(key)
            for key in self._keys()
            if _name(key).endswith(".parquet") and may_hold(_name(key), max_seq)
        )

    def read_part(self, path: PurePath, columns: list[str] | None = None) -> pa.Table:
        """One part's rows, decrypted if need be; DataKeyError naming it if it can't be."""
        answer = self.client.get_object(Bucket=self.url.bucket, Key=self._key(path))
        with answer["Body"] as body:
            data = body.read()
        return read_part(pa.BufferReader(data), self._cipher, columns, f"s3://{path}")

    def part_rows(self, path: PurePath) -> int:
        """A part's row count, from its (decrypted) footer alone: two small requests."""
        reader = _ObjectReader(self.client, self.url.bucket, self._key(path))
        with (
            pa.PythonFile(reader, mode="r") as source,
            open_part(source, self._cipher, f"s3://{path}") as part,
        ):
            return int(part.metadata.num_rows)

    def rewrite_part(self, path: PurePath) -> None:
        """Rewrite a part under the active data key (or in clear if encryption is off)."""
        self._lease.check()
        self._put(self._key(path), self.read_part(path))

    def replace_part(self, path: PurePath, table: pa.Table) -> None:
        """Replace a part's rows (erasure); a part left with no rows is removed. Its name
        (the batch's seq range) stays, so recovery and exactly-once are unchanged."""
        self._lease.check()
        if table.num_rows:
            self._put(self._key(path), table)
        else:
            self._delete([self._key(path)])

    def _put(self, key: str, table: pa.Table) -> str:
        cipher = self._cipher if self._encrypt else None
        encryption = cipher.encryption_properties() if cipher is not None else None
        out = io.BytesIO()
        pq.write_table(table, out, compression="zstd", encryption_properties=encryption)
        self.client.put_object(Bucket=self.url.bucket, Key=key, Body=out.getvalue())
        if self._known is not None:
            self._known.setdefault(_name(key), set()).add(key)
        return key

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            chunk = keys[start : start + _DELETE_BATCH]
            answer = self.client.delete_objects(
                Bucket=self.url.bucket,
                Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
            )
            if answer.get("Errors"):
                error = answer["Errors"][0]
                raise OSError(f"cannot delete s3://{self.url.bucket}/{error['Key']}: {error}")
        if self._known is not None:
            for key in keys:
                self._known.get(_name(key), set()).discard(key)

    def _copies(self, name: str) -> set[str]:
        """The keys of every part named ``name``."""
        if self._known is None and self._lease.held:
            self._known = {}
            for key in self._keys():
                self._known.setdefault(_name(key), set()).add(key)
        if self._known is not None:
            return set(self._known.get(name, ()))
        return {key for key in self._keys() if _name(key) == name}

    def _keys(self) -> Iterator[str]:
        """The keys of every file at ``events/<date>/<file>``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.url.bucket, Prefix=self._events
        )
        for page in pages:
            for entry in page.get("Contents", ()):
                if entry["Key"][len(self._events) :].count("/") == 1:
                    yield entry["Key"]

    def _path(self, key: str) -> PurePosixPath:
        return PurePosixPath(self.url.bucket, key)

    def _key(self, path: PurePath) -> str:
        """The key of a part path this lake handed out."""
        text = PurePosixPath(path).as_posix()
        key = text.removeprefix(f"{self.url.bucket}/")
        if key == text or not key.startswith(self._events):
            raise ValueError(f"{path} is not a part of the lake at {self.url}")
        return key


def _name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


class _ObjectReader(io.RawIOBase):
    """Random access to one object by ranged GETs; its last 64 KiB are fetched once, so a
    footer (with the ``PARE`` check before it) costs a HEAD and one GET."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        super().__init__()
        self.client, self.bucket, self.key = client, bucket, key
        self.size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        self._pos = 0
        self._tail_start = max(0, self.size - _FOOTER_READ)
        self._tail: bytes | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        end = min(self.size, self._pos + len(buffer))
        if end <= self._pos:
            return 0
        if self._pos >= self._tail_start:
            if self._tail is None:
                self._tail = self._get(self._tail_start, self.size)
            data = self._tail[self._pos - self._tail_start : end - self._tail_start]
        else:
            data = self._get(self._pos, end)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _get(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)``."""
        answer = self.client.get_object(
            Bucket=self.bucket, Key=self.key, Range=f"bytes={start}-{end - 1}"
        )
        with answer["Body"] as body:
            return bytes(body.read())
