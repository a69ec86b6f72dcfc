"""OpenTelemetry traces, exported by OTLP/HTTP: on only when an endpoint is configured.

Off (the default), every function here is one check of a module global and returns a
shared no-op, so the hot paths create no span objects. On, spans are made per request and
per batch, never per event, and carry counts and versions only: never user or session
ids, keys or bodies (a span's error status names the exception type, not its message).

The trace from an event's arrival to the lake crosses processes through the event log: a
traced append leaves (seq range → traceparent) in a side table, and the archive's batch
span links to those contexts (docs/tracing.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from clickrec import __version__

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from clickrec.config import TracingSettings

TRACES_PATH = "/v1/traces"
MAX_LINKS = 128  # the SDK's default link limit per span
_NOOP: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None


def enabled() -> bool:
    return _tracer is not None


def traces_endpoint(settings: TracingSettings, environ: Mapping[str, str]) -> str | None:
    """Where spans go: ``tracing.otlp_endpoint`` (a base URL, like the standard variable),
    else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL), else OTEL_EXPORTER_OTLP_ENDPOINT
    (a base URL); None (tracing off) when none is set or OTEL_SDK_DISABLED is true."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    base = settings.otlp_endpoint.strip()
    if not base:
        full = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if full:
            return full
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not base:
        return None
    base = base.rstrip("/")
    return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def configure(
    settings: TracingSettings, role: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """Export this process's spans (``role``: server, worker, cli) when an endpoint is
    configured; returns it (None: tracing stays off). Call ``shutdown`` on exit to flush."""
    environ = os.environ if environ is None else environ
    endpoint = traces_endpoint(settings, environ)
    if endpoint is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    attributes: dict[str, str] = {"clickrec.role": role, "service.version": __version__}
    if not environ.get("OTEL_SERVICE_NAME"):  # the standard variable wins over the setting
        attributes["service.name"] = settings.service_name
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    install(provider)
    return endpoint


def install(provider: TracerProvider) -> None:
    """Trace through ``provider`` from now on (``configure`` does; tests pass their own)."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("clickrec", __version__)


def shutdown() -> None:
    """Stop tracing and flush the spans still queued (on a server's or worker's exit)."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def span(
    name: str, attributes: Mapping[str, Any] | None = None, root: bool = False
) -> AbstractContextManager[Span]:
    """A span for the ``with`` block: a child of the current span, and only when that one
    is recorded (a step of a request is noise without its request: batch jobs and imports
    call the same code); ``root`` starts a trace when there is none. A shared no-op when
    tracing is off."""
    tracer = _tracer
    if tracer is None or not (root or trace.get_current_span().is_recording()):
        return _NOOP
    return _current(tracer, name, attributes, SpanKind.INTERNAL, None)


def request_span(
    method: str, headers: Sequence[tuple[bytes, bytes]]
) -> AbstractContextManager[Span]:
    """The server span of one HTTP request, continuing the caller's W3C ``traceparent``
    when it sends one; ``finish_request`` names it once the route is known."""
    tracer = _tracer
    if tracer is None:
        return _NOOP
    carrier = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in headers
        if k in (b"traceparent", b"tracestate")
    }
    parent = _PROPAGATOR.extract(carrier) if carrier else None
    attributes = {"http.request.method": method}
    return _current(tracer, method, attributes, SpanKind.SERVER, parent)


def finish_request(method: str, route: str, status: int, request_id: str) -> None:
    """Name the current request span by its route template (never the path: it may hold
    ids) and record the status and the x-request-id; 5xx marks it failed."""
    if _tracer is None:
        return
    current = trace.get_current_span()
    current.update_name(f"{method} {route}")
    current.set_attributes(
        {
            "http.route": route,
            "http.response.status_code": status,
            "clickrec.request_id": request_id,
        }
    )
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR))


def annotate(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (when tracing is on)."""
    if _tracer is not None:
        trace.get_current_span().set_attributes(attributes)


def mark_failed(target: Span, exc: BaseException) -> None:
    """Mark a span failed by an exception that was handled (by its type, not its text)."""
    target.set_status(Status(StatusCode.ERROR, type(exc).__name__))


def log_ids() -> dict[str, str]:
    """``trace_id`` and ``span_id`` of the current span for a log line; {} when none."""
    if _tracer is None:
        return {}
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x")}


def traceparent() -> str | None:
    """The current span as a W3C traceparent, when it is sampled (else None)."""
    if _tracer is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"


def add_links(target: Span, traced: Iterable[tuple[int, int, str]]) -> int:
    """Link ``target`` to the spans of (first_seq, last_seq, traceparent) rows; how many."""
    if _tracer is None:
        return 0
    count = 0
    for first, last, parent in traced:
        remote = trace.get_current_span(_PROPAGATOR.extract({"traceparent": parent}))
        context = remote.get_span_context()
        if context.is_valid:
            target.add_link(context, {"clickrec.first_seq": first, "clickrec.last_seq": last})
            count += 1
    return count


@contextmanager
def _current(
    tracer: trace.Tracer,
    name: str,
    attributes: Mapping[str, Any] | None,
    kind: SpanKind,
    parent: Any,
) -> Iterator[Span]:
    # Exceptions are not recorded as events: their messages may name users or items.
    with tracer.start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
