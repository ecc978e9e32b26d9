"""A plugin module for the dashboard's browser tests (loaded with ``-p dashboard_plugin``):
a worker whose jobs send updates and stream slowly enough to watch in a browser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
from pydantic import BaseModel, Field

from framework import BaseWorker, Job, JobFailed, hookimpl, job


class TellIn(BaseModel):
    topic: str
    words: int = Field(default=5, ge=0, le=5000)
    delay: float = Field(default=0.2, ge=0, le=5)


class Narrator(BaseWorker):
    """Tells stories word by word, and waits when asked to."""

    worker_name = "narrator"

    @job(name="tell")
    async def tell(self, job: Job, data: TellIn) -> AsyncIterator[str]:
        """Tell a story about a topic, one word at a time."""
        await job.update({"status": "thinking"})
        for i in range(data.words):
            if data.delay:
                await anyio.sleep(data.delay)
            if i % 2 == 0:
                await job.update({"done": i, "of": data.words})
            yield f"{data.topic}-{i} "

    @job(name="wait")
    async def wait(self, job: Job) -> dict[str, Any]:
        """Say it started, then wait ``seconds`` (default: an hour)."""
        await job.update({"started": True})
        await anyio.sleep(job.payload.get("seconds", 3600))
        return {"waited": True}

    @job(name="refuse")
    async def refuse(self, job: Job) -> dict[str, Any]:
        """Fail on purpose."""
        raise JobFailed("no story today", data={"mood": "grumpy"})


class Echo(BaseWorker):
    """Answers with its payload."""

    worker_name = "echo"

    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        """Send the payload back."""
        return {"echo": job.payload}


@hookimpl
def register_workers(register: Any) -> None:
    register(Narrator)
    register(Echo)
