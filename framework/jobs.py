"""Jobs as seen by the two sides: ``Job`` for the handler, the contexts for the requester.

A requester opens ``async with worker.job(...) as job`` (a ``JobContext``) or
``job_group(...)`` (a ``JobGroupContext``): entering sends the request once the target is
ready, ``async for`` yields the updates and stream items as they arrive, and leaving waits
for the terminal response and turns a bad outcome into ``JobError`` / ``JobGroupError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import anyio
import anyio.lowlevel

from framework._wakeup import FULL
from framework.types import JobStatus

if TYPE_CHECKING:
    from anyio import TaskHandle

    from framework._serving import Serving
    from framework.bus.base import StreamSink


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
        attempt: which run of the job this is, from 1. Only a durable job
            (``@job(durable=True)``) on a network bus that keeps requests is ever run again,
            when the runner running it was lost; then it is 2, 3... up to ``max_attempts``.
    """

    __slots__ = (
        "_answered",
        "_chunks",
        "_handle",
        "_headers",
        "_serving",
        "_sink",
        "_updates",
        "attempt",
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
        attempt: int = 1,
    ) -> None:
        self._serving = serving
        self._headers = headers
        self.job_id = job_id
        self.name = name
        self.payload = payload
        self.requester = requester
        self.started_at = started_at
        self.attempt = attempt
        self._handle: TaskHandle[None] | anyio.CancelScope | None = None
        """The job's task (cancelling it cancels the job)."""
        self._answered = False
        self._chunks = -1
        """Stream chunks sent so far; -1 while the job has not started streaming."""
        self._updates = 0
        """Updates sent so far."""
        self._sink: StreamSink | None = None
        """Where its stream chunks go without a message each, once it streams to a
        requester in this process (see ``framework.bus.base.StreamSink``)."""

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


def __getattr__(name: str) -> object:
    # The requester's side (JobContext, JobGroupContext) lives with the Requester; it is
    # also importable from here, where the other job types are.
    if name in ("JobContext", "JobGroupContext"):
        from framework import _requester

        return getattr(_requester, name)
    raise AttributeError(f"module 'framework.jobs' has no attribute {name!r}")
