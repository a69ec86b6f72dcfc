"""Rate-limit buckets in Redis, shared by every API process and replica of a deployment.

One Lua script per take: the bucket (tokens, last refill in server microseconds) is a hash
that expires once it would be full again, so idle clients cost nothing. Its writes are kept
out of the append-only file and replication (``redis.set_repl``): an event log's Redis runs
with ``appendfsync always``, and a bucket is not worth an fsync per request (after a restart
buckets start full). The server's own
clock refills the buckets, so replicas with skewed clocks agree. When Redis cannot be
reached the limiter lets the request through (and says so in the log, once a minute): a
limit is a protection, not a reason to refuse every reader.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

log = logging.getLogger("clickrec.limits")
MAX_LEASES = 100_000  # past this many names with tokens in hand, expired ones are dropped

# KEYS[1]: the bucket. ARGV: per_second, burst, tokens wanted (n). Takes up to n whole
# tokens; returns "<taken> <seconds to wait for one>" (a string: Lua numbers in a reply
# are truncated to integers).
_TAKE_LUA = """
redis.set_repl(redis.REPL_NONE)
local rate, burst, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = math.min(n, math.floor(tokens))
tokens = tokens - taken
local wait = 0
if taken == 0 then wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return taken .. ' ' .. wait
"""
LEASE_SECONDS = 0.05
"""A process takes up to this many seconds' worth of a bucket's rate at once and spends it
locally (at most 1 s), so a busy bucket costs one round trip per lease, not per request;
a deployment can go over a limit by at most processes × this much of it."""


class RedisBuckets:
    """``take(name, per_second, burst)``: 0 to go on, else the seconds to wait."""

    def __init__(
        self, url: str, prefix: str = "clickrec:limits", clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=0.5)
        self._take = self._redis.register_script(_TAKE_LUA)
        self._clock = clock
        self._leased: dict[str, tuple[int, float]] = {}  # name -> (tokens left, good until)
        self._lock = threading.Lock()
        self._warned_at = -1e9

    def take(self, name: str, per_second: float, burst: float) -> float:
        now = self._clock()
        with self._lock:
            left, until = self._leased.get(name, (0, 0.0))
            if left > 0 and now < until:
                self._leased[name] = (left - 1, until)
                return 0.0
            self._leased.pop(name, None)
            if len(self._leased) > MAX_LEASES:
                self._leased = {k: v for k, v in self._leased.items() if v[1] > now}
        wanted = max(1, min(int(per_second * LEASE_SECONDS), int(burst)))
        try:
            reply: Any = self._take(
                keys=[f"{self.prefix}:{name}"], args=[per_second, burst, wanted]
            )
            taken, wait = reply.split()
        except redis.RedisError as exc:
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("shared rate limits unavailable (%s): requests are let through", exc)
            return 0.0
        if int(taken) == 0:
            return float(wait)
        if int(taken) > 1:
            with self._lock:
                self._leased[name] = (int(taken) - 1, now + 1.0)
        return 0.0

    def close(self) -> None:
        self._redis.close()
