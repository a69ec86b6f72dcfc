"""API keys: made once, stored as salted hashes, checked in constant time, cached briefly."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.core.errors import Forbidden, InvalidInput, Unauthorized

SCOPES = ("ingest", "read", "admin")
_PREFIX = "ck"
_CACHE_SECONDS = 2.0  # a revoked key stops working within this long on every server


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scope: str

    def require(self, scope: str) -> None:
        if self.scope != "admin" and self.scope != scope:
            raise Forbidden(f"this key has scope {self.scope!r}; this call needs {scope!r}")


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


class KeyRing:
    def __init__(self, catalog: SQLCatalog) -> None:
        self.catalog = catalog
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def create(self, scope: str, name: str | None, now: float) -> tuple[str, Principal]:
        """A new key; the full key string is returned once and never stored."""
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(24)
        salt = secrets.token_hex(16)
        principal = Principal(key_id, name or f"{scope}-{key_id}", scope)
        self.catalog.add_key(
            {
                "key_id": key_id,
                "name": principal.name,
                "scope": scope,
                "salt": salt,
                "secret_hash": _hash(salt, secret),
                "created_at": now,
            }
        )
        return f"{_PREFIX}_{key_id}_{secret}", principal

    def verify(self, presented: str) -> Principal:
        """The key's principal, or Unauthorized (the message never echoes the key)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(presented)
        if hit and hit[0] > now:
            return hit[1]
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise Unauthorized("invalid API key")
        record = self.catalog.get_key(parts[1])
        if record is None or record["revoked_at"] is not None:
            raise Unauthorized("invalid API key")
        if not hmac.compare_digest(record["secret_hash"], _hash(record["salt"], parts[2])):
            raise Unauthorized("invalid API key")
        principal = Principal(record["key_id"], record["name"], record["scope"])
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[presented] = (now + _CACHE_SECONDS, principal)
        return principal
