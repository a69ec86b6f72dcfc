"""Data keys for encryption at rest: 256-bit AES keys, named by an id derived from the key.

A key file holds one base64 key per line, newest first; the first one encrypts, every one
decrypts (two are present only while a rotation is under way). A key's id is a keyed hash
of the key itself, so a file can record which key wrapped it without revealing anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clickrec.core.errors import ClickrecError

KEY_BYTES = 32
_NONCE_BYTES = 12
_WRAPPED_BYTES = _NONCE_BYTES + KEY_BYTES + 16  # nonce, encrypted data key, GCM tag
_ID_CHARS = 16
SEAL_MAGIC = b"CLKSEAL1"
"""The first bytes of a file sealed by ``DataKeys.seal``: magic, key id, wrapped data key."""
_SEAL_HEADER = len(SEAL_MAGIC) + _ID_CHARS + _WRAPPED_BYTES


class DataKeyError(ClickrecError):
    """A data key is missing or wrong, or a file cannot be decrypted with the keys at hand."""


def key_id_of(secret: bytes) -> str:
    """The public name of a key: 16 hex characters of an HMAC under the key."""
    return hmac.new(secret, b"clickrec data key id", hashlib.sha256).hexdigest()[:_ID_CHARS]


@dataclass(frozen=True)
class DataKey:
    secret: bytes = field(repr=False)
    key_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise DataKeyError(f"a data key is {KEY_BYTES} bytes, got {len(self.secret)}")
        object.__setattr__(self, "key_id", key_id_of(self.secret))

    @classmethod
    def generate(cls) -> DataKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str) -> DataKey:
        try:
            return cls(base64.b64decode(text.strip(), validate=True))
        except binascii.Error as exc:
            raise DataKeyError("a data key must be base64 (of 32 random bytes)") from exc

    def to_base64(self) -> str:
        return base64.b64encode(self.secret).decode()


class DataKeys:
    """The keys at hand: ``active`` wraps what is written, any of them unwraps what is read.

    ``encrypt`` is False when encryption is turned off: new files are written in clear, and
    files encrypted earlier still read.
    """

    def __init__(self, keys: Sequence[DataKey], encrypt: bool = True) -> None:
        if not keys:
            raise DataKeyError("no data key given")
        self._keys = {key.key_id: key for key in keys}
        self.active = keys[0]
        self.encrypt = encrypt

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def get(self, key_id: str) -> DataKey:
        try:
            return self._keys[key_id]
        except KeyError:
            raise DataKeyError(
                f"data key {key_id} is not among the configured keys ({', '.join(self._keys)})"
            ) from None

    def wrap(self, data_key: bytes, key_id: str | None = None) -> bytes:
        """``data_key`` encrypted under a master key (the active one unless named)."""
        master = self.get(key_id) if key_id else self.active
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return nonce + AESGCM(master.secret).encrypt(nonce, data_key, master.key_id.encode())

    def unwrap(self, wrapped: bytes, key_id: str) -> bytes:
        master = self.get(key_id)
        try:
            return AESGCM(master.secret).decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], key_id.encode()
            )
        except InvalidTag:
            raise DataKeyError(f"data key {key_id} does not unwrap this file's key") from None

    def seal(self, plaintext: bytes) -> bytes:
        """Envelope encryption: a fresh data key encrypts ``plaintext``, the active key wraps it."""
        data_key = AESGCM.generate_key(bit_length=8 * KEY_BYTES)
        header = SEAL_MAGIC + self.active.key_id.encode() + self.wrap(data_key)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return header + nonce + AESGCM(data_key).encrypt(nonce, plaintext, header)

    def unseal(self, blob: bytes, name: str) -> bytes:
        """The plaintext of a sealed ``blob``; DataKeyError naming ``name`` if it cannot be had."""
        header, body = blob[:_SEAL_HEADER], blob[_SEAL_HEADER:]
        key_id = header[len(SEAL_MAGIC) : len(SEAL_MAGIC) + _ID_CHARS].decode("ascii", "replace")
        try:
            data_key = self.unwrap(header[len(SEAL_MAGIC) + _ID_CHARS :], key_id)
            return AESGCM(data_key).decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], header)
        except (DataKeyError, InvalidTag, ValueError) as exc:
            raise DataKeyError(f"cannot decrypt {name}: {exc or 'corrupt or tampered'}") from exc


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(SEAL_MAGIC)


def unseal_if_sealed(blob: bytes, keys: DataKeys | None, name: str) -> bytes:
    """Files written before encryption was turned on are read as they are."""
    if not is_sealed(blob):
        return blob
    if keys is None:
        raise DataKeyError(f"{name} is encrypted and no data key is configured")
    return keys.unseal(blob, name)


def read_key_file(path: Path) -> list[DataKey]:
    """The keys of a key file, newest first; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise DataKeyError(f"data key file {path} does not exist") from None
    keys = [DataKey.from_base64(line) for line in lines if line.strip() and line[0] != "#"]
    if not keys:
        raise DataKeyError(f"data key file {path} holds no key")
    return keys


def write_key_file(path: Path, keys: Sequence[DataKey]) -> None:
    """Replace the key file atomically (mode 600): a crash leaves the old or the new one."""
    lines = ["# clickrec data keys, newest first: the first encrypts, all decrypt"]
    lines += [f"# {key.key_id}\n{key.to_base64()}" for key in keys]
    write_file_atomically(path, ("\n".join(lines) + "\n").encode())


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write a temp file (mode 600), fsync, rename over ``path``, fsync the folder."""
    temp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename, link or unlink in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_key_file(path: Path) -> bool:
    """Write a new random key to ``path`` unless a file is there; True when created.

    The file appears whole or not at all, and two processes racing here end with one key.
    """
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.new")
    write_key_file(temp, [DataKey.generate()])
    try:
        os.link(temp, path)  # fails if another process created the file first
    except FileExistsError:
        return False
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return True
