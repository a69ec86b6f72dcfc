"""Find where strings lie in a folder: in the raw bytes of every file, and inside the files
whose bytes are compressed (Parquet pages, NumPy archives), decoded."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def where(folder: Path, needles: list[str]) -> dict[str, set[str]]:
    """For each needle, the files (relative paths) that hold it, raw or decoded."""
    found: dict[str, set[str]] = {n: set() for n in needles}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        texts = [path.read_bytes()]
        texts += _decoded(path, texts[0])
        for needle in needles:
            raw = needle.encode()
            if any(raw in text for text in texts):
                found[needle].add(str(path.relative_to(folder)))
    return found


def _decoded(path: Path, data: bytes) -> list[bytes]:
    if data[:4] == b"PAR1" and data[-4:] == b"PAR1":
        table = pq.read_table(io.BytesIO(data))
        return [str(table.to_pylist()).encode()]
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [archive.read(name) for name in archive.namelist()]
        return members + [text for member in members for text in _decoded(path, member)]
    if data[:6] == b"\x93NUMPY":  # strings are UTF-32 inside: decode them
        return [str(np.load(io.BytesIO(data), allow_pickle=False).tolist()).encode()]
    return []
