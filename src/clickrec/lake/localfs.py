"""Lake in a local folder: zstd Parquet parts, hive-partitioned by the UTC date of event time.

With data keys that encrypt, parts are written with Parquet modular encryption; parts of
either kind are read, so a lake written before encryption was turned on stays readable.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePath

import pyarrow as pa
import pyarrow.parquet as pq

from clickrec.core.datakeys import DataKeys
from clickrec.lake.encryption import PartCipher, open_part, read_part
from clickrec.lake.layout import (
    EVENTS,
    TEMP_SUFFIX,
    date_folder,
    is_uncommitted,
    may_hold,
    part_name,
    split_by_date,
)


def _fsync_dir(folder: Path) -> None:
    """Make a rename, create or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(table: pa.Table, path: Path, cipher: PartCipher | None) -> None:
    """Write, fsync, rename into place: readers see the whole part or none of it."""
    temp = path.with_name(f"{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    encryption = cipher.encryption_properties() if cipher is not None else None
    try:
        with open(temp, "wb") as out:
            pq.write_table(table, out, compression="zstd", encryption_properties=encryption)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


class LocalLake:
    """``<root>/events/date=YYYY-MM-DD/part-<first>-<last>.parquet``: a part per batch and date."""

    def __init__(self, root: Path, data_keys: DataKeys | None = None) -> None:
        self.root = Path(root)
        self._events = self.root / EVENTS
        self._lock_fd: int | None = None
        self._cipher = PartCipher(data_keys) if data_keys is not None else None
        self._encrypt = data_keys is not None and data_keys.encrypt

    def acquire_writer(self, stop: threading.Event, poll: float = 0.2) -> bool:
        """Become the lake's only writer (an exclusive lock the OS frees when the process
        dies), waiting until ``stop`` is set; True when acquired."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / ".writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if stop.wait(poll):
                    os.close(fd)
                    return False
                continue
            self._lock_fd = fd
            return True

    def release_writer(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the lock
            self._lock_fd = None

    def close(self) -> None:
        self.release_writer()

    def write_batch(self, table: pa.Table, batch_first: int, batch_last: int) -> list[Path]:
        """Write one consumer batch (seq range inclusive), one Parquet file per event date."""
        name = part_name(batch_first, batch_last)
        written = [self._write_part(day, part, name) for day, part in split_by_date(table)]
        self._remove_stale_copies(name, keep=set(written))
        return written

    def drop_uncommitted(self, committed_seq: int) -> int:
        """Remove parts of batches past the committed offset and stray temp files; count them."""
        doomed = [path for path in self._files() if is_uncommitted(path.name, committed_seq)]
        for path in doomed:
            path.unlink(missing_ok=True)
        # The deletions must survive a power cut: a resurrected part would duplicate the events
        # that the next, differently-bounded batch archives.
        for folder in {path.parent for path in doomed}:
            self._tidy_folder(folder)
        return len(doomed)

    def glob(self) -> str:
        """A path pattern DuckDB reads with hive partitioning."""
        return str(self._events / "*" / "*.parquet")

    def has_files(self) -> bool:
        return next(self._events.glob("*/*.parquet"), None) is not None

    def parts(self, max_seq: int | None = None) -> list[Path]:
        """Every part (only those that may hold a seq <= ``max_seq``), by date then seq."""
        if not self._events.is_dir():
            return []
        return sorted(
            path for path in self._events.glob("*/*.parquet") if may_hold(path.name, max_seq)
        )

    def read_part(self, path: PurePath, columns: list[str] | None = None) -> pa.Table:
        """One part's rows, decrypted if need be; DataKeyError naming the file if it can't be."""
        return read_part(Path(path), self._cipher, columns)

    def part_rows(self, path: PurePath) -> int:
        """A part's row count, from its (decrypted) footer alone."""
        with open_part(Path(path), self._cipher) as part:
            return int(part.metadata.num_rows)

    def rewrite_part(self, path: PurePath) -> None:
        """Rewrite a part under the active data key (or in clear if encryption is off),
        atomically: a crash leaves the old part or the new one, each readable."""
        _write_atomically(self.read_part(path), Path(path), self._write_cipher)

    def replace_part(self, path: PurePath, table: pa.Table) -> None:
        """Replace a part's rows (erasure) atomically, under the active data key; a part
        left with no rows is removed. Its name (the batch's seq range) stays, so recovery
        and the archive's exactly-once bookkeeping are unchanged."""
        path = Path(path)
        if table.num_rows:
            _write_atomically(table, path, self._write_cipher)
        else:
            path.unlink(missing_ok=True)
            self._tidy_folder(path.parent)

    def _write_part(self, day: dt.date, part: pa.Table, name: str) -> Path:
        folder = self._events / date_folder(day)
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            _fsync_dir(folder.parent)
        path = folder / name
        _write_atomically(part, path, self._write_cipher)
        return path

    @property
    def _write_cipher(self) -> PartCipher | None:
        return self._cipher if self._encrypt else None

    def _remove_stale_copies(self, name: str, keep: set[Path]) -> None:
        """A rewrite replaces the batch everywhere, even under dates it no longer has rows in."""
        for path in self._events.glob(f"*/{name}"):
            if path not in keep:
                path.unlink(missing_ok=True)
                self._tidy_folder(path.parent)

    def _files(self) -> Iterator[Path]:
        if self._events.is_dir():
            yield from (path for path in self._events.glob("*/*") if path.is_file())

    def _tidy_folder(self, folder: Path) -> None:
        """Persist deletions in ``folder``; drop the folder once it holds nothing."""
        if any(folder.iterdir()):
            _fsync_dir(folder)
        else:
            folder.rmdir()
            _fsync_dir(folder.parent)
