"""Limits before logic: a request over a limit is answered at once and never reaches the
app; one within them reaches it whole."""

from __future__ import annotations

import asyncio
from typing import Any

from clickrec.api.limits import Rate, RateLimiter, TokenBuckets
from clickrec.api.middleware.auth import AuthenticationMiddleware
from clickrec.api.middleware.limits import (
    BodyLimitMiddleware,
    HeaderLimitMiddleware,
    RateLimitMiddleware,
)
from tests import asgi
from tests.asgi import Body, Inner, bearer, call, http_scope


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


# -- header block ---------------------------------------------------------------------------
def test_oversized_headers_get_431_and_never_reach_the_app() -> None:
    inner = Inner()
    limited = HeaderLimitMiddleware(inner, max_bytes=100)
    big = call(limited, http_scope(headers={"x-padding": "a" * 100}))
    assert big.status == 431 and inner.called == 0
    assert big.json() == {"error": "request headers are larger than 100 bytes"}
    assert big.header("content-type") == "application/json"
    assert big.header("content-length") == str(len(big.body))
    assert call(limited, http_scope(headers={"x-padding": "a" * 91})).status == 200  # 100 bytes


# -- rate -----------------------------------------------------------------------------------
def _rated(inner: Inner, clock: Clock) -> Any:
    """Authentication outside the rate limit, as in the app: 3 requests of burst per
    address, 1 per read key."""
    limiter = RateLimiter(Rate(1.0, 3.0), {"read": Rate(0.5, 1.0)}, buckets=TokenBuckets(clock))
    return AuthenticationMiddleware(RateLimitMiddleware(inner, limiter), asgi.keys())


def test_a_key_over_its_rate_gets_429_with_retry_after() -> None:
    inner, clock = Inner(), Clock()
    app = _rated(inner, clock)
    assert call(app, http_scope(headers=bearer("ck_read"))).status == 200
    refused = call(app, http_scope(headers=bearer("ck_read"), client=("198.51.100.9", 1)))
    assert refused.status == 429 and inner.called == 1
    assert refused.header("retry-after") == "2"  # one token at 0.5 a second
    assert "rate limit exceeded" in refused.json()["error"]
    # Another key has its own bucket; after the wait, the key may go on.
    assert call(app, http_scope(headers=bearer("ck_admin"))).status == 200
    clock.t += 2
    assert call(app, http_scope(headers=bearer("ck_read"))).status == 200


def test_made_up_keys_share_their_address_bucket() -> None:
    inner, clock = Inner(), Clock()
    app = _rated(inner, clock)
    codes = [call(app, http_scope(headers=bearer(f"ck_made_up{i}"))).status for i in range(5)]
    assert codes == [200, 200, 200, 429, 429] and inner.called == 3
    # Another address is not held back by this one.
    assert call(app, http_scope(client=("192.0.2.1", 1))).status == 200


# -- body -----------------------------------------------------------------------------------
def test_a_declared_body_over_the_limit_gets_413_before_it_is_read() -> None:
    inner = Inner()
    body = Body([b"x" * 11])
    headers = {"content-length": "11"}
    answer = call(
        BodyLimitMiddleware(inner, max_body=10), http_scope("POST", "/", headers), receive=body
    )
    assert answer.status == 413 and answer.json() == {
        "error": "request body is larger than 10 bytes"
    }
    assert body.read == 0 and inner.called == 0


def test_a_content_length_that_is_no_number_gets_400() -> None:
    inner = Inner()
    answer = call(
        BodyLimitMiddleware(inner, max_body=10), http_scope("POST", "/", {"content-length": "-1"})
    )
    assert answer.status == 400 and answer.json() == {"error": "bad content-length header"}
    assert inner.called == 0


def test_a_streamed_body_over_the_limit_gets_413() -> None:
    inner = Inner()
    answer = call(
        BodyLimitMiddleware(inner, max_body=10), http_scope("POST"), [b"12345", b"678901"]
    )
    assert answer.status == 413 and inner.called == 0


def test_the_app_gets_the_body_whole_in_one_message() -> None:
    inner = Inner()
    chunks = [b'{"events": ', b"[]", b"}"]
    answer = call(BodyLimitMiddleware(inner, max_body=100), http_scope("PUT"), chunks)
    assert answer.status == 200
    assert inner.bodies == [b'{"events": []}'] and inner.body_messages == [1]
    exactly = call(BodyLimitMiddleware(inner, max_body=14), http_scope("POST"), chunks)
    assert exactly.status == 200


def test_a_body_that_does_not_arrive_in_time_gets_408() -> None:
    inner = Inner()

    async def trickle() -> dict[str, Any]:
        await asyncio.sleep(0.02)
        return {"type": "http.request", "body": b"x", "more_body": True}

    limited = BodyLimitMiddleware(inner, max_body=1000, body_timeout=0.1)
    answer = call(limited, http_scope("POST"), receive=trickle)
    assert answer.status == 408 and inner.called == 0
    assert answer.json() == {"error": "request body not received within 0.1 seconds"}


def test_a_client_that_leaves_mid_body_gets_no_answer_and_the_app_no_call() -> None:
    inner = Inner()
    messages = iter([{"type": "http.request", "body": b"x", "more_body": True}])

    async def leaving() -> dict[str, Any]:
        return next(messages, {"type": "http.disconnect"})

    answer = call(BodyLimitMiddleware(inner, max_body=1000), http_scope("POST"), receive=leaving)
    assert answer.status is None and inner.called == 0


def test_a_get_goes_straight_through() -> None:
    inner = Inner()
    body = Body([b""])
    answer = call(BodyLimitMiddleware(inner, max_body=0), http_scope("GET"), receive=body)
    assert answer.status == 200 and inner.called == 1 and inner.bodies == [b""]
