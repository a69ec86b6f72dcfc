"""End to end: a real `clickrec serve` exports its spans by OTLP/HTTP to a receiver, and its
worker's archive span links back to the trace of the events' arrival."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.crash import serving, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
CLI = [sys.executable, "-m", "clickrec.cli"]


class Receiver:
    """A minimal OTLP/HTTP trace receiver: keeps (process role, span) of every export."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces":
                    receiver.take(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def take(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            role = attributes.get("clickrec.role", "")
            with self.lock:
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((role, s) for s in scope_spans.spans)

    def named(self, role: str, name: str) -> list[Span]:
        with self.lock:
            return [s for r, s in self.spans if r == role and s.name == name]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


def cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [*CLI, *args, "--home", str(home)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_spans_reach_the_collector_from_arrival_to_the_lake(
    receiver: Receiver, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    admin = next(line for line in cli(home, "init").splitlines() if line.startswith("ck_"))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "CLICKREC_TRACING__OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s instead of 5 s
    }
    output = tmp_path / "server.log"
    with output.open("w") as out, serving(home, ["--train-interval", "3600"], env, out) as (url, _):
        events = [
            {"user_id": "u1", "session_id": "s1", "item_id": f"p{i}", "event_type": "read"}
            for i in range(3)
        ]
        answer = httpx.post(
            f"{url}/v1/events",
            json={"events": events},
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        assert answer.status_code == 202

        (request,) = wait_for(lambda: receiver.named("server", "POST /v1/events"), 30)  # type: ignore[misc]
        steps = {
            s.name
            for s in receiver.named("server", "validate")
            + receiver.named("server", "log.append")
            + receiver.named("server", "online.apply")
            if s.parent_span_id == request.span_id and s.trace_id == request.trace_id
        }
        assert steps == {"validate", "log.append", "online.apply"}
        (append,) = receiver.named("server", "log.append")

        def linked_batch() -> list[Span]:
            return [
                s
                for s in receiver.named("worker", "archive.batch")
                if any(
                    link.trace_id == request.trace_id and link.span_id == append.span_id
                    for link in s.links
                )
            ]

        (batch,) = wait_for(linked_batch, 60)  # type: ignore[misc]
        written = [
            s for s in receiver.named("worker", "lake.write") if s.parent_span_id == batch.span_id
        ]
        assert len(written) == 1

    # The server's own log line for the request names the same trace.
    lines = [orjson.loads(x) for x in output.read_text().splitlines() if x.startswith("{")]
    (access,) = [x for x in lines if x.get("route") == "/v1/events"]
    assert access["trace_id"] == request.trace_id.hex()
