"""A runner serving the HTTP API in-process on a free port, and the workers the HTTP tests
send jobs to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from pydantic import BaseModel

from framework import BaseWorker, Job, JobFailed, WorkerRunner, job
from framework.http._service import HttpService, bind
from framework.http._settings import HttpConfig, HttpSettings, resolve


class ReverseIn(BaseModel):
    text: str


class ReverseOut(BaseModel):
    text: str


class Tools(BaseWorker):
    """Jobs of every kind: typed, failing, streaming, slow."""

    @job(name="reverse")
    async def reverse(self, job: Job, data: ReverseIn) -> ReverseOut:
        """Reverse a text."""
        return ReverseOut(text=data.text[::-1])

    @job(name="fail")
    async def fail(self, job: Job) -> dict[str, Any]:
        """Always fails."""
        raise JobFailed("it failed on purpose")

    @job(name="count")
    async def count(self, job: Job) -> AsyncIterator[int]:
        """Send an update, then stream ``n`` numbers."""
        n = int(job.payload.get("n", 3))
        await job.update({"counting": n})
        for i in range(n):
            yield i

    @job(name="sleep")
    async def sleep(self, job: Job) -> dict[str, Any]:
        """Sleep ``seconds`` (default: until cancelled)."""
        await job.update({"sleeping": True})
        await anyio.sleep(float(job.payload.get("seconds", 3600)))
        return {"slept": True}

    @job(name="headers")
    async def headers(self, job: Job) -> dict[str, Any]:
        """Answer with the job's headers."""
        return {"headers": dict(job.headers)}

    @job
    async def default(self, job: Job) -> dict[str, Any]:
        return {"echo": job.payload}


@dataclass
class Served:
    runner: WorkerRunner
    service: HttpService
    settings: HttpSettings

    @property
    def url(self) -> str:
        return self.settings.url

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10, **kwargs)


@asynccontextmanager
async def serving(
    *workers: BaseWorker, plugins: list[object] = (), **http: Any
) -> AsyncIterator[Served]:
    """A runner with ``workers`` (a ``Tools`` named "tools" by default) serving HTTP."""
    settings = resolve(HttpConfig(**http), "127.0.0.1:0")
    sock, settings = bind(settings)
    service = HttpService(settings, sock, lambda: [{"name": "test-plugin"}])
    runner = WorkerRunner("http-test", plugins=list(plugins))
    for worker in workers or (Tools("tools"),):
        await runner.add_worker(worker)
    runner.add_plugin(service, name="http")
    async with runner:
        with anyio.fail_after(10):
            await service.serving.wait()
        yield Served(runner, service, settings)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, Any, str | None]]:
    """The SSE messages of a streamed response: ``(event, data as JSON, id)``."""
    import json

    from framework.http._sse import parse

    lines: list[str] = []
    async for line in response.aiter_lines():
        lines.append(line)
        if line == "":
            for event, data, event_id in parse(lines):
                yield event, json.loads(data), event_id
            lines = []
