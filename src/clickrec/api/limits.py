"""Rate limits before any handler runs (the WAF's rate-based rules): token buckets per
client address and per API key, each key scope with its own rate."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

MAX_BUCKETS = 100_000  # past this many tracked clients, full (idle) buckets are dropped


@dataclass(frozen=True)
class Rate:
    per_second: float
    burst: float


class Buckets(Protocol):
    def take(self, name: str, rate: Rate) -> float:
        """Take a token from the bucket ``name``: 0 (go on) or the seconds to wait."""
        ...


class SharedStore(Protocol):
    def take(self, name: str, per_second: float, burst: float) -> float: ...


class SharedBuckets:
    """Buckets in a store every process of the deployment shares (Redis), so a limit holds
    for the whole deployment, not once per process."""

    def __init__(self, store: SharedStore) -> None:
        self.store = store

    def take(self, name: str, rate: Rate) -> float:
        return self.store.take(name, rate.per_second, rate.burst)


class TokenBuckets:
    """One bucket per name, in this process; ``take`` answers 0 (go on) or the seconds to
    wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, name: str, rate: Rate) -> float:
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(name, (rate.burst, now))
            tokens = min(rate.burst, tokens + (now - at) * rate.per_second)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                if len(self._buckets) > MAX_BUCKETS:
                    self._forget_idle(now, rate)
                return 0.0
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / rate.per_second

    def _forget_idle(self, now: float, rate: Rate) -> None:
        """Drop buckets that have refilled (their clients were idle): nothing is lost."""
        full = [
            name
            for name, (tokens, at) in self._buckets.items()
            if tokens + (now - at) * rate.per_second >= rate.burst
        ]
        for name in full:
            del self._buckets[name]


class RateLimiter:
    """Per client address first (floods, unauthenticated or not), then per key."""

    def __init__(
        self,
        per_address: Rate,
        per_scope: Mapping[str, Rate],
        per_scope_address: Mapping[str, Rate] | None = None,
        buckets: Buckets | None = None,
    ) -> None:
        self.per_address = per_address
        self.per_scope = dict(per_scope)
        self.per_scope_address = dict(per_scope_address or {})  # e.g. a tracker per browser
        self.buckets: Buckets = buckets or TokenBuckets()

    def check(self, address: str | None, key_id: str | None, scope: str | None) -> float:
        """0 when the request may go on, else seconds until it may (for Retry-After)."""
        if address is not None:
            wait = self.buckets.take(f"ip:{address}", self.per_address)
            if wait:
                return wait
            narrow = self.per_scope_address.get(scope or "")
            if narrow is not None and key_id is not None:
                wait = self.buckets.take(f"{key_id}@{address}", narrow)
                if wait:
                    return wait
        rate = self.per_scope.get(scope or "")
        if key_id is not None and rate is not None:
            return self.buckets.take(f"key:{key_id}", rate)
        return 0.0


def retry_after(wait: float) -> str:
    return str(max(1, math.ceil(wait)))
