"""One writer at a time across machines: a lease on one S3 object, by conditional PUTs.

- **Take.** ``PUT If-None-Match: *`` creates the lock object. One that exists is taken with
  ``PUT If-Match: <its ETag>`` when its holder released it, or when a waiter has seen the
  same ETag for the holder's whole lease: the holder stopped renewing (it died, or lost
  S3). Of several waiters the first conditional PUT wins; the others get 412 and wait on.
- **Hold.** A thread renews every quarter lease with ``PUT If-Match: <own ETag>`` (each
  body differs, so the ETag changes). A 412 means another writer took the lease: lost.
- **Write only while valid**: until half a lease after the last renewal was *sent*. A waiter
  takes over a whole lease after it first saw that renewal, so a write begun in time lands
  before then unless it takes more than half a lease.
- **Release.** ``PUT If-Match`` of a ``released`` body: the next writer takes it at once.

Expiry is timed by each machine's own monotonic clock; clocks are never compared.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from clickrec.backends.s3 import CLIENT_ERRORS, describe, status
from clickrec.core.errors import Conflict, StoreUnavailable

log = logging.getLogger("clickrec.lake")

_TAKEN = (409, 412)
"""Another conditional write won (412), or raced ours (409 ConditionalRequestConflict)."""


class WriterLease:
    """The lease on ``s3://bucket/key``; ``seconds`` is how long a silent holder keeps it."""

    def __init__(self, client: Any, bucket: str, key: str, seconds: float) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.seconds = seconds
        self.holder = uuid.uuid4().hex
        self._etag = ""
        self._valid_until = 0.0
        self._renewals = 0
        self._lost = False
        self._probed = False  # the store refuses what it must (checked on the first take)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._renewer is not None

    def acquire(self, stop: threading.Event, poll: float) -> bool:
        """Wait for the lease until ``stop`` is set; True once held."""
        poll = max(poll, self.seconds / 30)  # a waiter polls with GETs: few, for a long wait
        seen: tuple[str, float] | None = None  # an ETag of the lock, and when first seen
        while True:
            try:
                if self._take({"IfNoneMatch": "*"}):
                    return True
                current = self._read()
                if current is not None:
                    etag, lease = current
                    if seen is None or seen[0] != etag:
                        seen = (etag, time.monotonic())
                    silent = time.monotonic() - seen[1]
                    if lease.get("released") or silent >= _seconds(lease, self.seconds):
                        if self._take({"IfMatch": etag}):
                            if not lease.get("released"):
                                log.warning("took over the lake's writer lease from %s", lease)
                            return True
                        seen = None
            except CLIENT_ERRORS as exc:  # S3 unreachable: wait on, as for a busy lease
                log.warning("cannot take the lake's writer lease yet: %s", describe(exc))
            if stop.wait(poll):
                return False

    def release(self) -> None:
        """Stop renewing; hand the lease on at once unless it was lost."""
        if self._renewer is None:
            return
        self._stop.set()
        self._renewer.join()
        self._renewer = None
        if not self._lost:
            try:
                self._put({"IfMatch": self._etag}, released=True)
            except CLIENT_ERRORS as exc:
                log.warning(
                    "could not release the lake's writer lease (the next writer waits "
                    "%.0f s for it): %s",
                    self.seconds,
                    describe(exc),
                )

    def check(self) -> None:
        """Raise Conflict when this process held the lease and may no longer write."""
        if self._renewer is None:
            return  # never taken: writes are not fenced, as in the local lake
        if self._lost:
            raise Conflict("another writer took the lake's writer lease: this one writes no more")
        if time.monotonic() > self._valid_until:
            raise Conflict(
                "the lake's writer lease could not be renewed for half its term "
                f"({self.seconds / 2:.0f} s): not writing until it is"
            )

    def _take(self, condition: dict[str, str]) -> bool:
        sent = time.monotonic()
        try:
            self._etag = self._put(condition)
        except CLIENT_ERRORS as exc:
            if status(exc) in _TAKEN:
                return False
            raise
        if not self._probed:
            self._refuse_a_store_without_conditions()
            self._probed = True
        self._valid_until = sent + self.seconds / 2
        self._lost = False
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="lake-lease", daemon=True)
        self._renewer.start()
        return True

    def _refuse_a_store_without_conditions(self) -> None:
        """StoreUnavailable when the store ignores conditional writes (some S3-compatible
        ones do): two writers would then both hold the lease, and both archive."""
        for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"not-its-etag"'}):
            try:
                self._etag = self._put(condition)
            except CLIENT_ERRORS as exc:
                if status(exc) in _TAKEN:
                    continue  # refused, as it must be: the lock exists, with another ETag
                raise
            with contextlib.suppress(*CLIENT_ERRORS):
                self._put({}, released=True)
            raise StoreUnavailable(
                f"s3://{self.bucket} ignores conditional writes ({next(iter(condition))}): "
                "the lake's single-writer lease cannot work there; use a store that "
                "supports them (AWS S3, MinIO) or a file:// lake"
            )

    def _renew(self) -> None:
        while not self._stop.wait(self.seconds / 4):
            sent = time.monotonic()
            try:
                self._etag = self._put({"IfMatch": self._etag})
            except CLIENT_ERRORS as exc:
                if status(exc) == 412:
                    self._lost = True
                    log.error("another writer took the lake's writer lease: this one stops")
                    return
                log.warning("could not renew the lake's writer lease: %s", describe(exc))
                continue
            self._valid_until = sent + self.seconds / 2

    def _put(self, condition: dict[str, str], released: bool = False) -> str:
        """Write the lock object (under ``condition``); its new ETag."""
        self._renewals += 1
        body = {
            "holder": self.holder,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "lease_seconds": self.seconds,
            "renewal": self._renewals,  # every body differs, and so every ETag
            "written_at": time.time(),  # for people; expiry never reads it
            "released": released,
        }
        answer = self.client.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=json.dumps(body).encode(),
            ContentType="application/json",
            **condition,
        )
        return str(answer["ETag"])

    def _read(self) -> tuple[str, dict[str, Any]] | None:
        """The lock object's ETag and body; None when there is none."""
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except CLIENT_ERRORS as exc:
            if status(exc) == 404:
                return None
            raise
        with answer["Body"] as body:
            data = body.read()
        try:
            lease = json.loads(data)
        except ValueError:
            lease = {}
        return str(answer["ETag"]), lease if isinstance(lease, dict) else {}


def _seconds(lease: dict[str, Any], default: float) -> float:
    """The holder's own lease term (a holder with a longer one is waited for longer)."""
    value = lease.get("lease_seconds")
    return float(value) if isinstance(value, int | float) and value > 0 else default
