"""The requesting side of jobs, shared by workers and the runner.

A ``Requester`` owns one bus address. It sends job requests once their targets are ready,
keeps a ``PendingJob`` per open request, applies whatever comes back (updates, stream items,
responses, "worker lost" notices) and makes sure every pending job ends exactly once: by a
response, a timeout, a lost worker, or the requester closing.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

import anyio
import anyio.lowlevel

from framework._pending import REMOTE_EVENT_BUFFER, PendingJob
from framework._values import check_headers, jsonable
from framework._wakeup import Wakeup
from framework.bus.base import Bus, Inbox, UndeliverableError
from framework.bus.messages import (
    BusMessage,
    JobCancelMessage,
    JobRequestMessage,
    JobResponseMessage,
    JobStreamDataMessage,
    JobStreamEndMessage,
    JobStreamStartMessage,
    JobUpdateMessage,
    JobUpdateRequestMessage,
    WorkerLostMessage,
    unknown_outcome,
)
from framework.jobs import (
    JobError,
    JobEvent,
    JobEventType,
    JobGroup,
    JobGroupError,
    JobGroupEvent,
    JobGroupResponse,
)
from framework.registry import WorkerRegistry
from framework.types import JobStatus

if TYPE_CHECKING:
    from framework._hooks import RuntimeHooks

logger = logging.getLogger("framework.jobs")

Observer = Callable[[BusMessage], Awaitable[None]]
Spawn = Callable[..., Any]

_FAILURES = (JobStatus.FAILED, JobStatus.ERROR)
_JOB_ID_PREFIX = uuid.uuid4().hex[:16]
_job_numbers = itertools.count(1)


def new_job_id() -> str:
    """A job id unique across processes: a random per-process prefix and a counter
    (cheaper on the job path than a ``uuid4()`` per job)."""
    return f"{_JOB_ID_PREFIX}-{next(_job_numbers):x}"


_EVENT_TYPES: dict[type[BusMessage], str] = {
    JobUpdateMessage: JobEventType.UPDATE,
    JobStreamStartMessage: JobEventType.STREAM_START,
    JobStreamDataMessage: JobEventType.STREAM_DATA,
    JobStreamEndMessage: JobEventType.STREAM_END,
}

REPLY_TYPES: frozenset[type[BusMessage]] = frozenset(
    {*_EVENT_TYPES, JobResponseMessage, WorkerLostMessage}
)
"""What a requester's address receives: what ``Requester.deliver`` applies."""


class Requester:
    """Sends jobs from one address and routes the replies to the waiting ``PendingJob``."""

    def __init__(
        self,
        address: str,
        bus: Bus,
        registry: WorkerRegistry,
        spawn: Spawn,
        inbox: Inbox,
        waiting_index: dict[str, set[Requester]],
        hooks: RuntimeHooks | None = None,
    ) -> None:
        self.address = address
        self._hooks = hooks
        self.inbox = inbox
        """Where replies for this address arrive (``apply_now`` is offered each of them)."""
        self._bus = bus
        self._registry = registry
        self._spawn = spawn
        self._pending: dict[str, PendingJob] = {}
        self._waiting: dict[str, int] = {}
        self._waiting_index = waiting_index
        """Shared by a runner's requesters: worker name -> requesters with open jobs there,
        so a vanished worker's requesters are found without scanning them all."""
        self._deadlines: list[tuple[float, str]] = []
        """Heap of (deadline, job id) of fire-and-forget requests with a timeout, served by
        one timer task per requester rather than one sleeping task per job."""
        self._timed = 0
        """How many entries of ``_deadlines`` belong to jobs still open (the rest are stale)."""
        self._timer_wakeup = Wakeup()
        self._timer_running = False
        inbox.direct = self.apply_now
        inbox.sinks = self.stream_item_sink
        self.observer: Observer | None = None
        """Called with every message applied to a pending job (the worker's callbacks)."""
        self.on_group_done: Callable[[JobGroupResponse], Awaitable[None]] | None = None
        """Called once when every member of a group has answered."""

    # ----------------------------------------------------------------- requests

    def job(
        self,
        worker: str,
        *,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> JobContext:
        """A ``JobContext`` for one job to ``worker``."""
        return JobContext(
            self,
            worker,
            name=name,
            payload=payload,
            timeout=timeout,
            headers=check_headers(headers),
        )

    def job_group(
        self,
        *workers: str,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float | None = None,
        cancel_on_error: bool = True,
        headers: dict[str, str] | None = None,
    ) -> JobGroupContext:
        """A ``JobGroupContext`` for one job sent to every worker in ``workers``."""
        return JobGroupContext(
            self,
            workers,
            name=name,
            payload=payload,
            timeout=timeout,
            cancel_on_error=cancel_on_error,
            headers=check_headers(headers),
        )

    async def request(
        self,
        workers: tuple[str, ...],
        name: str | None,
        payload: dict[str, Any] | None,
        timeout: float | None,
        cancel_on_error: bool,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Fire and forget: return the job id at once; the request is sent in the background
        once its targets are ready, and outcomes go to the observer.

        The timeout covers the wait for readiness and the work; when it passes the job is
        cancelled and ends ``CANCELLED``. Without one, a target that never appears keeps the
        job open until ``cancel_job`` or until the requester ends.

        Always a checkpoint, first: a loop of requests (that fail, or not) lets other tasks
        run, the background senders among them, and a cancelled caller sends nothing.
        """
        await anyio.lowlevel.checkpoint()
        if not workers:
            raise ValueError("request_job_group needs at least one worker name")
        if len(set(workers)) != len(workers):
            raise ValueError(f"a job group got a worker name twice: {list(workers)}")
        pending = self.create_pending(
            workers, name, payload or {}, cancel_on_error, False, check_headers(headers)
        )
        self._spawn(self._send_in_background, pending)
        if timeout is not None:
            self._add_deadline(pending, timeout)
        return pending.job_id

    async def _send_in_background(self, pending: PendingJob) -> None:
        try:
            await self.send_pending(pending)
        except Exception as exc:  # a bus failure: the job ends here, not silently
            logger.exception("%s: sending job %s failed", self.address, pending.job_id)
            for worker in pending.unfinished():
                await self._apply_local(pending, worker, JobStatus.ERROR, f"sending failed: {exc}")

    # ----------------------------------------------------------------- the timer

    def _add_deadline(self, pending: PendingJob, timeout: float) -> None:
        """Give a fire-and-forget request its deadline; the timer task starts with the
        first deadline and wakes early when a new one is the earliest."""
        pending.timeout = timeout
        heap = self._deadlines
        entry = (anyio.current_time() + timeout, pending.job_id)
        heapq.heappush(heap, entry)
        self._timed += 1
        if not self._timer_running:
            self._spawn(self._run_timer)
            self._timer_running = True
        elif heap[0] is entry:
            self._timer_wakeup.set()

    def _forget_deadline(self, pending: PendingJob) -> None:
        """A timed request ended (or its deadline came): its heap entry is stale from now on.
        Stale entries are skipped when they come first, and the heap is rebuilt once they
        are the majority, so finished jobs leave neither a task nor memory behind."""
        pending.timeout = None
        self._timed -= 1
        heap = self._deadlines
        if not self._timed:
            heap.clear()
            self._timer_wakeup.set()  # nothing left to time: the timer ends
        elif len(heap) > 2 * self._timed + 64:
            pending_jobs = self._pending
            heap[:] = [entry for entry in heap if entry[1] in pending_jobs]
            heapq.heapify(heap)

    async def _run_timer(self) -> None:
        """Cancel each timed request whose deadline passed; return once none is left."""
        heap = self._deadlines
        try:
            while heap:
                deadline, job_id = heap[0]
                pending = self._pending.get(job_id)
                if pending is None or pending.timeout is None:
                    heapq.heappop(heap)  # stale: the job ended already
                    continue
                if anyio.current_time() < deadline:
                    with anyio.move_on_at(deadline):
                        await self._timer_wakeup.wait()
                    continue
                heapq.heappop(heap)
                timeout = pending.timeout
                self._forget_deadline(pending)
                await self.abandon(pending, f"timed out after {timeout:.3g} s")
        finally:
            self._timer_running = False

    async def cancel_job(self, job_id: str, reason: str = "") -> bool:
        """Ask the workers of an open job to cancel it. False when the job is not open here."""
        pending = self._pending.get(job_id)
        if pending is None:
            return False
        await self._cancel_members(pending, reason or "cancelled by the requester")
        return True

    async def request_job_update(self, job_id: str, worker_name: str) -> None:
        """Ask ``worker_name`` to send an update about job ``job_id``."""
        await self._send(
            JobUpdateRequestMessage.build(source=self.address, target=worker_name, job_id=job_id)
        )

    def create_pending(
        self,
        workers: tuple[str, ...],
        name: str | None,
        payload: dict[str, Any],
        cancel_on_error: bool,
        keep_events: bool,
        headers: dict[str, str],
        group: bool = False,
    ) -> PendingJob:
        """Open a pending job (nothing is sent yet); ``group``: read by a ``JobGroupContext``.

        Called in the requester's own task: the ``add_request_headers`` impls run here,
        once per target, and see the requester's context variables.

        Raises:
            TypeError: the payload is not a dict (or a pydantic model), or holds something
                that is not JSON-compatible (the message names the path and the type).
        """
        payload = jsonable(payload, "the payload")
        if type(payload) is not dict:
            raise TypeError(
                f"a job's payload is a dict (or a pydantic model), got {type(payload).__name__}"
            )
        hooks = self._hooks
        if hooks is not None and hooks.wants_request_headers:
            by_target = {}
            for target in workers:
                own = dict(headers)
                hooks.add_request_headers(own, target)
                by_target[target] = own
        else:
            by_target = dict.fromkeys(workers, headers)
        job_id = new_job_id()
        pending = PendingJob(
            job_id,
            workers,
            name,
            payload,
            cancel_on_error,
            keep_events,
            by_target,
            self.address,
            group,
        )
        pending.overfilled = self._overfilled
        self._pending[job_id] = pending
        for target in workers:
            count = self._waiting.get(target, 0)
            self._waiting[target] = count + 1
            if not count:
                self._waiting_index.setdefault(target, set()).add(self)
        return pending

    def _finish(
        self, pending: PendingJob, worker: str, status: JobStatus, response: dict[str, Any]
    ) -> bool:
        """Record one target's outcome, and forget the job once every target answered."""
        if not pending.finish(worker, status, response):
            return False
        hooks = self._hooks
        if hooks is not None and hooks.wants_request_completed:
            hooks.on_request_completed(
                pending.job_id, worker, status, response, pending.headers[worker]
            )
        count = self._waiting[worker] - 1
        if count:
            self._waiting[worker] = count
        else:
            del self._waiting[worker]
            waiters = self._waiting_index.get(worker)
            if waiters is not None:
                waiters.discard(self)
                if not waiters:
                    del self._waiting_index[worker]
        if pending.done:
            self._pending.pop(pending.job_id, None)
            if pending.timeout is not None:
                self._forget_deadline(pending)
        return True

    async def send_pending(self, pending: PendingJob) -> None:
        """Wait until every target is ready (or the job ends), then send the requests.

        A target that has an outcome already (lost while we waited, or cancelled with its
        group) is skipped: it is never sent a request.
        """
        registry = self._registry
        for target in pending.targets:
            if target not in registry and target not in pending.statuses:
                await self._wait_ready(pending, target)
            if pending.done:
                return
        for target in pending.targets:
            if target in pending.statuses:
                continue
            request = JobRequestMessage.build(
                source=self.address,
                target=target,
                job_id=pending.job_id,
                name=pending.name,
                payload=pending.payload,
                headers=pending.headers[target],
            )
            pending.sent.add(target)
            try:
                await self._bus.send(request)
            except UndeliverableError:
                await self._apply_local(
                    pending, target, JobStatus.ERROR, f"worker {target!r} is not on the bus"
                )

    async def _wait_ready(self, pending: PendingJob, target: str) -> None:
        async with anyio.create_task_group() as tg:

            async def ready() -> None:
                await self._registry.wait_ready(target)
                tg.cancel_scope.cancel()

            tg.start_soon(ready)
            await pending.wait_done()
            tg.cancel_scope.cancel()

    def open_groups(self) -> dict[str, JobGroup]:
        """The job groups requested from here that are still open, by job id."""
        return {
            job_id: JobGroup(
                job_id=p.job_id,
                worker_names=p.targets,
                responses=dict(p.responses),
                cancel_on_error=p.cancel_on_error,
                is_done=p.done,
            )
            for job_id, p in self._pending.items()
            if len(p.targets) > 1
        }

    # ----------------------------------------------------------------- replies

    def apply_now(self, message: BusMessage) -> bool:
        """Apply a reply synchronously, at delivery, when that needs no awaiting.

        Saves the hop through the owner's receive loop on the job path. Returns False (the
        message then goes through the inbox and ``deliver``) when callbacks must be awaited,
        a group must cancel its other members, or the message is not a reply.
        """
        if self.observer is not None:
            return False
        kind = type(message)
        if kind is JobResponseMessage:
            assert isinstance(message, JobResponseMessage)
            pending = self._pending.get(message.job_id)
            if pending is None:
                return True  # no longer open here: dropped, as deliver() would
            if pending.cancel_on_error and message.status in _FAILURES and len(pending.targets) > 1:
                return False
            self._finish(pending, message.source, message.status, message.response)
            return True
        event_type = _EVENT_TYPES.get(kind)
        if event_type is None:
            return False
        pending = self._pending.get(message.job_id)  # type: ignore[attr-defined]
        if pending is not None:
            pending.add_event(event_type, message.source, getattr(message, "data", {}))
        return True

    def stream_item_sink(self, job_id: str) -> Callable[[str, Any], object] | None:
        """A function that applies one stream item (source, data) of job ``job_id`` as
        ``apply_now`` applies its message, for a producer in this process that skips the
        message (see ``framework.bus.base.StreamSink``); None when ``apply_now`` would not
        apply such messages (callbacks to await) or the job is not open here."""
        if self.observer is not None:
            return None
        pending = self._pending.get(job_id)
        if pending is None:
            return None
        return partial(pending.add_event, JobEventType.STREAM_DATA)

    async def deliver(self, message: BusMessage) -> None:
        """Apply a reply (update, stream item, response) or a "worker lost" notice."""
        if type(message) is WorkerLostMessage:
            await self._worker_lost(message)
            return
        pending = self._pending.get(message.job_id)  # type: ignore[attr-defined]
        if pending is None:
            logger.debug(
                "%s: %s for a job no longer open here; dropped", self.address, message.type
            )
            return
        await self._apply(pending, message)

    async def _apply(self, pending: PendingJob, message: BusMessage) -> None:
        if type(message) is JobResponseMessage:
            if not self._finish(pending, message.source, message.status, message.response):
                return
            if not pending.done and pending.cancel_on_error and message.status in _FAILURES:
                await self._cancel_members(
                    pending, f"group member {message.source} ended {message.status}"
                )
        else:
            pending.add_event(
                _EVENT_TYPES[type(message)], message.source, getattr(message, "data", {})
            )
        if self.observer is not None:
            await self.observer(message)
        group_done = pending.done and len(pending.targets) > 1
        if group_done and self.on_group_done is not None and type(message) is JobResponseMessage:
            await self.on_group_done(JobGroupResponse(pending.job_id, dict(pending.responses)))

    def _overfilled(self, pending: PendingJob, worker: str) -> None:
        """``pending`` holds more than ``REMOTE_EVENT_BUFFER`` unread events.

        A worker on this runner is made to wait at ``EVENT_BUFFER``; one that was not (the
        code that reads the job streams into it itself, or the replies queue in this
        requester's inbox behind a slow callback) is let be. A worker on another runner
        cannot be made to wait: the job ends ``CANCELLED``, at the worker too, and the items
        past the bound are dropped.
        """
        entry = self._registry.get(worker)
        if entry is not None and entry.runner == self._registry.runner_name:
            return
        pending.fall_behind()
        reason = (
            f"the requester fell behind: {REMOTE_EVENT_BUFFER} updates and stream items from "
            f"worker {worker!r} unread (a worker on another runner cannot be made to wait)"
        )
        logger.warning("%s: job %s: %s", self.address, pending.job_id, reason)
        self._spawn(self.abandon, pending, reason)

    async def _apply_local(
        self, pending: PendingJob, worker: str, status: JobStatus, error: str
    ) -> None:
        """End ``worker``'s part of ``pending`` here, as if it had answered."""
        response = JobResponseMessage.build(
            source=worker,
            target=self.address,
            job_id=pending.job_id,
            status=status,
            response={"error": error},
        )
        await self._apply(pending, response)

    async def _worker_lost(self, message: WorkerLostMessage) -> None:
        """A worker left with jobs of ours open: those it was sent end ERROR with an unknown
        outcome (it may have run them), the others plainly ERROR."""
        worker = message.worker_name
        for pending in list(self._pending.values()):
            if worker not in pending.targets or worker in pending.statuses:
                continue
            if worker in pending.sent:
                response = JobResponseMessage.build(
                    source=worker,
                    target=self.address,
                    job_id=pending.job_id,
                    status=JobStatus.ERROR,
                    response=unknown_outcome(message.reason),
                )
                await self._apply(pending, response)
            else:
                await self._apply_local(pending, worker, JobStatus.ERROR, message.reason)

    # ----------------------------------------------------------------- endings

    async def abandon(self, pending: PendingJob, reason: str) -> None:
        """Stop waiting: cancel the unfinished members at their workers, end them CANCELLED."""
        unfinished = pending.unfinished()
        with anyio.CancelScope(shield=True):
            await self._send_cancel(pending, [w for w in unfinished if w in pending.sent], reason)
            for worker in unfinished:
                await self._apply_local(pending, worker, JobStatus.CANCELLED, reason)

    async def close(self, reason: str) -> None:
        """End every open job CANCELLED (the requester is going away)."""
        for pending in list(self._pending.values()):
            await self.abandon(pending, reason)

    async def _cancel_members(self, pending: PendingJob, reason: str) -> None:
        """Cancel every unfinished member: at its worker when it was sent the request, here
        (CANCELLED at once) when it was not."""
        unfinished = pending.unfinished()
        await self._send_cancel(pending, [w for w in unfinished if w in pending.sent], reason)
        for worker in unfinished:
            if worker not in pending.sent:
                await self._apply_local(pending, worker, JobStatus.CANCELLED, reason)

    async def _send_cancel(self, pending: PendingJob, workers: list[str], reason: str) -> None:
        for worker in workers:
            await self._send(
                JobCancelMessage.build(
                    source=self.address, target=worker, job_id=pending.job_id, reason=reason
                )
            )

    async def _send(self, message: BusMessage) -> None:
        try:
            await self._bus.send(message)
        except UndeliverableError:
            logger.debug(
                "%s: %s to %s undeliverable; dropped", self.address, message.type, message.target
            )


class RequestsJobs:
    """The requesting API that workers and the runner share: ``job``, ``job_group``,
    fire-and-forget ``request_job`` / ``request_job_group``, ``cancel_job`` and
    ``request_job_update``, each handed to the owner's ``Requester``."""

    _require_requester: Callable[[], Requester]
    """Defined by each owner: its requester, or a RuntimeError saying why it has none."""

    def job(
        self,
        worker: str,
        *,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> JobContext:
        """Ask ``worker`` to run a job: ``async with owner.job("echo", payload=...) as j``.

        ``headers`` travel with the request (the handler reads ``job.headers``): lower-case
        ``[a-z0-9-]`` names, str values, at most 64 and 8 KiB in all (else ``ValueError``);
        the prefix ``framework-`` is reserved.
        """
        return self._require_requester().job(
            worker, name=name, payload=payload, timeout=timeout, headers=headers
        )

    def job_group(
        self,
        *workers: str,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float | None = None,
        cancel_on_error: bool = True,
        headers: dict[str, str] | None = None,
    ) -> JobGroupContext:
        """Send one job to several workers under one job id (``headers`` as for ``job``)."""
        return self._require_requester().job_group(
            *workers,
            name=name,
            payload=payload,
            timeout=timeout,
            cancel_on_error=cancel_on_error,
            headers=headers,
        )

    async def request_job(
        self,
        worker: str,
        *,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Fire and forget: send a job and return its id at once. A worker hears of the
        outcome in its job-side callbacks; for the runner only plugins do."""
        return await self._require_requester().request(
            (worker,), name, payload, timeout, True, headers
        )

    async def request_job_group(
        self,
        *workers: str,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float | None = None,
        cancel_on_error: bool = True,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Fire and forget a group; a worker's ``on_job_group_completed`` gets the responses."""
        return await self._require_requester().request(
            workers, name, payload, timeout, cancel_on_error, headers
        )

    async def cancel_job(self, job_id: str, reason: str = "") -> bool:
        """Cancel a job this owner requested; False when it is not open."""
        return await self._require_requester().cancel_job(job_id, reason)

    async def request_job_update(self, job_id: str, worker_name: str) -> None:
        """Ask ``worker_name`` for an update on ``job_id`` (see ``on_job_update_requested``)."""
        await self._require_requester().request_job_update(job_id, worker_name)


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else anyio.current_time() + timeout


class _ContextBase(ABC):
    """What single jobs and groups share: sending on enter, the deadline, waiting on exit."""

    _group: ClassVar[bool] = False
    """Whether the events it yields are ``JobGroupEvent`` (else ``JobEvent``)."""

    def __init__(
        self,
        requester: Requester,
        workers: tuple[str, ...],
        name: str | None,
        payload: dict[str, Any] | None,
        timeout: float | None,
        cancel_on_error: bool,
        headers: dict[str, str],
    ) -> None:
        self._requester = requester
        self._headers = headers
        self._workers = workers
        self._name = name
        self._payload = payload if payload is not None else {}
        self._timeout = timeout
        self._cancel_on_error = cancel_on_error
        self._scope: anyio.CancelScope | None = None
        self._pending: PendingJob | None = None

    @property
    def job_id(self) -> str:
        """The job's id (available once the block is entered)."""
        if self._pending is None:
            raise RuntimeError("the job has not been sent yet: use it inside 'async with'")
        return self._pending.job_id

    # Every way out of the block that is not a success passes a checkpoint. A job can fail
    # without a single wait (the bus has no host for the target, the payload is refused, the
    # block raises at once), and a retry loop around such a job would otherwise never let
    # another task run. Success needs none: its wait for the response yields already.

    async def __aenter__(self) -> Self:
        try:
            self._pending = self._requester.create_pending(
                self._workers,
                self._name,
                self._payload,
                self._cancel_on_error,
                True,
                self._headers,
                self._group,
            )
        except Exception:
            await anyio.lowlevel.checkpoint()
            raise
        # The code with the ``async with``: a producer it calls itself must never wait for
        # it to read.
        self._pending.reader = sys._getframe(1)
        if self._timeout is not None:
            # The deadline covers the wait for readiness, the block and the wait on exit:
            # one cancel scope entered here and left in __aexit__.
            self._scope = anyio.CancelScope(deadline=_deadline(self._timeout))
            self._scope.__enter__()
        try:
            await self._requester.send_pending(self._pending)
        except BaseException as exc:
            self._pending.stop_reading()
            await self._leave(exc)
            if isinstance(exc, Exception):
                await anyio.lowlevel.checkpoint()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        pending = self._pending
        assert pending is not None
        pending.stop_reading()  # what was not read in the block never will be
        if exc is None:
            try:
                await pending.wait_done()
            except BaseException as wait_exc:  # cancelled while waiting: it yielded
                await self._leave(wait_exc)
                raise
        else:
            await self._leave(exc)
            if isinstance(exc, Exception):  # a cancellation is never held up here
                await anyio.lowlevel.checkpoint()
            return False
        if self._scope is not None:
            await self._leave(None)  # the job is done: this only leaves the deadline's scope
        if pending.failed:
            await anyio.lowlevel.checkpoint()
        self._check_outcome()
        return False

    async def _leave(self, exc: BaseException | None) -> None:
        """Leave the deadline scope; cancel unfinished work; raise on our own timeout."""
        pending = self._pending
        timed_out = False
        if self._scope is not None:
            scope, self._scope = self._scope, None
            if exc is None:
                scope.__exit__(None, None, None)
            else:
                scope.__exit__(type(exc), exc, exc.__traceback__)
            timed_out = scope.cancelled_caught
        if pending is not None and not pending.done:
            reason = "timed out" if timed_out else "the requester stopped waiting"
            await self._requester.abandon(pending, reason)
        if timed_out:
            raise self._timeout_error() from None

    @abstractmethod
    def _timeout_error(self) -> Exception:
        """The exception raised when the deadline passes."""

    @abstractmethod
    def _check_outcome(self) -> None:
        """Raise if the finished job (or group) ended badly."""


class JobContext(_ContextBase):
    """One job: ``async with`` sends it and waits for it; ``async for`` yields ``JobEvent``."""

    def __init__(
        self,
        requester: Requester,
        worker: str,
        *,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(requester, (worker,), name, payload, timeout, True, headers or {})
        self.worker = worker

    def __aiter__(self) -> JobContext:
        return self

    async def __anext__(self) -> JobEvent:
        pending = self._pending
        if pending is None:
            raise RuntimeError("iterate over the job inside 'async with'")
        event = pending.take_event()
        if event is None:
            event = await pending.receive_event()
            if event is None:
                raise StopAsyncIteration
        return event  # type: ignore[return-value]  # a JobEvent: the pending is not a group's

    @property
    def status(self) -> JobStatus | None:
        """How the job ended (None while it runs)."""
        return None if self._pending is None else self._pending.statuses.get(self.worker)

    @property
    def response(self) -> dict[str, Any] | None:
        """The response dict (None while the job runs)."""
        return None if self._pending is None else self._pending.responses.get(self.worker)

    def _timeout_error(self) -> Exception:
        return JobError(
            f"job {self._name or '(default)'!r} to worker {self.worker!r} timed out after "
            f"{self._timeout:.3g} s; it was cancelled",
            status=JobStatus.CANCELLED,
            response={"error": f"timed out after {self._timeout:.3g} s"},
            job_id=self.job_id,
            worker=self.worker,
            timed_out=True,
        )

    def _check_outcome(self) -> None:
        status = self.status
        if status is JobStatus.COMPLETED:
            return
        response = self.response or {}
        detail = response.get("error")
        raise JobError(
            f"job {self._name or '(default)'!r} to worker {self.worker!r} ended {status}"
            + (f": {detail}" if detail else ""),
            status=status or JobStatus.ERROR,
            response=response,
            job_id=self.job_id,
            worker=self.worker,
        )


class JobGroupContext(_ContextBase):
    """A job sent to several workers under one id; ``async for`` yields ``JobGroupEvent``."""

    _group = True

    def __init__(
        self,
        requester: Requester,
        workers: tuple[str, ...],
        *,
        name: str | None = None,
        payload: dict[str, Any] | None = None,
        timeout: float | None = None,
        cancel_on_error: bool = True,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not workers:
            raise ValueError("job_group needs at least one worker name")
        if len(set(workers)) != len(workers):
            raise ValueError(f"job_group got a worker name twice: {list(workers)}")
        super().__init__(requester, workers, name, payload, timeout, cancel_on_error, headers or {})
        self.workers = workers

    def __aiter__(self) -> JobGroupContext:
        return self

    async def __anext__(self) -> JobGroupEvent:
        pending = self._pending
        if pending is None:
            raise RuntimeError("iterate over the group inside 'async with'")
        event = pending.take_event()
        if event is None:
            event = await pending.receive_event()
            if event is None:
                raise StopAsyncIteration
        return event  # type: ignore[return-value]  # a JobGroupEvent: the pending is a group's

    @property
    def statuses(self) -> dict[str, JobStatus]:
        """Each member's status by worker name (members still running are absent)."""
        return {} if self._pending is None else dict(self._pending.statuses)

    @property
    def responses(self) -> dict[str, dict[str, Any]]:
        """Each member's response dict by worker name (members still running are absent)."""
        return {} if self._pending is None else dict(self._pending.responses)

    @property
    def group_response(self) -> JobGroupResponse:
        """Every member's response, as one ``JobGroupResponse``."""
        return JobGroupResponse(self.job_id, self.responses)

    def _timeout_error(self) -> Exception:
        return JobGroupError(
            f"job group {self._name or '(default)'!r} to {list(self.workers)} timed out after "
            f"{self._timeout:.3g} s; unfinished members were cancelled",
            statuses=self.statuses,
            responses=self.responses,
            job_id=self.job_id,
            timed_out=True,
        )

    def _check_outcome(self) -> None:
        if not self._cancel_on_error:
            return
        bad = {
            worker: status
            for worker, status in self.statuses.items()
            if status in (JobStatus.FAILED, JobStatus.ERROR)
        }
        if bad:
            details = "; ".join(
                f"{w} ended {s}: {self.responses.get(w, {}).get('error', '')}"
                for w, s in bad.items()
            )
            raise JobGroupError(
                f"job group {self._name or '(default)'!r} failed ({details}); "
                "the other members were cancelled",
                statuses=self.statuses,
                responses=self.responses,
                job_id=self.job_id,
            )
