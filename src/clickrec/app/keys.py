"""API keys: create one (with its AWS credentials), list them, revoke one, and rotate the
data key that seals their AWS secrets (with the lake and the model artifacts). A key's
secrets are shown once, when it is made; the catalog keeps a hash."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clickrec.config import Settings
from clickrec.core.errors import NotFound
from clickrec.engine import Engine
from clickrec.keys import NewKey
from clickrec.rekey import Rotation, rotate_data_key

DAY = 86400.0


def create(
    engine: Engine,
    scope: str,
    name: str | None = None,
    origins: Sequence[str] = (),
    expires_days: float | None = None,
) -> NewKey:
    """A new key of ``scope`` that stops working ``expires_days`` from now (never, with
    None); a tracker key needs the origins of the pages that embed it. InvalidInput for a
    bad scope, origin or expiry."""
    now = engine.clock.now()
    expires_at = now + expires_days * DAY if expires_days is not None else None
    return engine.keys.create_key(scope, name, now, origins, expires_at)


def list_keys(engine: Engine) -> list[dict[str, Any]]:
    """Every key, revoked ones included (never their secrets)."""
    return engine.catalog.list_keys()


def has_admin(engine: Engine) -> bool:
    """Whether a key of scope admin is still in force (not revoked)."""
    return any(k["scope"] == "admin" and k["revoked_at"] is None for k in list_keys(engine))


def revoke(engine: Engine, key_id: str) -> None:
    """Revoke a key; it stops working within seconds on every server. NotFound when no key
    of that id is in force."""
    if not engine.catalog.revoke_key(key_id, engine.clock.now()):
        raise NotFound(f"no active key {key_id}")


def rotate(settings: Settings, progress: Callable[[int, int], None]) -> Rotation:
    """Encrypt the lake and the model artifacts (and reseal the keys' AWS secrets) under a
    new data key, then retire the old one. Run with no server up; run it again after an
    interruption to finish."""
    return rotate_data_key(settings, progress)
