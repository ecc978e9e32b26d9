"""One open job request on the requester's side: what came back, and the buffer of unread
events with its backpressure.

A ``PendingJob`` is created by ``Requester.create_pending`` for a single job or a group
sharing one ``job_id``; the requester applies each reply to it, and the job's context
(``JobContext`` / ``JobGroupContext``) reads its events and waits for its outcome.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import Any

from framework._wakeup import Room, Wakeup
from framework.jobs import JobEvent, JobGroupEvent
from framework.types import JobStatus

EVENT_BUFFER = 256
"""How many updates and stream items a ``JobContext`` / ``JobGroupContext`` holds unread.
A handler in this process that fills the buffer waits, after the update or stream item that
filled it, until the requester has read half of them, has left its block, or the job ended."""

REMOTE_EVENT_BUFFER = 16 * EVENT_BUFFER
"""How many it holds for a worker on another runner, which cannot be made to wait (a network
bus carries no flow control back to it): a requester that falls this far behind ends the job
``CANCELLED``, saying so, rather than losing items silently or growing without bound."""


_new_tuple = tuple.__new__


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
        "group",
        "headers",
        "job_id",
        "name",
        "overfilled",
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
        group: bool = False,
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
        self.group = group
        """Whether the reader is a ``JobGroupContext`` (its events name their worker)."""
        self._events: deque[JobEvent | JobGroupEvent] | None = deque() if keep_events else None
        """What the requester has not read yet, as the events its ``async for`` yields; None
        when it keeps no events (fire and forget) or stopped reading."""
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
        self.overfilled: Callable[[PendingJob, str], None] | None = None
        """Called with the pending job and the worker when an event from that worker takes
        the buffer past ``REMOTE_EVENT_BUFFER``: whether that ends the job depends on where
        the worker runs, which the ``Requester`` (which sets it) knows."""

    def unfinished(self) -> list[str]:
        """Targets that have not answered yet."""
        return [t for t in self.targets if t not in self.statuses]

    def add_event(self, kind: str, worker: str, data: Any) -> None:
        """Queue an update or stream item for the requester's ``async for`` (past
        ``REMOTE_EVENT_BUFFER``, ``overfilled`` is told)."""
        events = self._events
        if events is not None and worker not in self.statuses:
            # Built here, once, as the reader will get it (tuple.__new__ spares the named
            # tuple's Python-level constructor).
            if self.group:
                events.append(_new_tuple(JobGroupEvent, (kind, worker, data)))
            else:
                events.append(_new_tuple(JobEvent, (kind, data)))
            self._wakeup.set()
            if len(events) >= EVENT_BUFFER and not self._filled() and self.overfilled:
                self.overfilled(self, worker)

    def _filled(self) -> bool:
        """The buffer is at its bound: producers in this process wait from now on. False
        when it is past ``REMOTE_EVENT_BUFFER``."""
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

    def take_event(self) -> JobEvent | JobGroupEvent | None:
        """The next queued event, or None when none is queued (the reader's fast path: a
        plain call, no coroutine). Reading the buffer down to half lets producers go on."""
        events = self._events
        if events:
            event = events.popleft()
            if self.full and len(events) <= EVENT_BUFFER // 2:
                self._free()
            return event
        return None

    async def receive_event(self) -> JobEvent | JobGroupEvent | None:
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
