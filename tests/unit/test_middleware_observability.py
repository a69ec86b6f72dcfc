"""What an operator sees of each request: one log line, its latency by route and status,
its span, and an audit entry for each change an admin key makes, refusals included."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clickrec.api.middleware.context import ContextMiddleware
from clickrec.api.middleware.headers import Cors, SecurityHeadersMiddleware
from clickrec.api.middleware.limits import HeaderLimitMiddleware
from clickrec.api.middleware.observability import ObservabilityMiddleware
from clickrec.keys import Principal
from clickrec.observability import tracing
from clickrec.observability.metrics import Metrics, create_metrics
from tests import asgi
from tests.asgi import ADMIN, READ, Inner, call, http_scope

FILTER = "/v1/filters/{name}"


def _routed(route: str, principal: Principal | None = None, **state: Any) -> Inner:
    """An app that routes to ``route`` and admits ``principal``, as FastAPI and deps do."""

    def route_it(scope: dict[str, Any]) -> None:
        scope["route"] = SimpleNamespace(path=route)
        scope.setdefault("state", {}).update(state)
        if principal is not None:
            scope["state"]["principal"] = principal

    return Inner(on_call=route_it)


def _observed(inner: Any, metrics: Metrics | None = None, audit: Any = None) -> Any:
    return ContextMiddleware(ObservabilityMiddleware(inner, metrics=metrics, audit=audit))


def _count(metrics: Metrics, method: str, route: str, status: int) -> float:
    labels = {"method": method, "route": route, "status": str(status)}
    return metrics.registry.get_sample_value("clickrec_request_seconds_count", labels) or 0.0


@pytest.fixture
def access(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="clickrec.access")
    return caplog


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.msg for r in caplog.records if r.name == "clickrec.access"]  # type: ignore[misc]


def test_one_log_line_per_request_without_the_key_or_the_query(
    access: pytest.LogCaptureFixture,
) -> None:
    scope = http_scope("GET", "/v1/users/reader-7", asgi.bearer("ck_read"))
    scope["query_string"] = b"secret=1"
    answer = call(_observed(_routed("/v1/users/{user_id:path}", READ)), scope)
    (line,) = _lines(access)
    assert line["request_id"] == answer.header("x-request-id")
    assert (line["method"], line["route"], line["status"]) == (
        "GET",
        "/v1/users/{user_id:path}",
        200,
    )
    assert line["key"] == "reader" and line["ms"] >= 0
    assert "ck_read" not in str(line) and "secret" not in str(line) and "reader-7" not in str(line)


def test_latency_is_counted_by_route_template_and_status_and_refusals_too() -> None:
    metrics = create_metrics()
    call(_observed(_routed(FILTER), metrics), http_scope("PUT", "/v1/filters/a"))
    call(_observed(_routed(FILTER), metrics), http_scope("PUT", "/v1/filters/b"))
    refusing = _observed(HeaderLimitMiddleware(Inner(), max_bytes=10), metrics)
    call(refusing, http_scope(headers={"x-padding": "a" * 20}))
    assert _count(metrics, "PUT", FILTER, 200) == 2
    assert _count(metrics, "GET", "unmatched", 431) == 1


def test_a_preflight_is_logged_but_not_counted(access: pytest.LogCaptureFixture) -> None:
    metrics = create_metrics()
    cors = Cors(asgi.keys(), {"/v1/events"}, [])  # type: ignore[arg-type]
    app = _observed(SecurityHeadersMiddleware(Inner(), cors), metrics)
    asks = {"origin": "https://news.example.com", "access-control-request-method": "POST"}
    assert call(app, http_scope("OPTIONS", "/v1/events", asks)).status == 204
    assert [(line["route"], line["status"]) for line in _lines(access)] == [("preflight", 204)]
    assert _count(metrics, "OPTIONS", "preflight", 204) == 0


def test_admin_changes_are_audited_with_who_what_and_where() -> None:
    entries: list[dict[str, Any]] = []
    answer = call(
        _observed(_routed(FILTER, ADMIN), audit=entries.append), http_scope("PUT", "/v1/filters/f")
    )
    (entry,) = entries
    assert entry["actor"] == "ops (k1)" and entry["action"] == f"PUT {FILTER}"
    assert entry["target"] == "/v1/filters/f" and entry["source"] == asgi.CLIENT[0]
    assert entry["status"] == 200 and entry["request_id"] == answer.header("x-request-id")


@pytest.mark.parametrize(
    ("method", "route", "principal"),
    [
        ("GET", "/v1/models", ADMIN),  # a read
        ("POST", "/v1/events", ADMIN),  # the data plane
        ("POST", "/recommendations", ADMIN),
        ("PUT", FILTER, READ),  # not an admin key (refused by its route anyway)
        ("PUT", FILTER, None),  # no key admitted
    ],
)
def test_reads_the_data_plane_and_other_keys_are_not_audited(
    method: str, route: str, principal: Principal | None
) -> None:
    entries: list[dict[str, Any]] = []
    call(_observed(_routed(route, principal), audit=entries.append), http_scope(method, "/x"))
    assert entries == []


def test_an_audit_entry_never_names_a_reader() -> None:
    entries: list[dict[str, Any]] = []
    erase = _routed("/v1/users/{user_id:path}", ADMIN)
    call(_observed(erase, audit=entries.append), http_scope("DELETE", "/v1/users/reader-7"))
    chosen = _routed("/v1/users/{user_id:path}", ADMIN, audit_target="erasure e1")
    call(_observed(chosen, audit=entries.append), http_scope("DELETE", "/v1/users/reader-7"))
    assert [e["target"] for e in entries] == ["/v1/users/{user_id:path}", "erasure e1"]


def test_a_failed_audit_is_logged_and_the_answer_still_sent(
    access: pytest.LogCaptureFixture,
) -> None:
    def broken(entry: dict[str, Any]) -> None:
        raise OSError("disk full")

    answer = call(_observed(_routed(FILTER, ADMIN), audit=broken), http_scope("PUT", "/v1/f"))
    assert answer.status == 200
    assert any("could not write the audit log entry" in r.getMessage() for r in access.records)


def test_a_request_whose_app_fails_is_still_logged(access: pytest.LogCaptureFixture) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        call(_observed(failing), http_scope("GET", "/v1/trending"))
    assert [(line["route"], line["status"]) for line in _lines(access)] == [("unmatched", 0)]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.shutdown()


def test_each_request_is_a_span_named_by_its_route(spans: InMemorySpanExporter) -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    scope = http_scope("PUT", "/v1/filters/secret-name", {"traceparent": parent})
    answer = call(_observed(_routed(FILTER, ADMIN)), scope)
    (span,) = spans.get_finished_spans()
    assert span.name == f"PUT {FILTER}"
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["clickrec.request_id"] == answer.header("x-request-id")
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert "secret-name" not in str(span.attributes)
