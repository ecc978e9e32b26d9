"""Fixtures: a real OTLP/HTTP receiver on 127.0.0.1 that decodes what the SDK's exporter
sends (``opentelemetry-proto``), tracer and meter providers exporting to it, and a real
``redis-server`` on a free port for the tests across processes.

The receiver is a small ``http.server`` in a thread: ``POST /v1/traces`` and
``POST /v1/metrics`` bodies are decoded as ``ExportTraceServiceRequest`` and
``ExportMetricsServiceRequest`` protobufs, and the spans are kept as plain dicts.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUS = {0: "UNSET", 1: "OK", 2: "ERROR"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def value_of(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [value_of(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


@dataclass
class Receiver:
    """What arrived at the OTLP endpoint: spans (dicts), metric names and data points,
    raw request counts; ``delay`` makes every answer that slow (a slow collector)."""

    url: str
    spans: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_traces(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: value_of(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    entry = {
                        "name": span.name,
                        "kind": KINDS[span.kind],
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent": span.parent_span_id.hex() or None,
                        "attributes": {a.key: value_of(a.value) for a in span.attributes},
                        "status": STATUS[span.status.code],
                        "description": span.status.message,
                        "events": [
                            (e.name, {a.key: value_of(a.value) for a in e.attributes})
                            for e in span.events
                        ],
                        "service": resource.get("service.name"),
                        "scope": scope_spans.scope.name,
                        "schema_url": scope_spans.schema_url,
                    }
                    with self.lock:
                        self.spans.append(entry)

    def add_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    points = []
                    for point in getattr(metric, kind).data_points:
                        attributes = {a.key: value_of(a.value) for a in point.attributes}
                        if kind == "histogram":
                            points.append(
                                {"attributes": attributes, "count": point.count, "sum": point.sum}
                            )
                        else:
                            points.append(
                                {"attributes": attributes, "value": point.as_int or point.as_double}
                            )
                    with self.lock:
                        self.metrics.setdefault(metric.name, []).extend(points)

    def wait_for(
        self, test: Callable[[list[dict[str, Any]]], bool], timeout: float = 10
    ) -> list[dict[str, Any]]:
        """The spans, once ``test(spans)`` holds (fails after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                spans = list(self.spans)
            if test(spans):
                return spans
            if time.monotonic() > deadline:
                pytest.fail(f"the receiver did not get the expected spans in {timeout} s: {spans}")
            time.sleep(0.02)


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests += 1
            if receiver.delay:
                time.sleep(receiver.delay)
            if self.path == "/v1/traces":
                receiver.add_traces(body)
            elif self.path == "/v1/metrics":
                receiver.add_metrics(body)
            else:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def providers(receiver: Receiver) -> Iterator[tuple[TracerProvider, MeterProvider]]:
    """A tracer and a meter provider of this test's own, exporting to ``receiver`` with
    the SDK's real OTLP/HTTP exporters (batched, every 50 ms)."""
    resource = Resource.create({"service.name": "otel-tests"})
    tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces"), schedule_delay_millis=50
        )
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=f"{receiver.url}/v1/metrics"), export_interval_millis=60_000
    )
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[reader], shutdown_on_exit=False
    )
    yield tracer_provider, meter_provider
    tracer_provider.shutdown()
    meter_provider.shutdown()


# --------------------------------------------------------------------------- redis-server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real ``redis-server`` on 127.0.0.1 for one test (Debian package redis-server;
    skipped without it on a developer's machine, a failure under CI)."""
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if binary is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0?heartbeat=0.2"
    finally:
        process.terminate()
        process.wait(5)
