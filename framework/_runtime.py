"""The runtime seam: the one object a runner hands each of its workers.

A worker needs a few things from whoever hosts it: the bus, the registry, the grace period,
a way to start and finish its children, and a way to say what happened (events for the
publishers, notification hooks for plugins). ``Runtime`` is that narrow interface. The
runner builds one per run; workers (and the LLM worker) call its typed methods, one per
happening, and never reach into the runner. Every event is built here, following the
mapping in the guide's events section (docs/workers-and-jobs.md), so it lives in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from framework._hooks import RuntimeHooks
from framework._publishing import EventPublisher
from framework._requester import Requester
from framework.bus.base import Bus, Inbox
from framework.bus.messages import JobResponseMessage
from framework.events import ContentType, Event, EventModel, EventType
from framework.registry import WorkerRegistry
from framework.types import JobStatus, WorkerErrorData, WorkerReadyData

if TYPE_CHECKING:
    from framework._serving import Serving
    from framework.jobs import Job
    from framework.runner import WorkerRunner
    from framework.worker import BaseWorker

logger = logging.getLogger("framework.runner")

Spawn = Callable[..., Any]

_RESPONSE_EVENTS = {
    JobStatus.COMPLETED: (EventType.RESULT, ContentType.DATA, False),
    JobStatus.FAILED: (EventType.ERROR, ContentType.ERROR, True),
    JobStatus.ERROR: (EventType.ERROR, ContentType.ERROR, True),
    JobStatus.CANCELLED: (EventType.INTERRUPTED, ContentType.STATE, False),
}


class Runtime:
    """What a worker gets from its runner, and how it reports what happens.

    Attributes:
        name: the runner's name.
        bus: the bus the runner's workers are on.
        registry: the runner's worker registry.
        hooks: the typed facade over the plugins' hooks.
        grace_period: seconds running jobs get when a worker ends gracefully.
        events_enabled: whether any publisher listens (no event is built otherwise).
        wants_job_progress: whether any plugin implements ``on_job_progress`` (read on
            the streaming path: nothing is called per update or chunk otherwise).
    """

    def __init__(
        self,
        runner: WorkerRunner,
        hooks: RuntimeHooks,
        publisher: EventPublisher,
        run_id: str,
        waiting_index: dict[str, set[Requester]],
    ) -> None:
        self.runner = runner
        self.name = runner.name
        self.bus: Bus = runner.bus
        self.registry: WorkerRegistry = runner.registry
        self.hooks = hooks
        self.grace_period = runner.grace_period
        self.run_id = run_id
        self.events_enabled = publisher.enabled
        self.wants_job_progress = hooks.wants_job_progress
        self._publisher = publisher
        self._sequence = 0
        self._waiting_index = waiting_index
        self.servings: dict[str, Serving] = {}
        """The serving engine of every worker started and not yet finished, by name, in
        the order they started."""

    # ----------------------------------------------------------------- requesting

    def requester(self, address: str, spawn: Spawn, inbox: Inbox) -> Requester:
        """A requester for ``address`` (a worker's or the runner's), sharing the runner's
        index of who waits on which worker."""
        return Requester(
            address, self.bus, self.registry, spawn, inbox, self._waiting_index, self.hooks
        )

    # ----------------------------------------------------------------- workers

    async def worker_ready(self, worker: BaseWorker, data: WorkerReadyData) -> None:
        """A local worker finished starting: register it, then tell publishers and plugins."""
        await self.registry.register(data)
        if self.events_enabled:
            self.emit(Event.NODE_EXECUTION, EventType.START, ContentType.STATE, worker.name)
        await self.hooks.on_worker_ready(data, self.runner)

    async def worker_failed(
        self, worker: BaseWorker, error: BaseException, on_error: Callable[[], Awaitable[None]]
    ) -> None:
        """A local worker's ``on_ready`` raised: it never became ready. The failure is
        recorded, then the worker's ``on_error`` runs (``on_error``), then watchers and
        plugins are told."""
        failure = self.runner._worker_failed(worker, error)
        await on_error()
        await self.runner._tell_failed(failure)

    async def start_worker(self, worker: BaseWorker) -> None:
        """Start ``worker`` (hosted already: a child whose parent is starting) in the
        runner's worker task group; returns once it is ready or has failed."""
        await self.runner._start_worker(worker)

    def worker_finished(self, worker: BaseWorker) -> None:
        """A local worker ended and left the registry."""
        serving = self.servings.get(worker.name)
        if serving is not None and serving.worker is worker:
            del self.servings[worker.name]
        self.runner._worker_finished(worker)

    # ----------------------------------------------------------------- jobs

    def job_received(self, worker: str, job: Job) -> None:
        """A job request was accepted by ``worker`` (call only when ``events_enabled``)."""
        self.emit(
            Event.NODE_EXECUTION,
            EventType.START,
            ContentType.DATA,
            worker,
            job.job_id,
            data={"name": job.name, "requester": job.requester, "payload": job.payload},
        )

    def job_started(self, job: Job, worker: BaseWorker) -> None:
        """A handler is about to run, in the job's own task: ``on_job_started``."""
        if self.hooks.wants_job_started:
            self.hooks.on_job_started(job, worker)

    def job_progress(self, job: Job, worker: BaseWorker, kind: str, index: int, data: Any) -> None:
        """An update or a stream chunk was sent (call only when ``wants_job_progress``):
        ``on_job_progress``, in the job's own task."""
        self.hooks.on_job_progress(job, worker, kind, index, data)

    def job_updated(self, worker: str, job_id: str, data: dict[str, Any]) -> None:
        """``job.update(data)`` was sent (call only when ``events_enabled``)."""
        self.emit(
            Event.NODE_EXECUTION, EventType.UPDATE, ContentType.UPDATE, worker, job_id, data=data
        )

    def stream_chunk(self, worker: str, job_id: str, item: Any, index: int) -> None:
        """One stream chunk was sent (call only when ``events_enabled``): text as a text
        delta, anything else as data."""
        if isinstance(item, str):
            self.emit(
                Event.STREAMING,
                EventType.PROGRESS,
                ContentType.TEXT,
                worker,
                job_id,
                content=item,
                chunk_index=index,
                delta=True,
            )
        else:
            self.emit(
                Event.STREAMING,
                EventType.PROGRESS,
                ContentType.DATA,
                worker,
                job_id,
                data=item if isinstance(item, dict) else {"item": item},
                chunk_index=index,
            )

    async def job_answered(
        self, worker: BaseWorker, message: JobResponseMessage, spawn: Spawn | None
    ) -> None:
        """A job's terminal response was sent: its event, then ``on_job_completed``
        (in a task of its own through ``spawn`` when the caller must not wait)."""
        if self.events_enabled:
            event_type, content_type, is_error = _RESPONSE_EVENTS[message.status]
            self.emit(
                Event.NODE_EXECUTION,
                event_type,
                content_type,
                worker.name,
                message.job_id,
                data={"status": str(message.status), "response": message.response},
                is_error=is_error,
            )
        if self.hooks.wants_job_completed:
            if spawn is not None:
                spawn(self.hooks.on_job_completed, message, worker)
            else:
                await self.hooks.on_job_completed(message, worker)

    # ----------------------------------------------------------------- LLM workers

    def text_delta(self, worker: str, job_id: str, text: str) -> None:
        """A model's text delta outside a job's stream (call only when ``events_enabled``)."""
        self.emit(
            Event.STREAMING,
            EventType.PROGRESS,
            ContentType.TEXT,
            worker,
            job_id,
            content=text,
            delta=True,
        )

    def tool_event(
        self,
        worker: str,
        job_id: str,
        event_type: EventType,
        content_type: ContentType,
        data: dict[str, Any],
    ) -> None:
        """A tool call (START, TOOL_CALL) or its result (RESULT, TOOL_RESULT)."""
        self.emit(Event.TOOL_EXECUTION, event_type, content_type, worker, job_id, data=data)

    # ----------------------------------------------------------------- the runner's own

    def runner_started(self) -> None:
        """The runner started (call only when ``events_enabled``)."""
        self.emit(Event.GRAPH_EXECUTION, EventType.START, ContentType.STATE, self.name)

    def runner_ended(self, reason: str) -> None:
        """The runner ended (call only when ``events_enabled``)."""
        self.emit(
            Event.GRAPH_EXECUTION, EventType.END, ContentType.STATE, self.name, content=reason
        )

    def worker_failed_event(self, worker: str, error: WorkerErrorData) -> None:
        """A worker failed to start (call only when ``events_enabled``)."""
        self.emit(
            Event.NODE_EXECUTION,
            EventType.ERROR,
            ContentType.ERROR,
            worker,
            content=error.error,
            is_error=True,
        )

    # ----------------------------------------------------------------- building events

    def emit(
        self,
        event: Event,
        event_type: EventType,
        content_type: ContentType,
        node_name: str,
        thread_id: str = "",
        *,
        data: dict[str, Any] | None = None,
        content: str = "",
        is_error: bool = False,
        chunk_index: int | None = None,
        delta: bool = False,
    ) -> None:
        """Build one event and offer it to every publisher.

        Never raises: an event that cannot be built is logged and skipped, so having
        publishers never changes a job's outcome.
        """
        self._sequence += 1
        try:
            event_model = EventModel(
                event=event,
                event_type=event_type,
                content_type=[content_type],
                node_name=node_name,
                thread_id=thread_id,
                run_id=self.run_id,
                sequence_id=self._sequence,
                data=data if data is not None else {},
                content=content,
                is_error=is_error,
                chunk_index=chunk_index,
                delta=delta,
                delta_type="text" if delta else None,
            )
        except Exception:
            logger.warning(
                "event %s/%s for %r not published", event, event_type, node_name, exc_info=True
            )
            return
        self._publisher.publish(event_model)
