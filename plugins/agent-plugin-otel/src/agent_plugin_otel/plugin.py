"""``OtelPlugin``: spans and metrics of one runner's jobs, built from the framework's hooks.

- A job is an ``invoke_agent {worker}`` span. Within one runner it is one INTERNAL span,
  started on the worker's side (``on_job_started``, in the job's own task, so that the
  jobs its handler requests are its children). Across runners it is two: a CLIENT span on
  the requester's runner (``add_request_headers`` to ``on_request_completed``) and a
  SERVER span, its child, on the worker's runner.
- Context travels in the W3C ``traceparent`` header that ``add_request_headers`` writes
  and ``on_job_started`` reads (through the global propagator, so ``OTEL_PROPAGATORS``
  applies).
- Updates and stream chunks are span events, sampled (``stream_events``), from the
  ``on_job_progress`` hook: a job that neither updates nor streams pays nothing for them,
  and the runner builds no runtime events for this plugin.
- Job duration, jobs in flight and token usage are metrics. Jobs in flight is an
  asynchronous instrument read from a per-worker count when the metrics are collected, so
  a job costs one histogram measurement.

On the job path the work per job is kept to the SDK's own: the span's attributes start
from a dict made once per worker, and the metric attributes are dicts made once per worker
and status.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import anyio
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from agent_plugin_otel import __version__
from agent_plugin_otel import _semconv as sc
from agent_plugin_otel._settings import OtelSettings
from agent_plugin_otel._setup import SpanCounts, global_providers, run_bounded, set_exit_timeout
from framework import hookimpl
from framework.types import JobStatus

if TYPE_CHECKING:
    from collections.abc import Mapping

    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from framework import BaseWorker, Job, WorkerRunner
    from framework.bus.messages import JobResponseMessage
    from framework.llm import ModelCall, ToolCall
    from framework.registry import WorkerRegistry

logger = logging.getLogger("agent_plugin_otel")

_ERRORS = (JobStatus.FAILED, JobStatus.ERROR)
_TRACEPARENT = "traceparent"
_UPDATE_EVENT = "framework.job.update"
_CHUNK_EVENT = "framework.job.stream_chunk"
_EVENT_INDEX = "framework.event.index"
_EVENT_CONTENT = "framework.event.content"


class _JobSpan:
    """A job's span on the worker's side, with what is counted while it runs."""

    __slots__ = ("chunks", "span", "started", "updates", "worker")

    def __init__(self, span: Span, worker: _Worker) -> None:
        self.span = span
        self.worker = worker
        self.started = time.perf_counter()
        self.updates = 0
        self.chunks = 0


class _Worker:
    """What is the same for every job of one worker, made once: the span's name and base
    attributes, the metric attributes by status, and its jobs in flight."""

    __slots__ = ("attributes", "by_status", "in_flight", "metric_attributes", "span_name")

    def __init__(self, name: str, runner: str) -> None:
        self.span_name = f"{sc.INVOKE_AGENT} {name}"
        self.attributes: dict[str, Any] = {
            sc.OPERATION_NAME: sc.INVOKE_AGENT,
            sc.AGENT_NAME: name,
            sc.RUNNER: runner,
        }
        self.metric_attributes = {sc.WORKER: name}
        self.by_status = {
            status: {sc.WORKER: name, sc.JOB_STATUS: str(status)} for status in JobStatus
        }
        self.in_flight = 0


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
            set_exit_timeout(self.settings.flush_timeout)
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
        self._all_local = False
        if runner is not None:
            self._attach(runner)
        self._jobs: dict[tuple[str, str], _JobSpan] = {}
        self._requests: dict[str, tuple[Span, float]] = {}
        self._tools: dict[int, tuple[Span, object]] = {}
        self._capture = self.settings.capture_content
        self._first_events = self.settings.stream_events
        self._workers: dict[str, _Worker] = {}
        self._metrics = self.settings.metrics
        if self._metrics:
            meter = meter_provider.get_meter(
                "agent_plugin_otel", __version__, schema_url=sc.SCHEMA_URL
            )
            self._job_duration = meter.create_histogram(
                sc.JOB_DURATION, unit="s", description="Duration of jobs, by worker and status."
            )
            meter.create_observable_up_down_counter(
                sc.JOBS_IN_FLIGHT,
                callbacks=[self._observe_in_flight],
                unit="{job}",
                description="Jobs running now, by worker.",
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
        """Flush the exporters when the runner ends (waiting at most ``flush_timeout``
        seconds)."""
        self._attach(runner)
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.flush)

    def _attach(self, runner: WorkerRunner) -> None:
        if self._runner is None:
            from framework.bus.local import LocalBus

            self._runner = runner
            self._registry = runner.registry
            # On the in-process bus every worker is one of ours; on a network bus one the
            # registry does not know yet most likely runs elsewhere.
            self._unknown_is_local = self._all_local = isinstance(runner.bus, LocalBus)

    def flush(self) -> bool:
        """Send what the providers hold, waiting at most ``flush_timeout`` seconds in all;
        whether they were done by then. The flush goes on in a daemon thread past that (an
        exporter retries an unreachable collector for up to its own timeout), so neither
        the runner's end nor the process's exit waits for it; the exit then waits for no
        last export either."""
        timeout = self.settings.flush_timeout
        done = run_bounded(self._flush, timeout, "agent-plugin-otel flush")
        # A collector that did not take the flush will not take a last export at exit
        # either: then the exit does not wait for one.
        set_exit_timeout(timeout if done else 0.0)
        return done

    def _flush(self) -> None:
        millis = int(self.settings.flush_timeout * 1000)
        for provider in (self.tracer_provider, self.meter_provider):
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is not None:
                try:
                    force_flush(millis)
                except Exception:
                    logger.warning("flushing %s failed", type(provider).__name__, exc_info=True)

    # ----------------------------------------------------------------- the worker's side

    def _worker(self, name: str, runner: str) -> _Worker:
        worker = self._workers.get(name)
        if worker is None:
            worker = self._workers[name] = _Worker(name, runner)
        return worker

    def _observe_in_flight(self, options: CallbackOptions) -> Iterable[Observation]:
        """Jobs in flight by worker, read when the metrics are collected (in the reader's
        thread: the tuple is taken at once, under the GIL)."""
        return [
            Observation(worker.in_flight, worker.metric_attributes)
            for worker in tuple(self._workers.values())
        ]

    @hookimpl
    def on_job_started(self, job: Job, worker: BaseWorker) -> None:
        """Start the job's span (SERVER when its requester is on another runner, else
        INTERNAL) and make it current in the job's task."""
        registry = worker.registry
        runner = registry.runner_name
        headers = job.headers
        parent = self._propagator.extract(headers) if headers else None
        requester = job.requester
        # A requester the registry does not know is another runner submitting jobs itself.
        local = requester == runner or _is_local(requester, registry, unknown=False)
        this = self._worker(worker.name, runner)
        attributes = {**this.attributes, sc.JOB_ID: job.job_id, sc.JOB_REQUESTER: requester}
        if job.name is not None:
            attributes[sc.JOB_NAME] = job.name
        span = self._tracer.start_span(
            this.span_name,
            context=parent,
            kind=SpanKind.INTERNAL if local else SpanKind.SERVER,
            attributes=attributes,
        )
        self._jobs[(worker.name, job.job_id)] = _JobSpan(span, this)
        otel_context.attach(trace.set_span_in_context(span, parent))
        this.in_flight += 1

    @hookimpl
    def on_job_progress(
        self, job: Job, worker: BaseWorker, kind: str, index: int, data: Any
    ) -> None:
        """An update or a stream chunk: counted on the job's span, and a span event for the
        first ``stream_events`` of each kind, then those whose number is a power of two."""
        record = self._jobs.get((worker.name, job.job_id))
        if record is None:
            return
        count = index + 1
        if kind == "stream_chunk":
            record.chunks = count
            name = _CHUNK_EVENT
        else:
            record.updates = count
            name = _UPDATE_EVENT
        if count > self._first_events and count & index:  # not a power of two
            return
        attributes: dict[str, Any] = {_EVENT_INDEX: index}
        if self._capture:
            content = data if isinstance(data, str) else json.dumps(data, default=str)
            attributes[_EVENT_CONTENT] = content[: self.settings.content_limit]
        record.span.add_event(name, attributes)

    @hookimpl
    def on_job_completed(self, response: JobResponseMessage, worker: BaseWorker) -> None:
        """End the job's span with its status (error status for FAILED and ERROR)."""
        status = response.status
        record = self._jobs.pop((worker.name, response.job_id), None)
        if record is None:  # refused before its handler ran: a span of its own
            registry = worker.registry
            this = self._worker(worker.name, registry.runner_name)
            span = self._tracer.start_span(
                this.span_name,
                kind=SpanKind.INTERNAL
                if _is_local(response.target, registry, unknown=False)
                else SpanKind.SERVER,
                attributes={
                    **this.attributes,
                    sc.JOB_ID: response.job_id,
                    sc.JOB_REQUESTER: response.target,
                },
            )
            duration = 0.0
        else:
            span = record.span
            duration = time.perf_counter() - record.started
            this = record.worker
            this.in_flight -= 1
            if record.updates:
                span.set_attribute(sc.JOB_UPDATES, record.updates)
            if record.chunks:
                span.set_attribute(sc.JOB_STREAM_CHUNKS, record.chunks)
        _finish(span, status, response.response)
        if self._metrics:
            self._job_duration.record(duration, this.by_status[status])

    # ----------------------------------------------------------------- the requester's side

    @hookimpl
    def add_request_headers(self, headers: dict[str, str], target: str) -> None:
        """Carry the current context to the worker: through a CLIENT span of our own when
        the worker is on another runner, as it is otherwise."""
        registry = self._registry
        if (
            self._all_local
            or registry is None
            or _is_local(target, registry, unknown=self._unknown_is_local)
        ):
            if otel_context.get_current():  # an empty context has nothing to carry
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
    span.set_attribute(sc.JOB_STATUS, status.value)
    if status in _ERRORS:
        error = response.get("error") if isinstance(response, dict) else None
        span.set_attribute(sc.ERROR_TYPE, str(status))
        span.set_status(Status(StatusCode.ERROR, str(error) if error is not None else str(status)))
    span.end()
