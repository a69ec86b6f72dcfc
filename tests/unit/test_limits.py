"""Token buckets: a burst is allowed, then the rate; idle clients cost no memory."""

from __future__ import annotations

from clickrec.api import limits
from clickrec.api.limits import Rate, RateLimiter, TokenBuckets, retry_after


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_then_the_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(clock)
    rate = Rate(per_second=10.0, burst=5.0)
    assert [buckets.take("a", rate) for _ in range(5)] == [0.0] * 5
    wait = buckets.take("a", rate)
    assert 0.09 < wait <= 0.1  # one token comes back every 0.1 s
    clock.t += 0.1
    assert buckets.take("a", rate) == 0.0
    assert buckets.take("b", rate) == 0.0  # buckets are per name
    clock.t += 60
    assert [buckets.take("a", rate) for _ in range(5)] == [0.0] * 5  # refilled, capped at burst
    assert buckets.take("a", rate) > 0


def test_the_address_limit_comes_first_then_the_key_scope() -> None:
    clock = Clock()
    limiter = RateLimiter(Rate(100.0, 3.0), {"read": Rate(1.0, 1.0)}, buckets=TokenBuckets(clock))
    assert limiter.check("10.0.0.1", "k1", "read") == 0.0
    assert limiter.check("10.0.0.2", "k1", "read") == 1.0  # the key's bucket is empty
    assert limiter.check("10.0.0.2", None, None) == 0.0  # unauthenticated: address only
    assert limiter.check("10.0.0.2", None, None) == 0.0
    assert limiter.check("10.0.0.2", None, None) > 0  # the address's burst of 3 is spent
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


def test_idle_buckets_are_forgotten(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(limits, "MAX_BUCKETS", 10)
    clock = Clock()
    buckets = TokenBuckets(clock)
    rate = Rate(1.0, 2.0)
    for i in range(10):
        buckets.take(f"c{i}", rate)
    clock.t += 5  # everyone refilled
    buckets.take("new", rate)
    assert len(buckets._buckets) <= 2
