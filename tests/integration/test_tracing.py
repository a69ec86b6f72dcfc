"""OpenTelemetry traces in-process: the span trees an operator sees for an ingest, a
recommendation, the archive and a training run; trace ids in the logs; nothing when off."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from clickrec.backends.base import TRACEPARENT
from clickrec.config import TracingSettings
from clickrec.core.types import Event
from clickrec.engine import Engine
from clickrec.ingestion.validation import to_records
from clickrec.observability import tracing
from clickrec.observability.logs import JsonFormatter
from clickrec.training.pipeline import execute_run

pytestmark = pytest.mark.integration
H = dict[str, dict[str, str]]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.shutdown()


def event(item: str, user: str = "reader-7", **extra: object) -> dict[str, object]:
    return {
        "user_id": user,
        "session_id": "session-7",
        "item_id": item,
        "event_type": "read",
        **extra,
    }


def post(client: TestClient, keys: H, events: list[dict[str, object]], **headers: str):  # type: ignore[no-untyped-def]
    return client.post("/v1/events", json={"events": events}, headers={**keys["ingest"], **headers})


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[str]:
    assert parent.context is not None
    return [
        s.name
        for s in sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]


def every_value(exporter: InMemorySpanExporter) -> str:
    """Every name and attribute value of every span, events and links included, as text."""
    parts = []
    for s in exporter.get_finished_spans():
        parts.append(s.name)
        parts.extend(str(v) for v in (s.attributes or {}).values())
        for e in s.events:
            parts.append(e.name)
            parts.extend(str(v) for v in (e.attributes or {}).values())
        if s.status.description:
            parts.append(s.status.description)
    return " ".join(parts)


def test_an_ingest_request_is_one_trace_with_its_steps(
    client: TestClient, keys: H, spans: InMemorySpanExporter, engine: Engine
) -> None:
    # An event id no hexadecimal trace or span id can contain by chance.
    body = [event("a", event_id="evt-private"), event("b"), event("a", event_id="evt-private")]
    assert post(client, keys, body).json() == {"accepted": 2, "duplicates": 1}

    (request,) = named(spans, "POST /v1/events")
    assert request.kind == SpanKind.SERVER
    assert children(spans, request) == ["validate", "log.append", "online.apply"]
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["clickrec.events.batch_size"] == 3
    assert request.attributes["clickrec.events.accepted"] == 2
    assert request.attributes["clickrec.events.duplicates"] == 1
    (append,) = named(spans, "log.append")
    assert append.attributes is not None
    assert (
        append.attributes["clickrec.log.first_seq"],
        append.attributes["clickrec.log.last_seq"],
    ) == (1, 2)
    # Counts and versions only: no reader, session, item or event id reaches a span.
    text = every_value(spans)
    for private in ("reader-7", "session-7", "evt-private", "Bearer"):
        assert private not in text

    # The log keeps the append's context beside its seqs, for the archive to link to.
    assert append.context is not None
    ((first, last, parent),) = engine.log.trace_links(1, 100, 10)
    assert (first, last) == (1, 2)
    assert parent == f"00-{append.context.trace_id:032x}-{append.context.span_id:016x}-01"


def test_a_refused_batch_marks_validate_failed_without_its_content(
    client: TestClient, keys: H, spans: InMemorySpanExporter, engine: Engine
) -> None:
    assert post(client, keys, [event("a", colour="secret-red")]).status_code == 422
    (request,) = named(spans, "POST /v1/events")
    assert children(spans, request) == ["validate"]
    (validate,) = named(spans, "validate")
    assert validate.status.status_code == StatusCode.ERROR
    assert validate.status.description == "InvalidInput"
    assert "secret-red" not in every_value(spans)
    assert engine.log.trace_links(0, 10**9, 10) == []


def test_a_recommendation_shows_state_read_scoring_and_filtering(
    client: TestClient, keys: H, spans: InMemorySpanExporter
) -> None:
    post(client, keys, [event("a"), event("b", user="other"), event("c", user="other")])
    spans.clear()
    response = client.get(
        "/v1/recommendations",
        params={"user_id": "reader-7", "num_results": 5},
        headers=keys["read"],
    )
    assert response.status_code == 200
    (request,) = named(spans, "GET /v1/recommendations")
    assert children(spans, request) == ["state.read", "score", "filter", "explain"]
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/v1/recommendations"
    assert request.attributes["clickrec.recipe"] == response.json()["recipe"]
    assert request.attributes["clickrec.num_results"] == len(response.json()["items"])
    (read,) = named(spans, "state.read")
    assert read.attributes is not None and read.attributes["clickrec.history_length"] == 1
    assert "reader-7" not in every_value(spans)

    spans.clear()
    assert client.get("/v1/trending", headers=keys["read"]).status_code == 200
    (trending,) = named(spans, "GET /v1/trending")
    assert children(spans, trending) == ["state.read", "score", "filter", "explain"]


def test_other_routes_get_one_request_span_named_by_route_not_path(
    client: TestClient, keys: H, spans: InMemorySpanExporter
) -> None:
    post(client, keys, [event("a")])
    spans.clear()
    assert client.get("/v1/users/reader-7", headers=keys["read"]).status_code == 200
    assert client.get("/v1/models", headers=keys["admin"]).status_code == 200
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["GET /v1/users/{user_id:path}", "GET /v1/models"]
    assert "reader-7" not in every_value(spans)


def test_steps_called_outside_a_request_make_no_spans(
    client: TestClient, keys: H, spans: InMemorySpanExporter, engine: Engine
) -> None:
    post(client, keys, [event("a"), event("b", user="other")])
    spans.clear()
    assert engine.recommender is not None  # batch jobs call it like this, once per line
    engine.recommender.recommend("reader-7", None, 5)
    engine.recommender.trending(5)
    assert spans.get_finished_spans() == ()


def test_an_incoming_traceparent_is_continued(
    client: TestClient, keys: H, spans: InMemorySpanExporter
) -> None:
    post(client, keys, [event("a")], traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    (request,) = named(spans, "POST /v1/events")
    assert request.context is not None and request.parent is not None
    assert f"{request.context.trace_id:032x}" == TRACE_ID
    assert f"{request.parent.span_id:016x}" == PARENT_ID
    assert request.parent.is_remote
    assert {f"{s.context.trace_id:032x}" for s in spans.get_finished_spans() if s.context} == {
        TRACE_ID
    }


def test_the_request_log_line_carries_the_trace_id(
    client: TestClient, keys: H, spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clickrec.access")
    post(client, keys, [event("a")])
    (request,) = named(spans, "POST /v1/events")
    (line,) = [
        r.msg
        for r in caplog.records
        if isinstance(r.msg, dict) and r.msg.get("route") == "/v1/events"
    ]
    assert request.context is not None
    assert line["trace_id"] == f"{request.context.trace_id:032x}"
    assert line["span_id"] == f"{request.context.span_id:016x}"


def test_any_json_log_line_inside_a_span_carries_its_ids(spans: InMemorySpanExporter) -> None:
    record = logging.LogRecord("clickrec.test", logging.WARNING, __file__, 1, "inside", None, None)
    with tracing.span("work", root=True) as current:
        inside = orjson.loads(JsonFormatter().format(record))
    outside = orjson.loads(JsonFormatter().format(record))
    ctx = current.get_span_context()
    assert inside["trace_id"] == f"{ctx.trace_id:032x}"
    assert inside["span_id"] == f"{ctx.span_id:016x}"
    assert "trace_id" not in outside


def test_the_archive_batch_links_to_the_ingest_traces_and_prunes_them(
    client: TestClient, keys: H, spans: InMemorySpanExporter, engine: Engine
) -> None:
    post(client, keys, [event("a"), event("b")])
    post(client, keys, [event("c")])
    appends = named(spans, "log.append")
    spans.clear()

    assert engine.archive.run_once() == 3
    (batch,) = named(spans, "archive.batch")
    assert batch.parent is None  # a root in the worker, tied to the ingests by links
    assert children(spans, batch) == ["log.read", "lake.write"]
    linked = {(link.context.trace_id, link.context.span_id) for link in batch.links}
    assert linked == {(a.context.trace_id, a.context.span_id) for a in appends if a.context}
    (write,) = named(spans, "lake.write")
    assert write.attributes is not None
    assert write.attributes["clickrec.lake.rows"] == 3
    assert write.attributes["clickrec.lake.files"] >= 1
    assert engine.log.trace_links(0, 10**9, 10) == []  # pruned once archived

    spans.clear()
    assert engine.archive.run_once() == 0
    assert spans.get_finished_spans() == ()  # an idle pass makes no span


def test_the_log_keeps_trace_links_by_seq_range_until_pruned(engine: Engine) -> None:
    def append(tag: str, *ids: str) -> None:
        events = [Event.model_validate(event("a", event_id=i)) for i in ids]
        records = to_records(events, engine.clock.now())
        records[0][TRACEPARENT] = f"00-{tag * 32}-{tag * 16}-01"
        engine.log.append(records)

    append("1", "e1", "e2")  # seqs 1-2
    append("2", "e1")  # a duplicate only: nothing appended, nothing to link
    append("3", "e3", "e4", "e5")  # seqs 3-5
    assert [(a, b) for a, b, _ in engine.log.trace_links(2, 3, 10)] == [(1, 2), (3, 5)]
    assert [(a, b) for a, b, _ in engine.log.trace_links(4, 9, 10)] == [(3, 5)]
    assert len(engine.log.trace_links(1, 5, 1)) == 1
    assert engine.log.prune_trace_links(4) == 1  # 3-5 is not wholly archived yet
    assert [(a, b) for a, b, _ in engine.log.trace_links(0, 9, 10)] == [(3, 5)]


def test_a_training_run_is_a_span(spans: InMemorySpanExporter, engine: Engine) -> None:
    run = engine.catalog.create_run("test", engine.clock.now())
    execute_run(engine.pipeline, engine.catalog, run["id"], engine.clock)
    (span,) = named(spans, "training.run")
    assert span.attributes is not None
    assert span.attributes["clickrec.run_id"] == run["id"]
    assert span.attributes["clickrec.run_state"] == "failed"  # an empty log: not enough data


def test_tracing_off_leaves_no_trace(
    client: TestClient, keys: H, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    assert not tracing.enabled()
    caplog.set_level(logging.INFO, logger="clickrec.access")
    post(client, keys, [event("a")])
    assert client.get("/v1/trending", headers=keys["read"]).status_code == 200
    assert engine.archive.run_once() == 1
    assert engine.log.trace_links(0, 10**9, 10) == []
    lines = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    assert lines and all("trace_id" not in line for line in lines)


def test_only_a_configured_endpoint_turns_tracing_on() -> None:
    off = TracingSettings()
    assert tracing.traces_endpoint(off, {}) is None
    assert tracing.configure(off, "server", environ={}) is None
    assert not tracing.enabled()
    on = TracingSettings(otlp_endpoint="http://collector:4318/")
    assert tracing.traces_endpoint(on, {}) == "http://collector:4318/v1/traces"
    standard = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}
    assert tracing.traces_endpoint(off, standard) == "http://otel:4318/v1/traces"
    full = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel:4318/custom"}
    assert tracing.traces_endpoint(off, full) == "http://otel:4318/custom"
    assert tracing.traces_endpoint(on, {"OTEL_SDK_DISABLED": "true"}) is None
