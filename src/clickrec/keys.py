"""API keys: made once, stored as salted hashes, checked in constant time, cached briefly.

Each key also has AWS-style credentials for the Personalize-compatible API (``api/aws.py``):
the access key id is ``CK`` and the key id upper-cased, and the secret access key is kept
sealed with the data keys, since SigV4 needs the server to recompute the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from clickrec.backends.sql_catalog import SQLCatalog
from clickrec.core.clock import Clock, SystemClock
from clickrec.core.datakeys import DataKeyError, DataKeys, unseal_if_sealed
from clickrec.core.errors import Forbidden, InvalidInput, Unauthorized

SCOPES = ("ingest", "read", "admin", "tracker")
# What each scope may do. A tracker key is made to be embedded in a site's pages: it may
# only send events, only from its own origins (checked by the events route).
_GRANTS = {
    "admin": {"admin", "ingest", "read", "events"},
    "ingest": {"ingest", "events"},
    "read": {"read"},
    "tracker": {"events"},
}
MAX_ORIGINS = 20
_PREFIX = "ck"
_CACHE_SECONDS = 2.0  # a revoked key stops working within this long on every server
_ACCESS_KEY_PREFIX = "CK"
_SEALED, _PLAIN = "sealed:", "plain:"

log = logging.getLogger("clickrec.keys")


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scope: str
    origins: tuple[str, ...] = ()  # a tracker key's allowed browser origins

    def require(self, scope: str) -> None:
        if scope not in _GRANTS.get(self.scope, set()):
            raise Forbidden(f"this key has scope {self.scope!r}; this call needs {scope!r}")

    def require_origin(self, origin: str | None) -> None:
        """A tracker key works only from a page of one of its origins."""
        if self.scope == "tracker" and origin not in self.origins:
            raise Forbidden("this tracker key may not be used from this origin")


@dataclass(frozen=True)
class NewKey:
    """A key as made: every secret here is shown once and never again."""

    key: str
    principal: Principal
    aws_access_key_id: str
    aws_secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class SigV4Credentials:
    """What the server needs to check a SigV4 signature: ``secret`` is None for a key made
    before SigV4 support (or one whose sealed secret the data keys at hand cannot open)."""

    principal: Principal
    secret: str | None = field(repr=False)
    revoked: bool = False
    expires_at: float | None = None


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()


def access_key_id(key_id: str) -> str:
    return f"{_ACCESS_KEY_PREFIX}{key_id.upper()}"


class KeyRing:
    def __init__(
        self, catalog: SQLCatalog, data_keys: DataKeys | None = None, clock: Clock | None = None
    ) -> None:
        self.catalog = catalog
        self.data_keys = data_keys
        self.clock = clock or SystemClock()
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._sigv4_cache: dict[str, tuple[float, SigV4Credentials]] = {}
        self._lock = threading.Lock()
        self._origins: tuple[float, frozenset[str]] | None = None

    def create(
        self, scope: str, name: str | None, now: float, origins: Sequence[str] = ()
    ) -> tuple[str, Principal]:
        """A new key; the full key string is returned once and never stored."""
        new = self.create_key(scope, name, now, origins)
        return new.key, new.principal

    def create_key(
        self,
        scope: str,
        name: str | None,
        now: float,
        origins: Sequence[str] = (),
        expires_at: float | None = None,
    ) -> NewKey:
        """A new key with its AWS credentials; the secrets are returned once. A tracker
        key needs the origins (``https://www.example.com``) of the pages that embed it."""
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}")
        if expires_at is not None and not math.isfinite(expires_at):
            raise InvalidInput("a key's expiry must be a finite time")
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("a key cannot expire in the past")
        allowed = tuple(dict.fromkeys(check_origin(o) for o in origins))
        if scope == "tracker" and not allowed:
            raise InvalidInput("a tracker key needs at least one origin (--origin https://…)")
        if scope != "tracker" and allowed:
            raise InvalidInput("only tracker keys are bound to origins")
        if len(allowed) > MAX_ORIGINS:
            raise InvalidInput(f"at most {MAX_ORIGINS} origins per key")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(24)
        salt = secrets.token_hex(16)
        aws_secret = secrets.token_urlsafe(30)  # 40 characters, like AWS's
        principal = Principal(key_id, name or f"{scope}-{key_id}", scope, allowed)
        self.catalog.add_key(
            {
                "key_id": key_id,
                "name": principal.name,
                "scope": scope,
                "salt": salt,
                "secret_hash": _hash(salt, secret),
                "created_at": now,
                "sigv4_secret": self._seal(aws_secret),
                "origins": " ".join(allowed) or None,
                "expires_at": expires_at,
            }
        )
        return NewKey(f"{_PREFIX}_{key_id}_{secret}", principal, access_key_id(key_id), aws_secret)

    def _seal(self, secret: str) -> str:
        keys = self.data_keys
        if keys is None or not keys.encrypt:
            return _PLAIN + secret
        return _SEALED + base64.b64encode(keys.seal(secret.encode())).decode()

    def _unseal(self, stored: str, key_id: str) -> str | None:
        if stored.startswith(_PLAIN):
            return stored[len(_PLAIN) :]
        try:
            blob = base64.b64decode(stored.removeprefix(_SEALED), validate=True)
            name = f"the SigV4 secret of key {key_id}"
            return unseal_if_sealed(blob, self.data_keys, name).decode()
        except (DataKeyError, ValueError) as exc:
            log.warning("key %s cannot be used with SigV4: %s", key_id, exc)
            return None

    def tracker_origins(self) -> frozenset[str]:
        """Origins of every live tracker key (for CORS preflights, which carry no key)."""
        now = self.clock.monotonic()
        with self._lock:
            if self._origins is not None and self._origins[0] > now:
                return self._origins[1]
        origins = frozenset(
            origin
            for record in self.catalog.list_keys()
            if record["scope"] == "tracker" and record["revoked_at"] is None
            for origin in (record.get("origins") or "").split()
        )
        with self._lock:
            self._origins = (now + _CACHE_SECONDS, origins)
        return origins

    def reseal_secrets(self) -> int:
        """Seal every key's SigV4 secret again with the active data key (key rotation);
        returns how many were resealed."""
        done = 0
        for record in self.catalog.list_keys():
            stored = record.get("sigv4_secret")
            if not stored or stored.startswith(_PLAIN):
                continue
            secret = self._unseal(stored, record["key_id"])
            if secret is not None:
                self.catalog.set_sigv4_secret(record["key_id"], self._seal(secret))
                done += 1
        with self._lock:
            self._sigv4_cache.clear()
        return done

    def sigv4_credentials(self, presented_access_key_id: str) -> SigV4Credentials | None:
        """The principal and SigV4 secret of an access key id, with whether it is revoked
        and when it expires; None if no such key. The caller checks the signature first,
        and only then the key's state (``api.sigv4.verify``), so a guesser learns nothing."""
        now = self.clock.monotonic()
        with self._lock:
            hit = self._sigv4_cache.get(presented_access_key_id)
        if hit and hit[0] > now:
            return hit[1]
        head, key_id = presented_access_key_id[:2], presented_access_key_id[2:].lower()
        if (
            head != _ACCESS_KEY_PREFIX
            or not key_id
            or access_key_id(key_id) != (presented_access_key_id)
        ):
            return None
        record = self.catalog.get_key(key_id)
        if record is None:
            return None
        stored = record.get("sigv4_secret")
        credentials = SigV4Credentials(
            _principal(record),
            self._unseal(stored, key_id) if stored else None,
            record["revoked_at"] is not None,
            record.get("expires_at"),
        )
        with self._lock:
            if len(self._sigv4_cache) > 10_000:
                self._sigv4_cache.clear()
            self._sigv4_cache[presented_access_key_id] = (now + _CACHE_SECONDS, credentials)
        return credentials

    def check_live(self, revoked: bool, expires_at: float | None) -> None:
        """Unauthorized for a revoked or expired key: called only once the caller has
        proved it holds the key's secret, so expiry is never revealed to a guesser."""
        if revoked:
            raise Unauthorized("invalid API key")
        if expires_at is not None and expires_at <= self.clock.now():
            raise Unauthorized("this API key has expired")

    def verify(self, presented: str) -> Principal:
        """The key's principal, or Unauthorized (the message never echoes the key)."""
        now = self.clock.monotonic()
        with self._lock:
            hit = self._cache.get(presented)
        if hit and hit[0] > now:
            return hit[1]
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != _PREFIX:
            raise Unauthorized("invalid API key")
        record = self.catalog.get_key(parts[1])
        if record is None or not hmac.compare_digest(
            record["secret_hash"], _hash(record["salt"], parts[2])
        ):
            raise Unauthorized("invalid API key")
        expires = record.get("expires_at")
        self.check_live(record["revoked_at"] is not None, expires)
        principal = _principal(record)
        until = now + _CACHE_SECONDS
        if expires is not None:
            until = min(until, now + (expires - self.clock.now()))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[presented] = (until, principal)
        return principal


def _principal(record: dict[str, Any]) -> Principal:
    origins = tuple((record.get("origins") or "").split())
    return Principal(record["key_id"], record["name"], record["scope"], origins)


def check_origin(origin: str) -> str:
    """A browser origin as browsers send it: scheme://host[:port], no path, lowercase."""
    parsed = urlsplit(origin.strip())
    if (
        parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.path not in ("", "/")
        or parsed.query
        or parsed.fragment
        or parsed.username
    ):
        raise InvalidInput(f"not an origin (scheme://host[:port]): {origin!r}")
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.hostname.lower()}{port}"
