"""The jobs submitted over HTTP: their events, kept so that a client can follow a job
later or resume a broken stream with ``Last-Event-ID``, and their outcome.

Each job keeps its last ``MAX_EVENTS`` events (ids count from 1 per job, then the
``response`` event); a follower that falls further behind skips ahead. The last
``history`` finished jobs are kept; older ones are forgotten.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import anyio

from framework.http._sse import KEEPALIVE_SECONDS
from framework.types import JobStatus

MAX_EVENTS = 4096
"""Events one job keeps for followers and resumption."""

RUNNING = "running"


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
        self.response: dict[str, Any] | None = None
        self._events: list[tuple[int, str, str]] = []
        """``(id, event type, data as JSON)``, ids consecutive."""
        self._next_id = 1
        self._wake: anyio.Event | None = None
        self.finished = anyio.Event()
        """Set once the job has its response."""

    @property
    def done(self) -> bool:
        """Whether the job has its terminal response."""
        return self.status != RUNNING

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

    def result(self) -> dict[str, Any]:
        """The body of the ``response`` event and of a waiting ``POST /v1/jobs``."""
        return {
            "job_id": self.job_id,
            "worker": self.worker,
            "status": self.status,
            "response": self.response,
        }

    def add(self, event_type: str, data: Any) -> None:
        """Record one of the job's events and wake its followers."""
        self._append(event_type, to_json(data))

    def finish(self, status: JobStatus, response: dict[str, Any]) -> None:
        """Record the terminal response (once; later calls are ignored)."""
        if self.done:
            return
        self.status = str(status)
        self.response = response
        self.ended = time.time()
        self._append("response", to_json(self.result()))
        self.finished.set()

    def _append(self, event_type: str, data: str) -> None:
        self._events.append((self._next_id, event_type, data))
        self._next_id += 1
        if len(self._events) > MAX_EVENTS:
            del self._events[: len(self._events) - MAX_EVENTS]
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.set()

    def forget_events(self) -> None:
        """Drop the kept events (the job's outcome stays)."""
        self._events = self._events[-1:] if self.done else []

    def events_after(self, after: int) -> list[tuple[int, str, str]]:
        """The kept events whose id is greater than ``after``."""
        events = self._events
        if not events or events[-1][0] <= after:
            return []
        start = max(0, after - events[0][0] + 1)
        return events[start:]

    async def follow(self, after: int = 0) -> AsyncIterator[tuple[int, str, str] | None]:
        """Yield the events after id ``after``, then the live ones until the response;
        None after ``KEEPALIVE_SECONDS`` without any (time for a keepalive)."""
        while True:
            batch = self.events_after(after)
            for item in batch:
                yield item
                after = item[0]
            if self.done and not self.events_after(after):
                return
            if not batch:
                if self._wake is None:
                    self._wake = anyio.Event()
                wake = self._wake
                with anyio.move_on_after(KEEPALIVE_SECONDS):
                    await wake.wait()
                if not wake.is_set():
                    yield None


class JobTracker:
    """The jobs submitted over HTTP, running and recently finished."""

    EVENT_BUDGET = 200_000
    """Events kept in all by finished jobs; beyond it the oldest lose theirs."""

    def __init__(self, history: int) -> None:
        self.history = history
        self._running: dict[str, JobRecord] = {}
        self._finished: OrderedDict[str, JobRecord] = OrderedDict()
        self._finished_events = 0

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
        """Move a job that has its response to the bounded history."""
        self._running.pop(record.job_id, None)
        self._finished[record.job_id] = record
        self._finished_events += len(record.events_after(0))
        while len(self._finished) > self.history:
            _, old = self._finished.popitem(last=False)
            self._finished_events -= len(old.events_after(0))
        if self._finished_events > self.EVENT_BUDGET:
            for old in self._finished.values():
                self._finished_events -= len(old.events_after(0))
                old.forget_events()
                self._finished_events += len(old.events_after(0))
                if self._finished_events <= self.EVENT_BUDGET // 2:
                    break
