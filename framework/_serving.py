"""A started worker's serving engine: its inbox, its jobs, and its ending.

The runner's ``Runtime`` creates one ``Serving`` each time it starts a worker. One task
reads the worker's inbox and dispatches each message through a table keyed by message
class; every job request runs in its own task, so one slow job never blocks another. A
request that reaches an idle worker (its loop waiting, nothing queued) is taken at delivery
instead (``_take_now``), which spares the round trip a pass of the event loop. A job starts
in one place (``_start_job``, which spawns ``_run_job``) and ends in one place
(``answer``): whatever happens to it (its handler returns, raises, is cancelled, its worker
ends), its requester gets exactly one terminal response. ``BaseWorker`` holds the user's
side (handlers, callbacks, the requesting API) and reaches its engine through
``worker._serving``; the runner reaches it through ``Runtime.servings``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus
from pydantic import ValidationError

from framework._handlers import Handler, as_response, payload_error
from framework._requester import Requester
from framework._values import NotJSONError, is_plain, jsonable
from framework._wakeup import FULL
from framework.bus.base import UndeliverableError
from framework.bus.local import LocalBus
from framework.bus.messages import (
    ActivateMessage,
    BusMessage,
    CancelMessage,
    DeactivateMessage,
    EndMessage,
    JobCancelMessage,
    JobRequestMessage,
    JobResponseMessage,
    JobStreamDataMessage,
    JobStreamEndMessage,
    JobStreamStartMessage,
    JobUpdateMessage,
    JobUpdateRequestMessage,
    WorkerLostMessage,
)
from framework.jobs import Job, JobFailed, JobGroupResponse
from framework.types import JobStatus, WorkerErrorData, WorkerReadyData

if TYPE_CHECKING:
    from framework._runtime import Runtime
    from framework.worker import BaseWorker

logger = logging.getLogger("framework.worker")

STREAM_FAIRNESS = 64
"""A streaming handler yields the event loop once per this many items."""
CANCELLED_EARLY_LIMIT = 4096
"""How many cancels for jobs not (yet) running a worker remembers."""
STOP_MARGIN = 1.0
"""Seconds a cancelled job's handler gets to unwind before its worker ends without it."""


class Serving:
    """The engine of one started worker (see the module docstring).

    Attributes:
        worker: the worker it serves.
        runtime: what the runner handed it.
        requester: the worker's requesting side (replies to its own requests).
        running: the jobs it is running now, by job id.
        watched: names of the workers it watches (``on_worker_ready`` / ``on_worker_error``).
        ready: whether it has started and is registered.
        started_at: wall-clock time at which it became ready.
        finished: set once it has ended and left the registry.
    """

    def __init__(self, worker: BaseWorker, runtime: Runtime) -> None:
        self.worker = worker
        self.name = worker.name
        self.runtime = runtime
        self.table = worker._handler_table
        self.inbox = runtime.bus.subscribe(self.name)
        self.requester: Requester | None = None
        self.running: dict[str, Job] = {}
        self.watched: set[str] = set()
        self.ready = False
        self.started_at: float | None = None
        self.finished = anyio.Event()
        self.ending = False
        self.cancelling = False
        self._tg: TaskGroup | None = None
        self._jobs_idle: anyio.Event | None = None
        self._cancelled_early: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._loop = _asyncio_loop()
        self._context: contextvars.Context | None = None
        """The inbox loop's context while it waits (asyncio), of which the task of each job
        taken at delivery gets a copy."""
        self._new_scope: Callable[[], anyio.CancelScope] = anyio.CancelScope
        self._taken: JobRequestMessage | None = None
        """The request of the job taken at delivery whose task has not run yet (see
        ``_decide_taken``): one at a time."""
        self._job_tasks: set[asyncio.Task[None]] = set()
        """Job tasks on asyncio (the loop keeps only weak references to tasks)."""
        # The in-process bus delivers without waiting; calling its synchronous send spares
        # a coroutine per stream chunk on the streaming hot path, and its stream sinks spare
        # the message. Not for a subclass that overrides ``send``: it sees every message.
        bus = runtime.bus
        self._local: LocalBus | None = (
            bus if isinstance(bus, LocalBus) and type(bus).send is LocalBus.send else None
        )
        worker._serving = self
        runtime.servings[self.name] = self

    # ----------------------------------------------------------------- for the worker

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any, name: str) -> None:
        """Run ``func(*args)`` in the worker's task group; an exception goes to ``on_error``."""
        if self._tg is None or self.finished.is_set():
            raise RuntimeError(
                f"worker {self.name!r} is not running: start background tasks from on_ready "
                "or later, while the worker runs"
            )
        self._tg.start_soon(self.guarded, func, *args, name=name)

    def put_control(self, message: BusMessage) -> None:
        """Queue a control message for the worker itself (its own end or cancel, or the
        runner's end), ahead of queued data; ignored once the inbox is closed."""
        with contextlib.suppress(anyio.ClosedResourceError):
            self.inbox.put(message)

    def watch_handler(
        self, method: Callable[[WorkerReadyData], Awaitable[None]]
    ) -> Callable[[WorkerReadyData], Awaitable[None]]:
        """Wrap a watcher so it runs in the worker's task group, never blocking the registry."""

        async def handler(data: WorkerReadyData) -> None:
            if self._tg is not None and not self.ending:
                self._tg.start_soon(self.guarded, method, data)

        return handler

    def tell_failed(self, error: WorkerErrorData) -> None:
        """A worker failed: the worker's ``on_worker_error`` if it watches that one."""
        if error.worker_name in self.watched and self._tg is not None:
            self._tg.start_soon(self.guarded, self.worker.on_worker_error, error)

    async def guarded(self, method: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a user callback; an exception goes to ``on_error`` and the worker carries on."""
        await call_guarded(self.worker, method, *args)

    # ----------------------------------------------------------------- running

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """The worker's task: start, serve the inbox until it ends, then clean up."""
        runtime = self.runtime
        started = False
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.requester = runtime.requester(self.name, tg.start_soon, self.inbox)
                if self.table.observes_jobs:
                    self.requester.observer = self._observe_job_message
                    self.requester.on_group_done = self._on_group_done
                if not await self._start():
                    return
                tg.start_soon(self._serve_inbox, tg)
                for child in self.worker.children:
                    await runtime.start_worker(child)
                task_status.started()
                started = True
                await anyio.sleep_forever()  # until _serve_inbox ends and cancels the group
        finally:
            self._tg = None  # closed: nothing more is started in it
            if not started:
                task_status.started()
            with anyio.CancelScope(shield=True):
                await self._cleanup()

    async def _start(self) -> bool:
        worker, runtime = self.worker, self.runtime
        try:
            await worker.on_ready()
            for attribute, names in self.table.ready_watches.items():
                method = getattr(worker, attribute)
                for name in names:
                    self.watched.add(name)
                    await runtime.registry.watch(name, self.watch_handler(method))
            for name in sorted(worker._early_watches):  # watch_worker() before it started
                self.watched.add(name)
                await runtime.registry.watch(name, self.watch_handler(worker.on_worker_ready))
        except Exception as exc:
            await runtime.worker_failed(worker, exc, partial(self.guarded, worker.on_error, exc))
            return False
        self.ready = True
        self.started_at = time.time()
        worker._publish_entry()
        data = WorkerReadyData(
            worker_name=self.name, runner=runtime.name, jobs=tuple(worker.describe())
        )
        await runtime.worker_ready(worker, data)
        return True

    async def _serve_inbox(self, tg: TaskGroup) -> None:
        """Serve the inbox until it is closed and drained, then stop the worker's tasks."""
        dispatch = _DISPATCH
        inbox = self.inbox
        receive = inbox.receive
        loop = self._loop
        if loop is not None:
            # ``anyio.CancelScope()`` finds the running backend's class on every call, a
            # large share of a job's own cost: look it up once.
            self._new_scope = type(anyio.CancelScope())
            inbox.direct = self._take_now
        while True:
            if loop is not None:
                # A job taken at delivery runs in a copy of this loop's context as it is
                # while the loop waits (its callbacks may have set context variables).
                self._context = contextvars.copy_context()
            try:
                message = await receive()
            except anyio.EndOfStream:
                break
            try:
                await dispatch[type(message)](self, message)
            except Exception as exc:
                # A bad message (unknown type, invalid activation arguments...) costs that
                # message only: the worker keeps serving.
                logger.exception("worker %r: could not handle %s; ignored", self.name, message.type)
                await self.guarded(self.worker.on_error, exc)
        tg.cancel_scope.cancel()

    async def _cleanup(self) -> None:
        self.ending = True
        runtime = self.runtime
        ended = f"worker {self.name!r} ended"
        await runtime.registry.unregister(self.name, ended)
        runtime.bus.unsubscribe(self.name)
        for message in self.inbox.drain():
            if type(message) is JobRequestMessage:
                await self._refuse(message, JobStatus.CANCELLED, ended, from_loop=False)
        for job in list(self.running.values()):
            await self._answer_cancelled(job, ended, from_loop=False)
        await self._wait_for_jobs()
        if self.requester is not None:
            await self.requester.close(ended)
        was_ready, self.ready = self.ready, False
        self.finished.set()
        runtime.worker_finished(self.worker)
        if was_ready:
            await self.guarded(self.worker.on_finished)

    async def _wait_for_jobs(self) -> None:
        """Give cancelled job tasks ``STOP_MARGIN`` seconds to unwind, then leave them: a
        handler that swallows its cancellation is named in the log, and the worker ends
        anyway (its requester was answered ``CANCELLED`` already)."""
        if not self.running or self._loop is None:
            return
        self._jobs_idle = anyio.Event()
        with anyio.move_on_after(STOP_MARGIN):
            await self._jobs_idle.wait()
        for job in list(self.running.values()):
            handler = self.table.handler_for(job.name)
            logger.error(
                "worker %r: the handler %s() of job %s would not stop %.3g s after it was "
                "cancelled (it catches the cancellation and goes on); the worker ends without "
                "waiting for it, but the process cannot exit while it runs",
                self.name,
                handler.attribute if handler else "?",
                job.job_id,
                STOP_MARGIN,
            )

    # ----------------------------------------------------------------- a job starts

    async def _on_request(self, message: JobRequestMessage) -> None:
        if self._cancelled_early:
            reason = self._cancelled_early.pop((message.job_id, message.source), None)
            if reason is not None:
                await self._refuse(message, JobStatus.CANCELLED, reason)
                return
        if self.ending:
            await self._refuse(message, JobStatus.CANCELLED, f"worker {self.name!r} is ending")
            return
        if not self.worker.active:
            await self._refuse(
                message,
                JobStatus.ERROR,
                f"worker {self.name!r} is inactive and takes no jobs; activate it first",
            )
            return
        handler = self.table.handler_for(message.name)
        if handler is None:
            await self._refuse(
                message,
                JobStatus.FAILED,
                f"worker {self.name!r} has no handler for job {message.name or '(default)'!r}",
            )
            return
        self._start_job(handler, message)

    def _take_now(self, message: BusMessage) -> bool:
        """The inbox's ``direct``: take a message at delivery, without a hop through the
        inbox loop, when that changes nothing but the time it takes.

        A job request starts here, its task created by the sender's ``send``, while the
        inbox loop is idle (waiting, nothing queued: it would have started the job next, the
        same way) and nothing would refuse it; anything else waits its turn in the inbox.
        The job's task runs in a copy of the loop's context, not the sender's. Until that
        task first runs, anything else that comes waits in the inbox (a burst of requests
        is taken by the loop, in one pass); if anything did, the request goes back to the
        head of the inbox and the loop handles it in order (see ``_decide_taken``). Not
        with a custom asyncio task factory, which may not take a context (or may run the
        task at once, in the sender). Replies to the worker's own requests go to its
        requester's ``apply_now``.
        """
        if self._taken is not None:  # waits behind the request taken before it
            return False
        if type(message) is not JobRequestMessage:
            requester = self.requester
            return requester is not None and requester.apply_now(message)
        loop, context = self._loop, self._context
        if (
            self.ending
            or loop is None
            or context is None
            or not self.inbox.reader_waiting
            or not self.worker.active
            or loop.get_task_factory() is not None
        ):
            return False
        assert isinstance(message, JobRequestMessage)
        if self._cancelled_early and (message.job_id, message.source) in self._cancelled_early:
            return False
        if message.job_id in self.running:  # another requester's job id: the loop decides
            return False
        handler = self.table.handler_for(message.name)
        if handler is None:
            return False
        job = self._new_job(message)
        coro = self._run_job_in_scope(handler, job, True)
        self._job_tasks.add(loop.create_task(coro, context=context.copy()))
        self.running[job.job_id] = job
        self._taken = message
        self.inbox.holding = True
        return True

    async def _decide_taken(self, job: Job) -> bool:
        """In the first step of the task of the job taken at delivery: whether it goes on.

        Had its request been queued, the loop would have woken when it came and, at this
        point of the event loop's queue, handled every message queued by then in one pass,
        control messages first. When nothing has come since (the inbox applies nothing at
        delivery meanwhile: everything waits in it) and nothing else changed that would
        refuse the job (``handoff_to`` deactivates a worker without a message), the job
        starts, and is announced: what the loop would have done. Otherwise its request goes
        back to the head of the inbox, its task ends, and the loop handles everything in
        order, the usual way.
        """
        message, self._taken = self._taken, None
        inbox = self.inbox
        inbox.holding = False
        if job._answered:
            return True  # cancelled meanwhile, answered then: ``_run_job`` returns at once
        if not (inbox.queued or self.ending or not self.worker.active):
            if self.runtime.events_enabled:
                self.runtime.job_received(self.name, job)
            return True
        self._job_done(job)
        assert message is not None
        if not inbox.put_back(message):
            await self.answer(job, JobStatus.CANCELLED, {"error": f"worker {self.name!r} ended"})
        return False

    def _new_job(self, message: JobRequestMessage) -> Job:
        return Job(
            self,
            message.job_id,
            message.name,
            message.payload,
            message.source,
            time.monotonic(),
            message.headers,
            message.attempt,
        )

    def _start_job(self, handler: Handler, message: JobRequestMessage) -> None:
        """The one place where an accepted job starts: recorded as running, announced, and
        its handler run in a task of its own (``_take_now`` does the same for a job it
        takes at delivery, and its task announces it)."""
        job = self._new_job(message)
        self.running[job.job_id] = job
        if self.runtime.events_enabled:
            self.runtime.job_received(self.name, job)
        # The task's handle is how the job is cancelled. On asyncio a job is a plain task
        # that the engine owns itself (``running`` holds it; ``_shutdown`` and ``_cleanup``
        # cancel it and wait for it, within a bound): spawning through a task group is the
        # largest cost of a local round trip, and a task group could never be left while a
        # handler swallows its cancellation, so ``end()`` would not return.
        loop = self._loop
        if loop is not None:
            self._job_tasks.add(loop.create_task(self._run_job_in_scope(handler, job)))
        else:
            assert self._tg is not None
            job._handle = self._tg.start_soon(self._run_job, handler, job)

    async def _run_job_in_scope(self, handler: Handler, job: Job, taken: bool = False) -> None:
        """A job in a task of its own (asyncio): its cancel scope is how it is cancelled,
        so a handler's shielded section is respected as in any anyio task.

        ``taken``: whether ``_take_now`` took the request at delivery (``_decide_taken``
        then says whether the job goes on or its request went back to the inbox).
        """
        try:
            if taken and not await self._decide_taken(job):
                return
            with self._new_scope() as scope:
                job._handle = scope
                await self._run_job(handler, job)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._job_tasks.discard(task)

    async def _run_job(self, handler: Handler, job: Job) -> None:
        status = JobStatus.COMPLETED
        response: dict[str, Any] = {}
        worker = self.worker
        try:
            if job._answered:
                return  # cancelled before it started: answered then
            if self.table.observes_requests:
                await worker.on_job_request(job)
            method = getattr(worker, handler.attribute)
            model = handler.input_model
            args: tuple[Any, ...] = (job,)
            if model is not None:
                try:
                    args = (job, model.model_validate(job.payload))
                except ValidationError as exc:
                    message, fields = payload_error(job, model, exc)
                    raise JobFailed(message, {"fields": fields}) from None
            self.runtime.job_started(job, worker)
            if handler.streaming:
                response = await self._stream(method(*args), job)
            else:
                response = as_response(await method(*args), self.name)
            if job._chunks >= 0 and not job._answered:
                await self._close_stream(job)
        except JobFailed as exc:
            status, response = JobStatus.FAILED, exc.response
            try:
                response = jsonable(response, "the JobFailed data")
            except NotJSONError as error:
                status, response = JobStatus.ERROR, {"error": f"{type(error).__name__}: {error}"}
        except Exception as exc:
            # The requester gets the error text; the traceback is for whoever debugs the
            # handler (INFO: `framework -v`, or a logging configuration).
            logger.info("worker %r: job %s raised", self.name, job.job_id, exc_info=True)
            cause = sole_cause(exc)  # a task group in the handler wraps what went wrong
            status, response = JobStatus.ERROR, {"error": f"{type(cause).__name__}: {cause}"}
        except BaseException:
            # Cancelled: by cancel_job or the worker's end (answered then, so this does
            # nothing), or from outside (the worker or the runner is cancelled): answer,
            # then let the cancellation unwind.
            if not job._answered:
                with anyio.move_on_after(1.0, shield=True):
                    await self.answer(job, JobStatus.CANCELLED, {"error": "cancelled"})
            raise
        finally:
            self._job_done(job)
        await self.answer(job, status, response)

    # ----------------------------------------------------------------- while it runs

    async def _stream(self, items: AsyncIterator[Any], job: Job) -> dict[str, Any]:
        """Run an async-generator handler: each item is a stream chunk, framed by start and
        end even when there is none. The generator is not resumed while the requester's
        buffer is full (see ``send_chunk``)."""
        await self._open_stream(job)
        async for item in items:
            if job._answered:
                break
            await self.send_chunk(job, item)
        return {"chunks": job._chunks}

    async def _open_stream(self, job: Job) -> None:
        job._chunks = 0
        await self.runtime.bus.send(
            JobStreamStartMessage.build(source=self.name, target=job.requester, job_id=job.job_id)
        )
        local = self._local
        if local is not None:
            job._sink = local.stream_sink(job.requester, job.job_id)
        if FULL:
            await job._wait_for_room()

    async def _close_stream(self, job: Job) -> None:
        await self.runtime.bus.send(
            JobStreamEndMessage.build(source=self.name, target=job.requester, job_id=job.job_id)
        )

    async def send_chunk(self, job: Job, item: Any) -> None:
        """One stream chunk (``job.stream(item)`` or a yielded item), with its event.

        A requester in this process takes the chunk through the job's stream sink, without
        a message, whenever nothing is queued ahead of it in the requester's inbox.

        Backpressure: when the chunk filled the buffer of a requester in this process, wait
        for room there before the handler makes the next one (``Job._wait_for_room``). On the
        streaming hot path: one check of an empty dict while no buffer is full.
        """
        kind = type(item)
        if kind is str:
            if not item.isascii():
                jsonable(item, "the stream item")
        elif kind is not dict or not is_plain(item):
            item = jsonable(item, "the stream item")
        if job._chunks < 0:
            await self._open_stream(job)
        runtime = self.runtime
        index = job._chunks
        sink = job._sink
        if sink is None or not sink.put(self.name, item):
            message = JobStreamDataMessage.build(
                source=self.name, target=job.requester, job_id=job.job_id, data=item
            )
            local = self._local
            if local is not None:
                local.send_nowait(message)
            else:
                await runtime.bus.send(message)
        if runtime.events_enabled:
            runtime.stream_chunk(self.name, job.job_id, item, index)
        if runtime.wants_job_progress:
            runtime.job_progress(job, self.worker, "stream_chunk", index, item)
        job._chunks = index = index + 1
        if FULL:
            await job._wait_for_room()
        if not index % STREAM_FAIRNESS:
            await anyio.lowlevel.checkpoint()

    async def send_update(self, job: Job, data: dict[str, Any]) -> None:
        """A progress update (``job.update``), with its event."""
        data = jsonable(data, "the update")
        runtime = self.runtime
        await runtime.bus.send(
            JobUpdateMessage.build(
                source=self.name, target=job.requester, job_id=job.job_id, data=data
            )
        )
        if runtime.events_enabled:
            runtime.job_updated(self.name, job.job_id, data)
        index = job._updates
        job._updates = index + 1
        if runtime.wants_job_progress:
            runtime.job_progress(job, self.worker, "update", index, data)

    # ----------------------------------------------------------------- a job ends

    def _job_done(self, job: Job) -> None:
        self.running.pop(job.job_id, None)
        if not self.running and self._jobs_idle is not None:
            self._jobs_idle.set()

    async def answer(
        self, job: Job, status: JobStatus, response: dict[str, Any], *, from_loop: bool = False
    ) -> None:
        """Send the job's one terminal response (later calls for the same job do nothing).

        ``from_loop``: called by the inbox loop, which must not wait for plugins: the
        ``on_job_completed`` hook then runs in its own task.
        """
        if job._answered:
            return
        job._answered = True
        message = JobResponseMessage.build(
            source=self.name,
            target=job.requester,
            job_id=job.job_id,
            status=status,
            response=response,
        )
        runtime = self.runtime
        try:
            await runtime.bus.send(message)
        except UndeliverableError:
            logger.debug(
                "worker %r: requester %r of job %s is gone", self.name, job.requester, job.job_id
            )
        spawn = self._tg.start_soon if from_loop and self._tg is not None else None
        await runtime.job_answered(self.worker, message, spawn)

    async def _refuse(
        self, message: JobRequestMessage, status: JobStatus, error: str, *, from_loop: bool = True
    ) -> None:
        job = Job(
            self, message.job_id, message.name, message.payload, message.source, time.monotonic()
        )
        await self.answer(job, status, {"error": error}, from_loop=from_loop)

    async def _answer_cancelled(self, job: Job, reason: str, *, from_loop: bool = True) -> None:
        """Cancel a running job and answer CANCELLED now, without waiting for its task to
        unwind: a handler that shields itself from cancellation cannot keep its requester
        waiting."""
        if job._handle is not None:
            job._handle.cancel()
        await self.answer(
            job, JobStatus.CANCELLED, {"error": reason or "cancelled"}, from_loop=from_loop
        )

    async def _on_job_cancel(self, message: JobCancelMessage) -> None:
        reason = message.reason or f"cancelled by {message.source}"
        job = self.running.get(message.job_id)
        if job is not None:
            if job.requester == message.source:
                await self._answer_cancelled(job, reason)
            return
        # Control messages overtake queued data: the request may still be on its way.
        # Remember the cancel so that the request is refused when it arrives.
        self._cancelled_early[(message.job_id, message.source)] = reason
        if len(self._cancelled_early) > CANCELLED_EARLY_LIMIT:
            self._cancelled_early.popitem(last=False)

    async def _on_update_request(self, message: JobUpdateRequestMessage) -> None:
        job = self.running.get(message.job_id)
        if job is not None and self._tg is not None:
            self._tg.start_soon(self.guarded, self.worker.on_job_update_requested, job)

    # ----------------------------------------------------------------- replies to its requests

    async def _on_reply(self, message: BusMessage) -> None:
        if self.requester is not None:
            await self.requester.deliver(message)

    async def _observe_job_message(self, message: BusMessage) -> None:
        """Call the worker's job-side callbacks for a reply to one of its requests."""
        worker = self.worker
        kind = type(message)
        if kind is JobResponseMessage:
            assert isinstance(message, JobResponseMessage)
            await self.guarded(worker.on_job_response, message)
            specific = _RESPONSE_CALLBACKS[message.status]
            await self.guarded(getattr(worker, specific), message)
        else:
            await self.guarded(getattr(worker, _EVENT_CALLBACKS[kind]), message)

    async def _on_group_done(self, response: JobGroupResponse) -> None:
        await self.guarded(self.worker.on_job_group_completed, response)

    # ----------------------------------------------------------------- control

    async def _on_activate(self, message: ActivateMessage) -> None:
        worker = self.worker
        try:
            args = worker.activation_args_type.from_dict(message.args)
        except ValidationError as exc:
            logger.error(
                "worker %r: activation from %r refused: its arguments do not fit %s: %s",
                self.name,
                message.source,
                worker.activation_args_type.__name__,
                exc,
            )
            await self.guarded(worker.on_error, exc)
            return
        await worker._set_active(True, args)

    async def _on_deactivate(self, message: DeactivateMessage) -> None:
        await self.worker._set_active(False, None)

    async def _on_end(self, message: EndMessage) -> None:
        if self.ending:
            return
        self.ending = True
        self.runtime.registry.leaving(self.name)
        assert self._tg is not None
        self._tg.start_soon(self._shutdown, False, message.grace_period, message.reason)

    async def _on_cancel(self, message: CancelMessage) -> None:
        if self.cancelling:
            return
        if not self.ending:
            self.runtime.registry.leaving(self.name)
        self.ending = True
        self.cancelling = True
        assert self._tg is not None
        self._tg.start_soon(self._shutdown, True, 0.0, message.reason)

    async def force_cancel(self, reason: str) -> None:
        """Stop now, whatever the inbox loop is doing (a callback stuck on I/O, ``on_ready``
        still running): answer every running job CANCELLED, then cancel the worker's tasks.

        Used by ``runner.cancel()`` and when a graceful end overruns its grace period.
        """
        self.ending = True
        self.cancelling = True
        for job in list(self.running.values()):
            await self._answer_cancelled(job, reason)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _shutdown(self, cancel: bool, grace_period: float | None, reason: str) -> None:
        """End children first, give running jobs their grace, then stop the inbox.

        ``reason`` (from ``end(reason=...)`` / ``cancel(reason=...)``) is what requesters of
        cancelled jobs read in ``response["error"]``.
        """
        runtime = self.runtime
        grace = runtime.grace_period if grace_period is None else grace_period
        deadline = anyio.current_time() + grace  # one grace period for the whole subtree
        children = self.worker.children
        for child in children:
            if cancel:
                await child.cancel(f"parent {self.name!r} cancelled")
            else:
                await child.end(f"parent {self.name!r} ended", grace_period=grace)
        for child in children:
            serving = child._serving
            if serving is not None and serving.runtime is runtime:
                await serving.finished.wait()
        if self.running and not cancel:
            self._jobs_idle = anyio.Event()
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await self._jobs_idle.wait()
        reason = reason or f"worker {self.name!r} {'cancelled' if cancel else 'ended'}"
        for job in list(self.running.values()):
            await self._answer_cancelled(job, reason, from_loop=False)
        await runtime.registry.unregister(self.name, reason)
        self.inbox.close()


async def call_guarded(
    worker: BaseWorker, method: Callable[..., Awaitable[Any]], *args: Any
) -> None:
    """Run one of ``worker``'s callbacks; an exception is logged and goes to its
    ``on_error``, and the caller carries on."""
    try:
        await method(*args)
    except Exception as exc:
        logger.exception("worker %r: %s raised", worker.name, getattr(method, "__name__", method))
        try:
            await worker.on_error(exc)
        except Exception:
            logger.exception("worker %r: on_error raised", worker.name)


def sole_cause(error: BaseException) -> BaseException:
    """``error`` without the exception groups wrapped around a single exception."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None on another anyio backend (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


_RESPONSE_CALLBACKS = {
    JobStatus.COMPLETED: "on_job_completed",
    JobStatus.FAILED: "on_job_error",
    JobStatus.ERROR: "on_job_error",
    JobStatus.CANCELLED: "on_job_cancelled",
}
_EVENT_CALLBACKS: dict[type[BusMessage], str] = {
    JobUpdateMessage: "on_job_update",
    JobStreamStartMessage: "on_job_stream_start",
    JobStreamDataMessage: "on_job_stream_data",
    JobStreamEndMessage: "on_job_stream_end",
}
_DISPATCH: dict[type[BusMessage], Callable[[Serving, Any], Awaitable[None]]] = {
    JobRequestMessage: Serving._on_request,
    JobCancelMessage: Serving._on_job_cancel,
    JobUpdateRequestMessage: Serving._on_update_request,
    JobResponseMessage: Serving._on_reply,
    JobUpdateMessage: Serving._on_reply,
    JobStreamStartMessage: Serving._on_reply,
    JobStreamDataMessage: Serving._on_reply,
    JobStreamEndMessage: Serving._on_reply,
    WorkerLostMessage: Serving._on_reply,
    ActivateMessage: Serving._on_activate,
    DeactivateMessage: Serving._on_deactivate,
    EndMessage: Serving._on_end,
    CancelMessage: Serving._on_cancel,
}
"""Which method handles each message class: one lookup instead of an isinstance chain."""
