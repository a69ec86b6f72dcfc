"""Parquet modular encryption of lake parts, with the data keys as an in-process KMS.

Every part gets fresh data keys (AES-GCM, 256 bit) for its columns and footer; the active
master key wraps them and its id is recorded in the part's footer key material, so a part
says which master key can open it. The footer itself is encrypted: without a key even the
schema and column statistics (min/max user ids) stay hidden.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq
import pyarrow.parquet.encryption as pe

from clickrec.core.datakeys import DataKeyError, DataKeys

_ENCRYPTED_MAGIC = b"PARE"  # the last bytes of a Parquet file with an encrypted footer
_CACHE = dt.timedelta(minutes=10)


class _KeysKms(pe.KmsClient):
    """Wraps and unwraps Parquet data keys with a master key from ``DataKeys``."""

    def __init__(self, keys: DataKeys) -> None:
        super().__init__()
        self.keys = keys

    def wrap_key(self, key_bytes: bytes, master_key_identifier: str) -> str:
        return base64.b64encode(self.keys.wrap(key_bytes, master_key_identifier)).decode()

    def unwrap_key(self, wrapped_key: str, master_key_identifier: str) -> bytes:
        return self.keys.unwrap(base64.b64decode(wrapped_key), master_key_identifier)


def is_encrypted(path: Path) -> bool:
    """True for a part written with an encrypted footer (ends in ``PARE``, not ``PAR1``)."""
    with open(path, "rb") as file:
        file.seek(-len(_ENCRYPTED_MAGIC), 2)
        return file.read() == _ENCRYPTED_MAGIC


def _tail_is_encrypted(source: pa.NativeFile) -> bool:
    source.seek(-len(_ENCRYPTED_MAGIC), 2)
    tail = source.read(len(_ENCRYPTED_MAGIC))
    source.seek(0)
    return tail == _ENCRYPTED_MAGIC


class PartCipher:
    """Encryption and decryption properties for lake parts, under one set of data keys."""

    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys
        self._factory = pe.CryptoFactory(lambda _config: _KeysKms(keys))
        self._kms = pe.KmsConnectionConfig()

    def encryption_properties(self) -> pe.FileEncryptionProperties:
        """Fresh data keys for one part, wrapped by the active key (directly: no KEK layer)."""
        config = pe.EncryptionConfiguration(
            footer_key=self.keys.active.key_id,
            uniform_encryption=True,
            encryption_algorithm="AES_GCM_V1",
            data_key_length_bits=256,
            double_wrapping=False,
            plaintext_footer=False,
            cache_lifetime=_CACHE,
        )
        return self._factory.file_encryption_properties(self._kms, config)

    def decryption_properties(self) -> pe.FileDecryptionProperties:
        config = pe.DecryptionConfiguration(cache_lifetime=_CACHE)
        return self._factory.file_decryption_properties(self._kms, config)


Source: TypeAlias = Path | pa.NativeFile
"""A part as a local file, or as an open file of another store (named by ``name``)."""


def open_part(source: Source, cipher: PartCipher | None, name: str = "") -> pq.ParquetFile:
    """A part, plain or encrypted; DataKeyError naming the file if it cannot be opened."""
    name = name or str(source)
    if not (is_encrypted(source) if isinstance(source, Path) else _tail_is_encrypted(source)):
        return pq.ParquetFile(source)
    if cipher is None:
        raise DataKeyError(f"cannot decrypt {name}: it is encrypted and no data key is configured")
    try:
        return pq.ParquetFile(source, decryption_properties=cipher.decryption_properties())
    except (DataKeyError, OSError, pa.ArrowException) as exc:
        raise DataKeyError(f"cannot decrypt {name}: {exc}") from exc


def read_part(
    source: Source, cipher: PartCipher | None, columns: list[str] | None = None, name: str = ""
) -> pa.Table:
    """The rows of one part: only those of ``columns`` it has, when given."""
    name = name or str(source)
    with open_part(source, cipher, name) as part:
        if columns is not None:
            present = set(part.schema_arrow.names)
            columns = [column for column in columns if column in present]
        try:
            return part.read(columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise DataKeyError(f"cannot decrypt {name}: {exc}") from exc
