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
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from framework._values import check_headers, jsonable
from framework._wakeup import Room, Wakeup
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
)
from framework.jobs import (
    JobContext,
    JobEventType,
    JobGroup,
    JobGroupContext,
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

EVENT_BUFFER = 256
"""How many updates and stream items a ``JobContext`` / ``JobGroupContext`` holds unread.
A handler in this process that fills the buffer waits, after the update or stream item that
filled it, until the requester has read half of them, has left its block, or the job ended."""

REMOTE_EVENT_BUFFER = 16 * EVENT_BUFFER
"""How many it holds for a worker on another runner, which cannot be made to wait (a network
bus carries no flow control back to it): a requester that falls this far behind ends the job
``CANCELLED``, saying so, rather than losing items silently or growing without bound."""


class PendingJob:
    """One open request (a single job, or a group sharing ``job_id``) and what came back."""

    __slots__ = (
        "_events",
        "_room",
        "_wakeup",
        "address",
        "cancel_on_error",
        "done",
        "failed",
        "fell_behind",
        "full",
        "headers",
        "job_id",
        "name",
        "payload",
        "reader",
        "responses",
        "sent",
        "statuses",
        "targets",
        "timeout",
    )

    def __init__(
        self,
        job_id: str,
        targets: tuple[str, ...],
        name: str | None,
        payload: dict[str, Any],
        cancel_on_error: bool,
        keep_events: bool,
        headers: dict[str, dict[str, str]],
        address: str,
    ) -> None:
        self.job_id = job_id
        self.address = address
        """The requester's address (where the replies go)."""
        self.targets = targets
        self.name = name
        self.payload = payload
        self.headers = headers
        """The headers sent to each target, by target name."""
        self.cancel_on_error = cancel_on_error
        self.statuses: dict[str, JobStatus] = {}
        self.responses: dict[str, dict[str, Any]] = {}
        self.sent: set[str] = set()
        """Targets the request was sent to (the others cannot be cancelled remotely)."""
        self.done = False
        self.failed = False
        """Whether a target ended other than ``COMPLETED``."""
        self.timeout: float | None = None
        """A fire-and-forget request's timeout while its deadline is in the requester's
        timer (None otherwise)."""
        self._events: deque[tuple[str, str, Any]] | None = deque() if keep_events else None
        """What the requester has not read yet; None when it keeps no events (fire and
        forget) or stopped reading."""
        self.full = False
        """Whether producers must wait for room (``EVENT_BUFFER`` reached, not yet read down
        to half)."""
        self.fell_behind = False
        """Whether a worker on another runner overfilled the buffer (the job is ending)."""
        self._room: Room | None = None
        self.reader: FrameType | None = None
        """The frame of the code that reads the events (the ``async with`` block's), until it
        leaves the block."""
        self._wakeup = Wakeup()

    def unfinished(self) -> list[str]:
        """Targets that have not answered yet."""
        return [t for t in self.targets if t not in self.statuses]

    def add_event(self, kind: str, worker: str, data: Any) -> bool:
        """Queue an update or stream item for the requester's ``async for``.

        False when the buffer is past ``REMOTE_EVENT_BUFFER``: whether that ends the job
        depends on where ``worker`` runs, which the ``Requester`` knows.
        """
        events = self._events
        if events is not None and worker not in self.statuses:
            events.append((kind, worker, data))
            self._wakeup.set()
            if len(events) >= EVENT_BUFFER:
                return self._filled()
        return True

    def _filled(self) -> bool:
        events = self._events
        assert events is not None
        if not self.full:
            self.full = True
            if self._room is None:
                self._room = Room(self.job_id, self.address)
            self._room.fill(self.reader)
        if len(events) <= REMOTE_EVENT_BUFFER:
            return True
        if self.fell_behind:  # the job is being ended for it: keep no more
            events.pop()
            return True
        return False

    def fall_behind(self) -> None:
        """A worker that cannot be made to wait overfilled the buffer: drop the item past
        the bound, and every later one (the requester ends the job)."""
        self.fell_behind = True
        assert self._events is not None
        self._events.pop()

    def _free(self) -> None:
        """Let the producers go on (``full`` is only ever set with a room)."""
        self.full = False
        assert self._room is not None
        self._room.free()

    def stop_reading(self) -> None:
        """The requester left its block: drop what it did not read, keep nothing more, and
        release the producers (nobody will make room for them any more)."""
        self._events = None
        self.reader = None
        if self.full:
            self._free()

    def finish(self, worker: str, status: JobStatus, response: dict[str, Any]) -> bool:
        """Record ``worker``'s terminal outcome; False when it had one already."""
        if worker in self.statuses or worker not in self.targets:
            return False
        self.statuses[worker] = status
        self.responses[worker] = response
        if status is not JobStatus.COMPLETED:
            self.failed = True
        if len(self.statuses) == len(self.targets):
            self.done = True
            if self.full:
                self._free()
        self._wakeup.set()
        return True

    def take_event(self) -> tuple[str, str, Any] | None:
        """The next queued event, or None when none is queued (the reader's fast path: a
        plain call, no coroutine). Reading the buffer down to half lets producers go on."""
        events = self._events
        if events:
            event = events.popleft()
            if self.full and len(events) <= EVENT_BUFFER // 2:
                self._free()
            return event
        return None

    async def receive_event(self) -> tuple[str, str, Any] | None:
        """The next queued event, waiting for one; None once every target has answered."""
        while True:
            event = self.take_event()
            if event is not None:
                return event
            if self.done:
                return None
            await self._wakeup.wait()

    async def wait_done(self) -> None:
        """Wait until every target has answered."""
        while not self.done:
            await self._wakeup.wait()


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
    ) -> PendingJob:
        """Open a pending job (nothing is sent yet).

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
            job_id, workers, name, payload, cancel_on_error, keep_events, by_target, self.address
        )
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
        if pending is not None and not pending.add_event(
            event_type, message.source, getattr(message, "data", {})
        ):
            self._overfilled(pending, message.source)
        return True

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
        elif not pending.add_event(
            _EVENT_TYPES[type(message)], message.source, getattr(message, "data", {})
        ):
            self._overfilled(pending, message.source)
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
        worker = message.worker_name
        for pending in list(self._pending.values()):
            if worker in pending.targets and worker not in pending.statuses:
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
