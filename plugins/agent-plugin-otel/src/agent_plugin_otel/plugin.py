"""``OtelPlugin``: spans and metrics of one runner's jobs, built from the framework's hooks.

- A job is an ``invoke_agent {worker}`` span. Within one runner it is one INTERNAL span,
  started on the worker's side (``on_job_started``, in the job's own task, so that the
  jobs its handler requests are its children). Across runners it is two: a CLIENT span on
  the requester's runner (``add_request_headers`` to ``on_request_completed``) and a
  SERVER span, its child, on the worker's runner.
- Context travels in the W3C ``traceparent`` header that ``add_request_headers`` writes
  and ``on_job_started`` reads (through the global propagator, so ``OTEL_PROPAGATORS``
  applies).
- Updates and stream chunks are span events, sampled (``stream_events``), read from the
  runner's events (``WorkerRunner.listen_events``) while the runner runs.
- Job duration, jobs in flight and token usage are metrics.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent_plugin_otel import __version__
from agent_plugin_otel import _semconv as sc
from agent_plugin_otel._settings import OtelSettings
from agent_plugin_otel._setup import SpanCounts, global_providers
from framework import hookimpl
from framework.events import Event, EventType
from framework.types import JobStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from framework import BaseWorker, EventModel, Job, WorkerRunner
    from framework.bus.messages import JobResponseMessage
    from framework.llm import ModelCall, ToolCall
    from framework.registry import WorkerRegistry

logger = logging.getLogger("agent_plugin_otel")

_ERRORS = (JobStatus.FAILED, JobStatus.ERROR)
_TRACEPARENT = "traceparent"


class _JobSpan:
    """A job's span on the worker's side, with what is counted while it runs."""

    __slots__ = ("chunks", "span", "started", "updates", "worker")

    def __init__(self, span: Span, worker: str) -> None:
        self.span = span
        self.worker = worker
        self.started = time.perf_counter()
        self.updates = 0
        self.chunks = 0


def _sampled(count: int, first: int) -> bool:
    """Whether the ``count``-th item (from 1) becomes an event: the first ``first``, then
    those whose number is a power of two."""
    return count <= first or not count & (count - 1)


class OtelPlugin:
    """Traces and measures the jobs of the runner it is registered with.

    Args:
        tracer_provider: where spans go (default: the global provider when some code set
            an SDK one, else one built from the ``OTEL_*`` environment variables).
        meter_provider: where metrics go (default: as for ``tracer_provider``).
        settings: ``[plugins.otel]`` (an ``OtelSettings`` or a dict).
        runner: the runner it is registered with, when known now (``configure_runner``
            passes it); else it learns it when the runner starts its services. Until it
            knows its runner, requests get no CLIENT span.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        settings: OtelSettings | Mapping[str, Any] | None = None,
        runner: WorkerRunner | None = None,
    ) -> None:
        self.settings = (
            settings
            if isinstance(settings, OtelSettings)
            else OtelSettings.from_config(dict(settings or {}))
        )
        self.span_counts: SpanCounts | None = None
        """Spans ended, exported and lost, for providers this plugin built (else None)."""
        if tracer_provider is None or meter_provider is None:
            global_tracer, global_meter, counts = global_providers()
            if tracer_provider is None:
                tracer_provider, self.span_counts = global_tracer, counts
            meter_provider = meter_provider or global_meter
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self._tracer = tracer_provider.get_tracer(
            "agent_plugin_otel", __version__, schema_url=sc.SCHEMA_URL
        )
        self._propagator = propagate.get_global_textmap()
        self._runner: WorkerRunner | None = None
        self._registry: WorkerRegistry | None = None
        self._unknown_is_local = True
        if runner is not None:
            self._attach(runner)
        self._jobs: dict[tuple[str, str], _JobSpan] = {}
        self._requests: dict[str, tuple[Span, float]] = {}
        self._tools: dict[int, tuple[Span, object]] = {}
        self._capture = self.settings.capture_content
        self._first_events = self.settings.stream_events
        self._worker_attributes: dict[str, dict[str, str]] = {}
        self._metrics = self.settings.metrics
        if self._metrics:
            meter = meter_provider.get_meter(
                "agent_plugin_otel", __version__, schema_url=sc.SCHEMA_URL
            )
            self._job_duration = meter.create_histogram(
                sc.JOB_DURATION, unit="s", description="Duration of jobs, by worker and status."
            )
            self._in_flight = meter.create_up_down_counter(
                sc.JOBS_IN_FLIGHT, unit="{job}", description="Jobs running now, by worker."
            )
            self._token_usage = meter.create_histogram(
                sc.TOKEN_USAGE,
                unit="{token}",
                description="Tokens used by model calls, by type (input, output).",
            )
            self._operation_duration = meter.create_histogram(
                sc.OPERATION_DURATION, unit="s", description="Duration of model calls."
            )

    # ----------------------------------------------------------------- the runner

    @hookimpl
    async def runner_service(self, runner: WorkerRunner) -> None:
        """Read updates and stream chunks from the runner's events while it runs; flush
        the exporters when it ends (at most ``flush_timeout`` seconds)."""
        self._attach(runner)
        remove = runner.listen_events(self._on_event) if self._first_events else None
        try:
            await anyio.sleep_forever()
        finally:
            if remove is not None:
                remove()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.flush)

    def _attach(self, runner: WorkerRunner) -> None:
        if self._runner is None:
            from framework.bus.local import LocalBus

            self._runner = runner
            self._registry = runner.registry
            # A worker the registry does not know yet: on the in-process bus it can only be
            # one of ours; on a network bus it most likely runs elsewhere.
            self._unknown_is_local = isinstance(runner.bus, LocalBus)

    def flush(self) -> None:
        """Send what the providers hold, waiting at most ``flush_timeout`` seconds each."""
        millis = int(self.settings.flush_timeout * 1000)
        for provider in (self.tracer_provider, self.meter_provider):
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is not None:
                try:
                    force_flush(millis)
                except Exception:
                    logger.warning("flushing %s failed", type(provider).__name__, exc_info=True)

    # ----------------------------------------------------------------- the worker's side

    def _attributes_for(self, worker: str) -> dict[str, str]:
        attributes = self._worker_attributes.get(worker)
        if attributes is None:
            attributes = self._worker_attributes[worker] = {sc.WORKER: worker}
        return attributes

    @hookimpl
    def on_job_started(self, job: Job, worker: BaseWorker) -> None:
        """Start the job's span (SERVER when its requester is on another runner, else
        INTERNAL) and make it current in the job's task."""
        registry = worker.registry
        parent = self._propagator.extract(job.headers) if job.headers else None
        # A requester the registry does not know is another runner submitting jobs itself.
        local = _is_local(job.requester, registry, unknown=False)
        kind = SpanKind.INTERNAL if local else SpanKind.SERVER
        attributes = {
            sc.OPERATION_NAME: sc.INVOKE_AGENT,
            sc.AGENT_NAME: worker.name,
            sc.JOB_ID: job.job_id,
            sc.RUNNER: registry.runner_name,
            sc.JOB_REQUESTER: job.requester,
        }
        if job.name is not None:
            attributes[sc.JOB_NAME] = job.name
        span = self._tracer.start_span(
            f"invoke_agent {worker.name}", context=parent, kind=kind, attributes=attributes
        )
        self._jobs[(worker.name, job.job_id)] = _JobSpan(span, worker.name)
        otel_context.attach(trace.set_span_in_context(span, parent))
        if self._metrics:
            self._in_flight.add(1, self._attributes_for(worker.name))

    @hookimpl
    def on_job_completed(self, response: JobResponseMessage, worker: BaseWorker) -> None:
        """End the job's span with its status (error status for FAILED and ERROR)."""
        status = response.status
        record = self._jobs.pop((worker.name, response.job_id), None)
        if record is None:  # refused before its handler ran: a span of its own
            registry = worker.registry
            span = self._tracer.start_span(
                f"invoke_agent {worker.name}",
                kind=SpanKind.INTERNAL
                if _is_local(response.target, registry, unknown=False)
                else SpanKind.SERVER,
                attributes={
                    sc.OPERATION_NAME: sc.INVOKE_AGENT,
                    sc.AGENT_NAME: worker.name,
                    sc.JOB_ID: response.job_id,
                    sc.RUNNER: registry.runner_name,
                    sc.JOB_REQUESTER: response.target,
                },
            )
            duration = 0.0
        else:
            span = record.span
            duration = time.perf_counter() - record.started
            if record.updates:
                span.set_attribute(sc.JOB_UPDATES, record.updates)
            if record.chunks:
                span.set_attribute(sc.JOB_STREAM_CHUNKS, record.chunks)
            if self._metrics:
                self._in_flight.add(-1, self._attributes_for(worker.name))
        _finish(span, status, response.response)
        if self._metrics:
            self._job_duration.record(duration, {sc.WORKER: worker.name, sc.JOB_STATUS: status})

    def _on_event(self, event: EventModel) -> None:
        """A runtime event, inline: updates and stream chunks become sampled span events."""
        kind = event.event
        if kind is Event.STREAMING:
            name = "framework.job.stream_chunk"
        elif kind is Event.NODE_EXECUTION and event.event_type is EventType.UPDATE:
            name = "framework.job.update"
        else:
            return
        record = self._jobs.get((event.node_name, str(event.thread_id)))
        if record is None:
            return
        if kind is Event.STREAMING:
            record.chunks = count = record.chunks + 1
        else:
            record.updates = count = record.updates + 1
        if not _sampled(count, self._first_events):
            return
        attributes: dict[str, Any] = {"framework.event.index": count - 1}
        if self._capture:
            content = event.content if event.content else json.dumps(event.data, default=str)
            attributes["framework.event.content"] = content[: self.settings.content_limit]
        record.span.add_event(name, attributes, timestamp=int(event.timestamp * 1e9))

    # ----------------------------------------------------------------- the requester's side

    @hookimpl
    def add_request_headers(self, headers: dict[str, str], target: str) -> None:
        """Carry the current context to the worker: through a CLIENT span of our own when
        the worker is on another runner, as it is otherwise."""
        registry = self._registry
        if registry is None or _is_local(target, registry, unknown=self._unknown_is_local):
            self._propagator.inject(headers)
            return
        runner_name = registry.runner_name
        span = self._tracer.start_span(
            f"invoke_agent {target}",
            kind=SpanKind.CLIENT,
            attributes={
                sc.OPERATION_NAME: sc.INVOKE_AGENT,
                sc.AGENT_NAME: target,
                sc.RUNNER: runner_name,
            },
        )
        self._propagator.inject(headers, context=trace.set_span_in_context(span))
        key = headers.get(_TRACEPARENT)
        if key is None:  # a propagator without W3C trace context: nothing to find it by
            span.end()
        else:
            self._requests[key] = (span, time.perf_counter())

    @hookimpl
    def on_request_completed(
        self,
        job_id: str,
        status: JobStatus,
        response: dict[str, Any],
        headers: Mapping[str, str],
    ) -> None:
        """End the CLIENT span of a request to another runner."""
        requests = self._requests
        if not requests:
            return
        found = requests.pop(headers.get(_TRACEPARENT, ""), None)
        if found is None:
            return
        span, _ = found
        span.set_attribute(sc.JOB_ID, job_id)
        _finish(span, status, response)

    # ----------------------------------------------------------------- LLM workers

    @hookimpl
    def on_model_call(self, call: ModelCall, worker: BaseWorker) -> None:
        """A ``chat {model}`` CLIENT span for the call that ended, a child of the current
        (job) span, with the model, token usage and finish reason; content only opted in."""
        model = call.model or call.backend
        attributes: dict[str, Any] = {
            sc.OPERATION_NAME: sc.CHAT,
            sc.PROVIDER_NAME: call.backend,
            sc.AGENT_NAME: worker.name,
        }
        if call.model is not None:
            attributes[sc.REQUEST_MODEL] = call.model
        if call.input_tokens is not None:
            attributes[sc.USAGE_INPUT_TOKENS] = call.input_tokens
        if call.output_tokens is not None:
            attributes[sc.USAGE_OUTPUT_TOKENS] = call.output_tokens
        if call.finish_reason is not None:
            attributes[sc.RESPONSE_FINISH_REASONS] = [call.finish_reason]
        if call.job_id:
            attributes[sc.JOB_ID] = call.job_id
        if self._capture:
            limit = self.settings.content_limit
            attributes[sc.INPUT_MESSAGES] = json.dumps(call.messages, default=str)[:limit]
            if call.message is not None:
                attributes[sc.OUTPUT_MESSAGES] = json.dumps([call.message], default=str)[:limit]
        span = self._tracer.start_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=int(call.started_at * 1e9),
        )
        if call.error is not None:
            span.set_attribute(sc.ERROR_TYPE, call.error.split(":", 1)[0])
            span.set_status(Status(StatusCode.ERROR, call.error))
        span.end(end_time=int(call.ended_at * 1e9))
        if self._metrics:
            metric_attributes = {
                sc.OPERATION_NAME: sc.CHAT,
                sc.PROVIDER_NAME: call.backend,
                sc.REQUEST_MODEL: model,
            }
            self._operation_duration.record(call.ended_at - call.started_at, metric_attributes)
            for kind, tokens in (("input", call.input_tokens), ("output", call.output_tokens)):
                if tokens is not None:
                    self._token_usage.record(tokens, {**metric_attributes, sc.TOKEN_TYPE: kind})

    @hookimpl
    def on_tool_call_started(self, call: ToolCall, worker: BaseWorker) -> None:
        """An ``execute_tool {tool}`` span, current in the tool call's task, so the jobs
        the tool requests are its children."""
        attributes: dict[str, Any] = {
            sc.OPERATION_NAME: sc.EXECUTE_TOOL,
            sc.TOOL_NAME: call.name,
            sc.TOOL_CALL_ID: call.id,
            sc.TOOL_TYPE: "function",
            sc.AGENT_NAME: worker.name,
        }
        if self._capture:
            attributes[sc.TOOL_CALL_ARGUMENTS] = call.arguments[: self.settings.content_limit]
        span = self._tracer.start_span(
            f"execute_tool {call.name}", kind=SpanKind.INTERNAL, attributes=attributes
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._tools[id(call)] = (span, token)

    @hookimpl
    def on_tool_call_completed(self, call: ToolCall) -> None:
        """End the tool call's span (an error status when the tool raised)."""
        found = self._tools.pop(id(call), None)
        if found is None:
            return
        span, token = found
        otel_context.detach(token)  # type: ignore[arg-type]
        if self._capture and call.result is not None:
            span.set_attribute(sc.TOOL_CALL_RESULT, call.result[: self.settings.content_limit])
        if call.error is not None:
            span.set_attribute(sc.ERROR_TYPE, call.error.split(":", 1)[0])
            span.set_status(Status(StatusCode.ERROR, call.error))
        span.end()

    # ----------------------------------------------------------------- for tests and tools

    def stats(self) -> dict[str, int]:
        """Spans ended, exported, failed (refused by the collector or unreachable) and lost
        (ended but not exported: failed, dropped from a full queue, or still queued), for
        providers this plugin built; empty otherwise."""
        return {} if self.span_counts is None else self.span_counts.as_dict()


def _is_local(name: str, registry: WorkerRegistry, *, unknown: bool) -> bool:
    """Whether ``name`` (a worker, or a runner submitting jobs itself) is on the runner of
    ``registry``; ``unknown`` when the registry does not know it (yet)."""
    if name == registry.runner_name:
        return True
    entry = registry.get(name)
    if entry is None:
        return unknown
    return entry.runner == registry.runner_name


def _finish(span: Span, status: JobStatus, response: Mapping[str, Any]) -> None:
    """Set the job's status on its span (an error status for FAILED and ERROR) and end it."""
    span.set_attribute(sc.JOB_STATUS, str(status))
    if status in _ERRORS:
        error = response.get("error") if isinstance(response, dict) else None
        span.set_attribute(sc.ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR, str(error) if error is not None else str(status)))
    span.end()
