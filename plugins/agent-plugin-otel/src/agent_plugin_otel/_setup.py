"""Tracer and meter providers from the standard ``OTEL_*`` environment variables.

The SDK reads most of them itself: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
(``Resource.create``), ``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG``
(``TracerProvider``), ``OTEL_BSP_*`` (``BatchSpanProcessor``), ``OTEL_METRIC_EXPORT_*``
(``PeriodicExportingMetricReader``), and ``OTEL_EXPORTER_OTLP_*`` endpoint, headers,
timeout, compression and certificates (the OTLP exporters). This module reads the few that
choose *which* parts to build: ``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER``,
``OTEL_METRICS_EXPORTER`` and the OTLP protocol. A provider some other code already made the
global one (``opentelemetry-instrument``, an application's own setup) is used as it is.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from framework.config import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.context import Context
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.sdk.trace import Span
    from opentelemetry.trace import TracerProvider

HTTP = "http/protobuf"
GRPC = "grpc"
_lock = threading.Lock()
_made: dict[str, Any] = {}


def _exporters(variable: str) -> list[str]:
    value = os.environ.get(variable, "otlp").strip().lower() or "otlp"
    names = [name.strip() for name in value.split(",") if name.strip()]
    known = {"otlp", "console", "none"}
    for name in names:
        if name not in known:
            raise ConfigError(
                "environment", variable, f"unknown exporter {name!r}; use otlp, console or none"
            )
    return [name for name in names if name != "none"]


def _protocol(signal: str) -> str:
    for variable in (f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = os.environ.get(variable, "").strip()
        if value:
            if value not in (HTTP, GRPC):
                raise ConfigError(
                    "environment", variable, f"unknown protocol {value!r}; use {HTTP} or {GRPC}"
                )
            return value
    return HTTP


def _grpc_missing() -> ConfigError:
    return ConfigError(
        "environment",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "grpc needs the gRPC exporter: pip install 'agent-plugin-otel[grpc]' "
        "(or use http/protobuf, the default)",
    )


def _span_exporter(name: str) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if _protocol("TRACES") == GRPC:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter,
            )
        except ImportError:
            raise _grpc_missing() from None
        exporter: SpanExporter = OTLPSpanExporter()
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter()


def _metric_exporter(name: str) -> Any:
    if name == "console":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        return ConsoleMetricExporter()
    if _protocol("METRICS") == GRPC:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPMetricExporter,
            )
        except ImportError:
            raise _grpc_missing() from None
        return OTLPMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )

    return HTTPMetricExporter()


class SpanCounts:
    """Spans ended, exported, and lost (dropped from a full queue or refused by the
    collector): ``lost`` counts what ended but was not exported, so it is exact once the
    exporter has been flushed."""

    def __init__(self) -> None:
        self.ended = 0
        self.exported = 0
        self.failed = 0

    @property
    def lost(self) -> int:
        """Spans ended and not exported (still queued ones count until they are sent)."""
        return self.ended - self.exported

    def as_dict(self) -> dict[str, int]:
        return {
            "ended": self.ended,
            "exported": self.exported,
            "failed": self.failed,
            "lost": self.lost,
        }


class CountingExporter(SpanExporter):
    """A span exporter that counts what its exporter sent and what it failed to send."""

    def __init__(self, exporter: SpanExporter, counts: SpanCounts) -> None:
        self._exporter = exporter
        self._counts = counts

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._exporter.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._counts.exported += len(spans)
        else:
            self._counts.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


class CountingProcessor(SpanProcessor):
    """Counts spans as they end, then hands them to the batch processor."""

    def __init__(self, processor: SpanProcessor, counts: SpanCounts) -> None:
        self._processor = processor
        self._counts = counts

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None and span.context.trace_flags.sampled:
            self._counts.ended += 1
        self._processor.on_end(span)

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._processor.force_flush(timeout_millis)


def build_tracer_provider(
    counts: SpanCounts, meter_provider: MeterProvider | None = None
) -> TracerProvider:
    """A new SDK tracer provider configured from the environment, each exporter behind a
    batch processor whose spans ``counts`` counts."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = SDKTracerProvider(resource=Resource.create())
    for name in _exporters("OTEL_TRACES_EXPORTER"):
        exporter = CountingExporter(_span_exporter(name), counts)
        batch = BatchSpanProcessor(exporter, meter_provider=meter_provider)
        provider.add_span_processor(CountingProcessor(batch, counts))
    return provider


def build_meter_provider() -> MeterProvider:
    """A new SDK meter provider configured from the environment."""
    from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    readers = [
        PeriodicExportingMetricReader(_metric_exporter(name))
        for name in _exporters("OTEL_METRICS_EXPORTER")
    ]
    return SDKMeterProvider(resource=Resource.create(), metric_readers=readers)


def global_providers() -> tuple[TracerProvider, MeterProvider, SpanCounts | None]:
    """The process's providers: those already set globally by other code, else new ones
    built from the environment (made once per process, and set as the global ones so that
    other instrumentations join the same traces). The counts are None for providers this
    module did not build."""
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider

    with _lock:
        if not _made:
            meter_provider = metrics.get_meter_provider()
            if not isinstance(meter_provider, SDKMeterProvider):
                meter_provider = build_meter_provider()
                metrics.set_meter_provider(meter_provider)
            tracer_provider = trace.get_tracer_provider()
            counts = None
            if not isinstance(tracer_provider, SDKTracerProvider):
                counts = SpanCounts()
                tracer_provider = build_tracer_provider(counts, meter_provider)
                trace.set_tracer_provider(tracer_provider)
            _made.update(tracer=tracer_provider, meter=meter_provider, counts=counts)
        return _made["tracer"], _made["meter"], _made["counts"]
