"""The workers the MCP tests serve, as a plugin module (``framework -p mcp_workers ...``, with
this folder on ``PYTHONPATH``): the worker ``tools`` has jobs of every kind, and prints on
stdout now and then, which must never reach an MCP client over stdio."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
from pydantic import BaseModel

from framework import BaseWorker, Job, JobFailed, hookimpl, job
from framework.registrars import WorkerRegistrar


class ReverseIn(BaseModel):
    text: str
    times: int = 1


class ReverseOut(BaseModel):
    text: str


class Tools(BaseWorker):
    """Jobs of every kind for the MCP tests."""

    worker_name = "tools"

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.cancelled = 0

    async def on_ready(self) -> None:
        print("tools: ready (this line goes to stdout)", flush=True)

    @job(name="reverse")
    async def reverse(self, job: Job, data: ReverseIn) -> ReverseOut:
        """Reverse a text, ``times`` times; sends one update per turn."""
        print("tools: reversing (stdout again)", flush=True)
        text = data.text
        for turn in range(data.times):
            await job.update({"turn": turn + 1, "of": data.times})
            text = text[::-1]
        return ReverseOut(text=text)

    @job(name="spell")
    async def spell(self, job: Job) -> AsyncIterator[str]:
        """Stream the letters of ``text``, upper-cased."""
        for letter in str(job.payload.get("text", "")).upper():
            yield letter

    @job(name="fail")
    async def fail(self, job: Job) -> dict[str, Any]:
        """Fail on purpose."""
        raise JobFailed("it failed on purpose")

    @job(name="crash")
    async def crash(self, job: Job) -> dict[str, Any]:
        """Raise an unexpected exception."""
        raise RuntimeError("it broke")

    @job(name="sleep")
    async def sleep(self, job: Job) -> dict[str, Any]:
        """Sleep ``seconds`` (default: until cancelled); counts the cancelled ones."""
        await job.update({"sleeping": True})
        try:
            await anyio.sleep(float(job.payload.get("seconds", 3600)))
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise
        return {"slept": True}

    @job(name="cancelled")
    async def cancelled_jobs(self, job: Job) -> dict[str, Any]:
        """How many sleep jobs were cancelled so far."""
        return {"cancelled": self.cancelled}

    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        """Answer with the payload and this process's id."""
        return {"echo": job.payload, "pid": os.getpid()}


class Quiet(BaseWorker):
    worker_name = "quiet"

    @job
    async def hush(self, job: Job) -> dict[str, Any]:
        return {"hushed": True}

    @job(name="nap")
    async def nap(self, job: Job) -> dict[str, Any]:
        return {"napped": True}


@hookimpl
def register_workers(register: WorkerRegistrar) -> None:
    register(Tools)
    register(Quiet)
