"""Rate-limit buckets in Redis, shared by every API process and replica of a deployment.

One Lua script per take: the bucket (tokens, last refill in server microseconds) is a hash
that expires once it would be full again, so idle clients cost nothing. The server's own
clock refills the buckets, so replicas with skewed clocks agree. When Redis cannot be
reached the limiter lets the request through (and says so in the log, once a minute): a
limit is a protection, not a reason to refuse every reader.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

log = logging.getLogger("clickrec.limits")

# KEYS[1]: the bucket. ARGV: per_second, burst. Returns 0 (taken) or the seconds to wait
# (as a string: a Lua number would be truncated to an integer in the reply).
_TAKE_LUA = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """``take(name, per_second, burst)``: 0 to go on, else the seconds to wait."""

    def __init__(self, url: str, prefix: str = "clickrec:limits") -> None:
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=0.5)
        self._take = self._redis.register_script(_TAKE_LUA)
        self._warned_at = -1e9

    def take(self, name: str, per_second: float, burst: float) -> float:
        try:
            reply: Any = self._take(keys=[f"{self.prefix}:{name}"], args=[per_second, burst])
            return float(reply)
        except redis.RedisError as exc:
            now = time.monotonic()
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("shared rate limits unavailable (%s): requests are let through", exc)
            return 0.0

    def close(self) -> None:
        self._redis.close()
