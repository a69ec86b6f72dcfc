"""Data keys: ids, envelope sealing, key files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from clickrec.core.datakeys import (
    DataKey,
    DataKeyError,
    DataKeys,
    create_key_file,
    read_key_file,
    unseal_if_sealed,
    write_key_file,
)


def test_a_key_id_names_the_key_and_hides_it() -> None:
    key = DataKey.generate()

    assert key.key_id == DataKey(key.secret).key_id
    assert len(key.key_id) == 16 and key.key_id != DataKey.generate().key_id
    assert key.secret.hex()[:16] != key.key_id
    assert "secret" not in repr(key)
    with pytest.raises(DataKeyError, match="32 bytes"):
        DataKey(b"short")


def test_sealed_bytes_open_only_with_their_key() -> None:
    keys = DataKeys([DataKey.generate()])
    blob = keys.seal(b"reader-4f9c read post-7d21")

    assert b"4f9c" not in blob and keys.active.key_id.encode() in blob
    assert keys.unseal(blob, "f") == b"reader-4f9c read post-7d21"
    assert unseal_if_sealed(b"plain", None, "f") == b"plain"
    with pytest.raises(DataKeyError, match="cannot decrypt f: data key .* is not among"):
        DataKeys([DataKey.generate()]).unseal(blob, "f")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(DataKeyError, match="cannot decrypt f"):
        keys.unseal(bytes(tampered), "f")
    with pytest.raises(DataKeyError, match="f is encrypted"):
        unseal_if_sealed(blob, None, "f")


def test_an_older_key_still_opens_what_it_sealed() -> None:
    old, new = DataKey.generate(), DataKey.generate()
    blob = DataKeys([old]).seal(b"x")

    both = DataKeys([new, old])

    assert both.unseal(blob, "f") == b"x"
    assert both.seal(b"x")[8:24] == new.key_id.encode()


def test_key_files(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    assert create_key_file(path)
    [first] = read_key_file(path)
    assert not create_key_file(path)  # never replaces a key
    assert read_key_file(path) == [first]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    second = DataKey.generate()
    write_key_file(path, [second, first])

    assert read_key_file(path) == [second, first]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]
    path.write_text("# nothing\n")
    with pytest.raises(DataKeyError, match="holds no key"):
        read_key_file(path)
