"""The jobs submitted over HTTP: their events, kept so that a client can follow a job
later or resume a broken stream with ``Last-Event-ID``, and their outcome.

Each job keeps its last ``MAX_EVENTS`` events, within ``MAX_JOB_BYTES`` (ids count from 1
per job, then the ``response`` event). The client that submitted the job and follows it
(``POST /v1/jobs`` with ``Accept: text/event-stream``) holds the job back rather than miss
anything, as a requester in the same process would: the worker waits while that client is
a full log behind (up to ``PATIENCE`` seconds). Any other follower that falls further
behind skips ahead and is told how many events it missed. Finished jobs are kept, the last
``history`` of them within ``HISTORY_BYTES``; older ones are forgotten.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Any

import anyio

from framework.http._sse import KEEPALIVE_SECONDS
from framework.types import JobStatus

MAX_EVENTS = 4096
"""Events one job keeps for followers and resumption."""
MAX_JOB_BYTES = 16 * 1024 * 1024
"""Bytes of events (as JSON) one job keeps; the oldest go first beyond it."""
HISTORY_BYTES = 64 * 1024 * 1024
"""Bytes all finished jobs keep in all; the oldest jobs are forgotten beyond it."""
PATIENCE = 60.0
"""Seconds the job waits for its submitter's stream to read on before it goes on without
it (the submitter then skips ahead, as any follower)."""

RUNNING = "running"

Item = tuple[int | None, str, str]
"""``(id, event type, data as JSON)``; the id is None for a ``skipped`` notice."""


def to_json(value: Any) -> str:
    """Compact JSON text of a value that already crossed the bus (JSON-compatible)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class JobRecord:
    """One job submitted over HTTP: what it sent so far and how it ended."""

    def __init__(self, job_id: str, worker: str, name: str | None) -> None:
        self.job_id = job_id
        self.worker = worker
        self.name = name
        self.submitted = time.time()
        self.ended: float | None = None
        self.status: str = RUNNING
        self._response_json: str | None = None
        self._events: deque[tuple[int, str, str]] = deque()
        """``(id, event type, data as JSON)``, ids consecutive."""
        self._next_id = 1
        self._bytes = 0
        """Bytes of the kept events."""
        self._appended = 0
        """Bytes of every event so far (kept or not)."""
        self._wake: anyio.Event | None = None
        self._submitter: int | None = None
        """Bytes the submitter's stream has taken so far, while it follows."""
        self._submitter_id = 0
        self._room: anyio.Event | None = None
        self.finished = anyio.Event()
        """Set once the job has its response."""

    @property
    def done(self) -> bool:
        """Whether the job has its terminal response."""
        return self.status != RUNNING

    @property
    def kept_bytes(self) -> int:
        """What the record holds in memory, roughly: its events and its response."""
        return self._bytes + len(self._response_json or "")

    @property
    def response(self) -> dict[str, Any] | None:
        """The response (None while the job runs)."""
        if self._response_json is None:
            return None
        value: dict[str, Any] = json.loads(self._response_json)
        return value

    def summary(self) -> dict[str, Any]:
        """``GET /v1/jobs/{job_id}``."""
        return {
            "job_id": self.job_id,
            "worker": self.worker,
            "name": self.name,
            "status": self.status,
            "response": self.response,
            "submitted": self.submitted,
            "duration": None if self.ended is None else self.ended - self.submitted,
        }

    def result_json(self) -> str:
        """The body of the ``response`` event and of a waiting ``POST /v1/jobs``, as JSON
        (the response is kept once, as text)."""
        head = to_json({"job_id": self.job_id, "worker": self.worker, "status": self.status})
        return f'{head[:-1]},"response":{self._response_json or "null"}}}'

    # ----------------------------------------------------------------- recording

    async def room(self) -> None:
        """Wait while the submitter's stream is a full log behind (at most ``PATIENCE``
        seconds, then go on without it)."""
        while self._submitter is not None and (
            self._next_id - 1 - self._submitter_id >= MAX_EVENTS - 1
            or self._appended - self._submitter > MAX_JOB_BYTES // 2
        ):
            self._room = room = anyio.Event()
            with anyio.move_on_after(PATIENCE):
                await room.wait()
            if not room.is_set():
                self._submitter = None  # it stopped reading: it will skip ahead

    def add(self, event_type: str, data: Any) -> None:
        """Record one of the job's events and wake its followers."""
        self._append(event_type, to_json(data))

    def finish(self, status: JobStatus, response: dict[str, Any]) -> None:
        """Record the terminal response (once; later calls are ignored)."""
        if self.done:
            return
        self.status = str(status)
        self._response_json = to_json(response)
        self.ended = time.time()
        self._append("response", "")
        self.finished.set()

    def _append(self, event_type: str, data: str) -> None:
        events = self._events
        events.append((self._next_id, event_type, data))
        self._next_id += 1
        self._bytes += len(data)
        self._appended += len(data)
        while len(events) > 1 and (len(events) > MAX_EVENTS or self._bytes > MAX_JOB_BYTES):
            self._bytes -= len(events.popleft()[2])
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.set()

    def forget_events(self) -> None:
        """Drop the kept events but the response (the job's outcome stays)."""
        while len(self._events) > 1:
            self._bytes -= len(self._events.popleft()[2])

    # ----------------------------------------------------------------- following

    def _after(self, after: int) -> list[Item]:
        """The events after id ``after``: a ``skipped`` notice first when some of them are
        no longer kept."""
        events = self._events
        if not events or events[-1][0] <= after:
            return []
        first = events[0][0]
        items: list[Item] = []
        if after < first - 1:
            items.append((None, "skipped", to_json({"skipped": first - 1 - after})))
            after = first - 1
        for index in range(after - first + 1, len(events)):
            event_id, event_type, data = events[index]
            items.append((event_id, event_type, data or self.result_json()))
        return items

    def attach_submitter(self) -> None:
        """The submitter follows the job from its start: hold the job back for it."""
        self._submitter = 0
        self._submitter_id = 0

    async def follow(
        self, after: int = 0, *, submitter: bool = False
    ) -> AsyncIterator[Item | None]:
        """Yield the events after id ``after``, then the live ones until the response;
        None after ``KEEPALIVE_SECONDS`` without any (time for a keepalive). An ``after``
        beyond the last event counts as the last: the response still comes."""
        after = min(after, self._next_id - 1)
        try:
            while True:
                batch = self._after(after)
                for item in batch:
                    yield item
                    if item[0] is not None:
                        after = item[0]
                        if submitter and self._submitter is not None:
                            self._submitter += len(item[2])
                            self._submitter_id = after
                            room, self._room = self._room, None
                            if room is not None:
                                room.set()
                if self.done and not self._after(after):
                    return
                if not batch:
                    if self._wake is None:
                        self._wake = anyio.Event()
                    wake = self._wake
                    with anyio.move_on_after(KEEPALIVE_SECONDS):
                        await wake.wait()
                    if not wake.is_set():
                        yield None
        finally:
            if submitter:
                self._submitter = None
                room, self._room = self._room, None
                if room is not None:
                    room.set()


class JobTracker:
    """The jobs submitted over HTTP, running and recently finished."""

    def __init__(self, history: int) -> None:
        self.history = history
        self._running: dict[str, JobRecord] = {}
        self._finished: OrderedDict[str, JobRecord] = OrderedDict()
        self._finished_bytes = 0

    def get(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, running or among the kept finished ones."""
        return self._running.get(job_id) or self._finished.get(job_id)

    def running(self) -> list[JobRecord]:
        """The jobs still running."""
        return list(self._running.values())

    def start(self, record: JobRecord) -> None:
        """Track a job that has just been sent."""
        self._running[record.job_id] = record

    def finished(self, record: JobRecord) -> None:
        """Move a job that has its response to the bounded history: the last ``history``
        jobs, within ``HISTORY_BYTES`` (finished jobs first lose their events, then the
        oldest are forgotten)."""
        self._running.pop(record.job_id, None)
        self._finished[record.job_id] = record
        self._finished_bytes += record.kept_bytes
        while len(self._finished) > self.history:
            _, old = self._finished.popitem(last=False)
            self._finished_bytes -= old.kept_bytes
        if self._finished_bytes > HISTORY_BYTES:
            for old in self._finished.values():
                self._finished_bytes -= old.kept_bytes
                old.forget_events()
                self._finished_bytes += old.kept_bytes
                if self._finished_bytes <= HISTORY_BYTES // 2:
                    break
        while self._finished_bytes > HISTORY_BYTES and len(self._finished) > 1:
            _, old = self._finished.popitem(last=False)
            self._finished_bytes -= old.kept_bytes
