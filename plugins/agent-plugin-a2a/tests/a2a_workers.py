"""The workers the A2A tests send tasks to, as a plugin module: runner processes load it
with ``framework -p a2a_workers run ...`` (``PYTHONPATH`` set to this folder)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from pydantic import BaseModel, Field

from framework import BaseWorker, Job, JobFailed, hookimpl, job
from framework.registrars import WorkerRegistrar

CANCELLED: list[str] = []
"""The ``tag`` of every ``sleep`` job whose handler was cancelled."""


class ReverseIn(BaseModel):
    text: str


class ReverseOut(BaseModel):
    text: str


class RepeatIn(BaseModel):
    text: str
    times: int = Field(default=2, ge=0, le=10)


class Tools(BaseWorker):
    """Jobs of every kind: typed, streaming, failing, crashing, slow."""

    @job(name="reverse")
    async def reverse(self, job: Job, data: ReverseIn) -> ReverseOut:
        """Reverse a text."""
        return ReverseOut(text=data.text[::-1])

    @job(name="count")
    async def count(self, job: Job) -> AsyncIterator[Any]:
        """Send an update, then stream ``n`` items: "word i" strings and {"i": i} dicts."""
        n = int(job.payload.get("n", 3))
        await job.update({"counting": n})
        for i in range(n):
            yield f"word {i}" if i % 2 == 0 else {"i": i}

    @job(name="fail")
    async def fail(self, job: Job) -> dict[str, Any]:
        """Always fails."""
        raise JobFailed("it failed on purpose", {"code": 7})

    @job(name="crash")
    async def crash(self, job: Job) -> dict[str, Any]:
        """Always raises."""
        raise ZeroDivisionError("boom")

    @job(name="sleep")
    async def sleep(self, job: Job) -> dict[str, Any]:
        """Sleep until cancelled; a cancellation is recorded under the payload's tag."""
        await job.update({"sleeping": True})
        try:
            await anyio.sleep(3600)
        except anyio.get_cancelled_exc_class():
            CANCELLED.append(str(job.payload.get("tag")))
            raise
        return {}

    @job(name="cancelled")
    async def cancelled(self, job: Job) -> dict[str, Any]:
        """The tags of the sleep jobs that were cancelled."""
        return {"tags": list(CANCELLED)}

    @job(name="headers")
    async def headers(self, job: Job) -> dict[str, Any]:
        """The job's headers and payload."""
        return {"headers": dict(job.headers), "payload": job.payload}

    @job(name="repeat")
    async def repeat(self, job: Job, data: RepeatIn) -> dict[str, Any]:
        """Repeat a text (a schema with numbers in it)."""
        return {"text": data.text * data.times}


@hookimpl
def register_workers(register: WorkerRegistrar) -> None:
    register(Tools, name="tools")
