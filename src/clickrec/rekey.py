"""Data key rotation: a new key, every lake part and model file re-encrypted, the old retired.

Crash-safe by order: the key file first lists the new key beside the old one, each file is
then replaced atomically (write, fsync, rename), and only when all are done is the old key
dropped. A crash at any point leaves every file readable with the keys in the key file, and
running the rotation again finishes the job under the same new key.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath

from clickrec.backends.registry import (
    data_key_file,
    open_catalog,
    open_data_keys,
    open_lake,
    open_model_store,
)
from clickrec.config import Settings
from clickrec.core.datakeys import (
    DataKey,
    DataKeyError,
    DataKeys,
    read_key_file,
    unseal_if_sealed,
    write_key_file,
)
from clickrec.core.errors import Conflict
from clickrec.keys import KeyRing

Progress = Callable[[int, int], None]
"""Called with (files done, files in all) as the rotation goes."""


@dataclass(frozen=True)
class Rotation:
    key_id: str
    """The key that now encrypts everything."""
    retired: list[str]
    files: int
    key_file: Path | None
    """None when the keys come from CLICKREC_DATA_KEY, which the operator must edit."""


def rotate_data_key(
    settings: Settings, progress: Progress = lambda done, total: None, lock_wait: float = 5.0
) -> Rotation:
    """Re-encrypt the lake and the model artifacts under a new data key; retire the old.

    Holds the lake's writer lock throughout, so it refuses to run beside a worker that
    archives (stop ``clickrec serve`` first): a part written meanwhile under the old key
    would be unreadable once that key is retired.
    """
    if not settings.encryption.enabled:
        raise DataKeyError("encryption is off (encryption.enabled = false): nothing to rotate")
    current = open_data_keys(settings)
    assert current is not None  # encryption is on
    guard = open_lake(settings)
    stop = threading.Event()
    timer = threading.Timer(lock_wait, stop.set)
    timer.start()
    try:
        if not guard.acquire_writer(stop):
            guard.close()
            raise Conflict("the lake is being written (is `clickrec serve` running?); stop it")
    finally:
        timer.cancel()
    try:
        path = data_key_file(settings)
        keys = _with_new_key(path, current)
        files = _reseal_files(settings, keys, progress)
        # The SigV4 secrets of API keys are sealed too (boto3 clients sign with them).
        catalog = open_catalog(settings)
        try:
            KeyRing(catalog, keys).reseal_secrets()
        finally:
            catalog.close()
        retired = [key_id for key_id in keys.key_ids if key_id != keys.active.key_id]
        if path is not None:
            write_key_file(path, [keys.active])
        return Rotation(keys.active.key_id, retired, files, path)
    finally:
        guard.close()


def _reseal_files(settings: Settings, keys: DataKeys, progress: Progress) -> int:
    """Rewrite every lake part and model file under the active key; count them."""
    lake = open_lake(settings, keys)
    try:
        models = open_model_store(settings)
        try:
            files: list[PurePath | str] = [*lake.parts(), *models.files()]
            for done, file in enumerate(files, start=1):
                if isinstance(file, PurePath):
                    lake.rewrite_part(file)
                else:
                    models.rewrite(file, functools.partial(_resealed, name=file, keys=keys))
                progress(done, len(files))
            return len(files)
        finally:
            models.close()
    finally:
        lake.close()


def _with_new_key(path: Path | None, current: DataKeys) -> DataKeys:
    """The keys to rotate with: a new active key added to the key file, unless a rotation
    that stopped half-way already added one (then it is finished with that key)."""
    if path is None:
        if len(current.key_ids) < 2:
            raise DataKeyError(
                "CLICKREC_DATA_KEY holds one key: put a new key first, then the old one "
                "(comma-separated), and run this again"
            )
        return current
    keys = read_key_file(path)
    if len(keys) == 1:
        keys = [DataKey.generate(), *keys]
        write_key_file(path, keys)
    return DataKeys(keys)


def _resealed(data: bytes, name: str, keys: DataKeys) -> bytes:
    """An artifact file's bytes sealed under the active key."""
    return keys.seal(unseal_if_sealed(data, keys, name))
