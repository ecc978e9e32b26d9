"""Jobs as seen by the two sides: ``Job`` for the handler, the contexts for the requester.

A requester opens ``async with worker.job(...) as job`` (a ``JobContext``) or
``job_group(...)`` (a ``JobGroupContext``): entering sends the request once the target is
ready, ``async for`` yields the updates and stream items as they arrive, and leaving waits
for the terminal response and turns a bad outcome into ``JobError`` / ``JobGroupError``.
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

import anyio
import anyio.lowlevel

from framework._wakeup import FULL
from framework.types import JobStatus

if TYPE_CHECKING:
    from anyio import TaskHandle

    from framework._requester import PendingJob, Requester
    from framework._serving import Serving


class JobFailed(Exception):
    """Raised by a handler to end its job ``FAILED`` (a logical error, not a crash).

    Args:
        message: what went wrong, for the requester; it becomes ``response["error"]``.
        data: extra fields for the response dict.
    """

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = dict(data or {})

    @property
    def response(self) -> dict[str, Any]:
        """The response dict the requester receives."""
        return {**self.data, "error": self.message}


class JobError(Exception):
    """A single job ended with a status other than ``COMPLETED``, or timed out.

    Attributes:
        status: how the job ended (``CANCELLED`` on a timeout).
        response: the response dict (``{"error": "..."}`` for failures).
        job_id: the job's id.
        worker: the name of the worker it was sent to.
        timed_out: whether the requester's timeout ended it.
    """

    def __init__(
        self,
        message: str,
        *,
        status: JobStatus,
        response: dict[str, Any] | None = None,
        job_id: str = "",
        worker: str = "",
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.response = dict(response or {})
        self.job_id = job_id
        self.worker = worker
        self.timed_out = timed_out


class JobGroupError(Exception):
    """A job group ended badly: a member failed (with ``cancel_on_error=True``) or it timed out.

    Attributes:
        statuses: each member's status, by worker name.
        responses: each member's response dict, by worker name.
        job_id: the group's job id.
        timed_out: whether the requester's timeout ended it.
    """

    def __init__(
        self,
        message: str,
        *,
        statuses: dict[str, JobStatus],
        responses: dict[str, dict[str, Any]],
        job_id: str = "",
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.statuses = statuses
        self.responses = responses
        self.job_id = job_id
        self.timed_out = timed_out


class JobEventType(StrEnum):
    """What a ``JobEvent`` or ``JobGroupEvent`` is. A ``StrEnum``: each compares equal to
    its value (``JobEventType.UPDATE == "update"``)."""

    UPDATE = "update"
    """A progress update: ``data`` is the dict given to ``job.update()``."""
    STREAM_START = "stream_start"
    """The handler started streaming (``data`` is ``{}``)."""
    STREAM_DATA = "stream_data"
    """One stream item: ``data`` is the item."""
    STREAM_END = "stream_end"
    """The handler finished streaming (``data`` is ``{}``)."""


class _JobEventFields(NamedTuple):
    type: str
    data: Any


class JobEvent(_JobEventFields):
    """Something a worker sent about a job before its response: an update or a stream item.

    Immutable: a named tuple (one is made per stream item, and a tuple is the cheapest
    immutable record). ``type`` is a ``JobEventType``; the constants below are its members.
    """

    __slots__ = ()

    UPDATE: ClassVar[str] = JobEventType.UPDATE
    STREAM_START: ClassVar[str] = JobEventType.STREAM_START
    STREAM_DATA: ClassVar[str] = JobEventType.STREAM_DATA
    STREAM_END: ClassVar[str] = JobEventType.STREAM_END


class _JobGroupEventFields(NamedTuple):
    type: str
    worker_name: str
    data: Any


class JobGroupEvent(_JobGroupEventFields):
    """A ``JobEvent`` from one member of a group, with the member's name."""

    __slots__ = ()

    UPDATE: ClassVar[str] = JobEventType.UPDATE
    STREAM_START: ClassVar[str] = JobEventType.STREAM_START
    STREAM_DATA: ClassVar[str] = JobEventType.STREAM_DATA
    STREAM_END: ClassVar[str] = JobEventType.STREAM_END


@dataclass(slots=True)
class JobGroup:
    """The state of a job group a worker requested (see ``BaseWorker.job_groups``)."""

    job_id: str
    worker_names: tuple[str, ...]
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancel_on_error: bool = True
    is_done: bool = False


@dataclass(frozen=True, slots=True)
class JobGroupResponse:
    """Every member's response of a finished group, by worker name."""

    job_id: str
    responses: dict[str, dict[str, Any]]


class Job:
    """One job as its handler sees it.

    Attributes:
        job_id: unique id (shared by the members of a group).
        name: the job's name (None for the default handler's plain requests).
        payload: the request's payload dict.
        requester: the name of whoever asked (a worker or a runner).
        started_at: when the job arrived, on the monotonic clock (``time.monotonic()``:
            for durations, not a wall-clock time; ``BaseWorker.started_at`` is one).
    """

    __slots__ = (
        "_answered",
        "_chunks",
        "_handle",
        "_headers",
        "_serving",
        "job_id",
        "name",
        "payload",
        "requester",
        "started_at",
    )

    def __init__(
        self,
        serving: Serving,
        job_id: str,
        name: str | None,
        payload: dict[str, Any],
        requester: str,
        started_at: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._serving = serving
        self._headers = headers
        self.job_id = job_id
        self.name = name
        self.payload = payload
        self.requester = requester
        self.started_at = started_at
        self._handle: TaskHandle[None] | anyio.CancelScope | None = None
        """The job's task (cancelling it cancels the job)."""
        self._answered = False
        self._chunks = -1
        """Stream chunks sent so far; -1 while the job has not started streaming."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The request's headers (read-only): context the requester sent along, such as
        trace context, an idempotency key or a tenant id. Empty when it sent none."""
        headers = self._headers
        return _NO_HEADERS if not headers else MappingProxyType(headers)

    async def update(self, data: dict[str, Any]) -> None:
        """Send a progress update to the requester (ignored once the job has its response).

        Raises:
            TypeError: ``data`` is not a dict, or holds something that is not
                JSON-compatible (the message names the path and the type).
        """
        if not isinstance(data, dict):
            raise TypeError(f"job.update() takes a dict, got {type(data).__name__}")
        if not self._answered:
            await self._serving.send_update(self, data)
            if FULL:
                await self._wait_for_room()

    async def stream(self, item: Any) -> None:
        """Send one stream chunk from a plain (not generator) handler.

        The first call opens the stream; it is closed before the response, so a handler
        can stream (LLM tokens, say) and still return a response dict. Ignored once the
        job has its response.
        """
        if not self._answered:
            await self._serving.send_chunk(self, item)

    async def _wait_for_room(self) -> None:
        """Backpressure: wait while the requester's buffer of unread events is full, when the
        requester reads in this process (one on another runner has a bound of its own).

        Released when the requester has read half the buffer, has left its block, or the job
        ended (a cancelled job's task is cancelled too). Called from the code that reads this
        very job, it does not wait: nobody else would make room.
        """
        room = FULL.get(self.job_id)
        if room is not None and room.owner == self.requester:
            await room.wait()

    def __repr__(self) -> str:
        return f"Job(job_id={self.job_id!r}, name={self.name!r}, requester={self.requester!r})"


_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def _deadline(timeout: float | None) -> float:
    return math.inf if timeout is None else anyio.current_time() + timeout


class _ContextBase(ABC):
    """What single jobs and groups share: sending on enter, the deadline, waiting on exit."""

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
                self._workers, self._name, self._payload, self._cancel_on_error, True, self._headers
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
        item = pending.take_event()
        if item is None:
            item = await pending.receive_event()
            if item is None:
                raise StopAsyncIteration
        return JobEvent(item[0], item[2])

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
        item = pending.take_event()
        if item is None:
            item = await pending.receive_event()
            if item is None:
                raise StopAsyncIteration
        return JobGroupEvent(item[0], item[1], item[2])

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
