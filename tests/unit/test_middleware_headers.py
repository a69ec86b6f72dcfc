"""Security headers on every answer, each page's own policy, and CORS only where a page
may call from its origin."""

from __future__ import annotations

from clickrec.api.middleware.headers import Cors, SecurityHeadersMiddleware
from tests import asgi
from tests.asgi import Inner, call, http_scope

SITE = "https://news.example.com"  # a live tracker key's origin (tests/asgi.py)
PARTNER = "https://partner.example.org"  # configured in server.cors_origins


def _app(inner: Inner) -> SecurityHeadersMiddleware:
    cors = Cors(asgi.keys(), {"/v1/events"}, [PARTNER + "/"])  # type: ignore[arg-type]
    return SecurityHeadersMiddleware(inner, cors)


def test_every_answer_gets_the_strict_headers_after_its_own() -> None:
    answer = call(_app(Inner(status=404)), http_scope(path="/v1/nowhere"))
    assert answer.status == 404
    assert answer.header("content-type") == "application/json"  # the app's own stay
    assert answer.header("x-content-type-options") == "nosniff"
    assert answer.header("referrer-policy") == "no-referrer"
    assert answer.header("cache-control") == "no-store"
    assert answer.header("x-frame-options") == "DENY"
    assert answer.header("content-security-policy") == "default-src 'none'; frame-ancestors 'none'"
    assert answer.header("strict-transport-security") is None  # plain HTTP
    assert answer.header("access-control-allow-origin") is None


def test_the_dashboard_and_the_docs_get_their_own_policy() -> None:
    dashboard = call(_app(Inner()), http_scope(path="/dashboard")).header("content-security-policy")
    docs = call(_app(Inner()), http_scope(path="/docs")).header("content-security-policy")
    assert dashboard is not None and "script-src 'self'" in dashboard
    assert "unsafe-inline" not in dashboard
    assert docs is not None and "style-src 'self' 'unsafe-inline'" in docs
    assert "frame-ancestors 'none'" in dashboard and "frame-ancestors 'none'" in docs


def test_https_answers_get_hsts() -> None:
    answer = call(_app(Inner()), http_scope(scheme="https"))
    assert answer.header("strict-transport-security") == "max-age=31536000; includeSubDomains"


def test_a_page_of_a_tracker_origin_may_send_events() -> None:
    for origin in (SITE, PARTNER):
        scope = http_scope("POST", "/v1/events", {"origin": origin})
        answer = call(_app(Inner(status=202)), scope)
        assert answer.status == 202
        assert answer.header("access-control-allow-origin") == origin
        assert answer.header("vary") == "Origin"


def test_other_origins_and_other_paths_get_no_cors_headers() -> None:
    foreign = http_scope("POST", "/v1/events", {"origin": "https://attacker.example.net"})
    elsewhere = http_scope("GET", "/v1/trending", {"origin": SITE})
    for scope in (foreign, elsewhere):
        answer = call(_app(Inner()), scope)
        assert answer.status == 200 and answer.header("access-control-allow-origin") is None


def test_a_preflight_is_answered_without_the_app() -> None:
    inner = Inner()
    asks = {"origin": SITE, "access-control-request-method": "POST"}
    answer = call(_app(inner), http_scope("OPTIONS", "/v1/events", asks))
    assert answer.status == 204 and answer.body == b"" and inner.called == 0
    assert answer.header("access-control-allow-origin") == SITE
    assert answer.header("access-control-allow-methods") == "POST"
    assert answer.header("access-control-allow-headers") == "authorization, content-type"
    assert answer.header("access-control-max-age") == "600"
    assert answer.all("vary") == ["Origin"]
    assert answer.header("x-frame-options") == "DENY"


def test_a_preflight_from_another_origin_is_refused() -> None:
    inner = Inner()
    asks = {"origin": "https://attacker.example.net", "access-control-request-method": "POST"}
    answer = call(_app(inner), http_scope("OPTIONS", "/v1/events", asks))
    assert answer.status == 403 and inner.called == 0
    assert answer.json() == {"error": "this origin may not call this path"}
    assert answer.header("access-control-allow-origin") is None
    assert answer.header("content-security-policy") is not None


def test_an_options_request_that_is_no_preflight_goes_to_the_app() -> None:
    inner = Inner(status=405)
    answer = call(_app(inner), http_scope("OPTIONS", "/v1/events", {"origin": SITE}))
    assert answer.status == 405 and inner.called == 1


def test_without_cors_no_origin_is_allowed() -> None:
    scope = http_scope("POST", "/v1/events", {"origin": SITE})
    answer = call(SecurityHeadersMiddleware(Inner()), scope)
    assert answer.header("access-control-allow-origin") is None
    assert answer.header("x-content-type-options") == "nosniff"
