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

import atexit
import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from framework.config import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

HTTP = "http/protobuf"
GRPC = "grpc"
_lock = threading.Lock()
_made: dict[str, Any] = {}
_exit_timeout = [2.0]
"""Seconds the process's exit waits for the providers this module built to shut down."""


def run_bounded(work: Callable[[], object], timeout: float, name: str) -> bool:
    """Run ``work`` in a daemon thread and wait at most ``timeout`` seconds for it; whether
    it finished. A thread still waiting for a collector then never holds the process up:
    the OTLP exporters retry for up to ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s by default)
    whatever timeout their callers pass."""
    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


def set_exit_timeout(seconds: float) -> None:
    """How long the process's exit waits for the providers this module built."""
    _exit_timeout[0] = seconds


def _shutdown_at_exit(*providers: Any) -> None:
    """At exit, shut the providers this module built down (a last export), waiting at
    most the exit timeout: with a collector that is down the process still ends promptly,
    and what was not sent by then is lost."""

    def shutdown() -> None:
        for provider in providers:
            with contextlib.suppress(Exception):  # at exit: the SDK logged what failed
                provider.shutdown()

    run_bounded(shutdown, _exit_timeout[0], "agent-plugin-otel shutdown")


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


class CountingBatchProcessor(BatchSpanProcessor):
    """The SDK's batch span processor, counting the sampled spans that end (the count
    ``lost`` is measured against)."""

    def __init__(self, exporter: SpanExporter, counts: SpanCounts, **options: Any) -> None:
        super().__init__(exporter, **options)
        self._counts = counts

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            self._counts.ended += 1
        super().on_end(span)


def build_tracer_provider(
    counts: SpanCounts,
    meter_provider: MeterProvider | None = None,
    *,
    shutdown_on_exit: bool = True,
) -> TracerProvider:
    """A new SDK tracer provider configured from the environment, each exporter behind a
    batch processor whose spans ``counts`` counts (``shutdown_on_exit``: the SDK's own,
    unbounded, shutdown at exit)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider

    provider = SDKTracerProvider(resource=Resource.create(), shutdown_on_exit=shutdown_on_exit)
    for name in _exporters("OTEL_TRACES_EXPORTER"):
        exporter = CountingExporter(_span_exporter(name), counts)
        provider.add_span_processor(
            CountingBatchProcessor(exporter, counts, meter_provider=meter_provider)
        )
    return provider


def build_meter_provider(*, shutdown_on_exit: bool = True) -> MeterProvider:
    """A new SDK meter provider configured from the environment (``shutdown_on_exit``: the
    SDK's own, unbounded, shutdown at exit)."""
    from opentelemetry.sdk.metrics import MeterProvider as SDKMeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    readers = [
        PeriodicExportingMetricReader(_metric_exporter(name))
        for name in _exporters("OTEL_METRICS_EXPORTER")
    ]
    return SDKMeterProvider(
        resource=Resource.create(), metric_readers=readers, shutdown_on_exit=shutdown_on_exit
    )


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
            built: list[Any] = []
            meter_provider = metrics.get_meter_provider()
            if not isinstance(meter_provider, SDKMeterProvider):
                meter_provider = build_meter_provider(shutdown_on_exit=False)
                metrics.set_meter_provider(meter_provider)
                built.append(meter_provider)
            tracer_provider = trace.get_tracer_provider()
            counts = None
            if not isinstance(tracer_provider, SDKTracerProvider):
                counts = SpanCounts()
                tracer_provider = build_tracer_provider(
                    counts, meter_provider, shutdown_on_exit=False
                )
                trace.set_tracer_provider(tracer_provider)
                built.insert(0, tracer_provider)
            if built:
                atexit.register(_shutdown_at_exit, *built)
            _made.update(tracer=tracer_provider, meter=meter_provider, counts=counts)
        return _made["tracer"], _made["meter"], _made["counts"]
