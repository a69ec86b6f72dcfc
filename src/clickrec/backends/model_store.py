"""Where model artifacts live: a local folder, or S3 with a local cache of what is loaded.

An artifact is a folder of files (``models/base.Artifact``), sealed when encryption is on.
The catalog records each version's location: its folder's path, or its ``s3://`` URL.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickrec.core.datakeys import write_file_atomically
from clickrec.core.errors import StoreUnavailable

log = logging.getLogger("clickrec.models")

CACHED_VERSIONS = 3
"""Artifacts downloaded from S3 that the cache keeps (the newest by use)."""


class LocalModelStore:
    """``<root>/<version>/<file>``: an artifact is saved where it lives."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def folder_for(self, version: str) -> Path:
        return self.root / version

    def publish(self, version: str, folder: Path) -> str:
        return str(folder.resolve())

    def fetch(self, location: str) -> Path:
        if location.startswith("s3://"):
            raise StoreUnavailable(
                f"the model at {location} is on S3 but stores.models is a local folder: "
                "set stores.models to the s3:// URL the models were trained into"
            )
        return Path(location)

    def files(self) -> list[str]:
        return sorted(
            str(file)
            for file in self.root.glob("*/*")
            if file.is_file() and not file.name.endswith(".tmp") and not file.name.startswith(".")
        )

    def rewrite(self, file: str, change: Callable[[bytes], bytes]) -> None:
        path = Path(file)
        write_file_atomically(path, change(path.read_bytes()))

    def close(self) -> None:
        pass


class S3ModelStore:
    """``s3://bucket/prefix/<version>/<file>``, loaded through ``<cache>/<version>``.

    A version is saved into the cache, uploaded file by file, and only then recorded in the
    catalog: whoever finds it there finds it whole. A download goes to a temporary folder
    renamed into the cache once complete, so a cached folder is always a whole artifact.
    """

    def __init__(self, client: Any, url: str, cache: Path) -> None:
        self.client = client
        self.bucket, self.prefix = _split(url)
        self.cache = cache
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
        cache.chmod(0o700)  # it holds model files (sealed when encryption is on)

    def folder_for(self, version: str) -> Path:
        return self.cache / version

    def publish(self, version: str, folder: Path) -> str:
        """Upload the folder to ``<url>/<version>/``; that URL."""
        key = f"{self.prefix}/{version}" if self.prefix else version
        # meta.json last: a reader that lists the version before the catalog names it
        # (none should) finds it incomplete rather than wrong.
        for file in sorted(folder.iterdir(), key=lambda f: (f.name == "meta.json", f.name)):
            if file.is_file():
                self.client.upload_file(str(file), self.bucket, f"{key}/{file.name}")
        self._evict()
        return f"s3://{self.bucket}/{key}"

    def fetch(self, location: str) -> Path:
        """The artifact's cached folder, downloaded first when it is not there; a location
        that is a local path (trained before the models moved to S3) is that path."""
        if not location.startswith("s3://"):
            return Path(location)
        bucket, key = _split(location)
        folder = self.cache / key.rsplit("/", 1)[-1]
        if not folder.is_dir():
            self._download(bucket, key, folder)
            self._evict()
        os.utime(folder)  # in use: the newest to keep
        return folder

    def files(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        return sorted(
            f"s3://{self.bucket}/{key}"
            for key in self._keys(self.bucket, base)
            if key[len(base) :].count("/") == 1 and not key.rsplit("/", 1)[-1].startswith(".")
        )

    def rewrite(self, file: str, change: Callable[[bytes], bytes]) -> None:
        """Replace one uploaded file (a PUT replaces it whole); its cached copy is dropped."""
        bucket, key = _split(file)
        answer = self.client.get_object(Bucket=bucket, Key=key)
        with answer["Body"] as body:
            data = change(body.read())
        self.client.put_object(Bucket=bucket, Key=key, Body=data)
        version = key.rsplit("/", 2)[-2]
        shutil.rmtree(self.cache / version, ignore_errors=True)

    def close(self) -> None:
        self.client.close()

    def _download(self, bucket: str, prefix: str, folder: Path) -> None:
        temp = self.cache / f".{folder.name}.{uuid.uuid4().hex}.tmp"
        temp.mkdir(mode=0o700)
        try:
            keys = self._keys(bucket, prefix + "/")
            if not keys:
                raise StoreUnavailable(f"no model files at s3://{bucket}/{prefix}")
            for key in keys:
                self.client.download_file(bucket, key, str(temp / key.rsplit("/", 1)[-1]))
            try:
                temp.rename(folder)
            except OSError:  # another process cached it meanwhile: theirs is as good
                if not folder.is_dir():
                    raise
        finally:
            shutil.rmtree(temp, ignore_errors=True)

    def _keys(self, bucket: str, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [entry["Key"] for page in pages for entry in page.get("Contents", ())]

    def _evict(self) -> None:
        """Keep only the newest cached versions (the one in use is the newest)."""
        folders = [f for f in self.cache.iterdir() if f.is_dir() and not f.name.startswith(".")]
        folders.sort(key=lambda f: f.stat().st_mtime, reverse=True)
        for folder in folders[CACHED_VERSIONS:]:
            shutil.rmtree(folder, ignore_errors=True)


def _split(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` as (bucket, key without slashes at its ends)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key.strip("/")
