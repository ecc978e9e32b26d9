"""The requesting side under load and abuse: timeouts that cost no task per job, failure
paths that always yield to the event loop, and stream buffers that stay bounded.

Each test states the limit it checks (tasks, ticks, buffered events) and is bounded in time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from framework import BaseWorker, Job, JobStatus, WorkerRunner, job
from framework.bus.messages import JobResponseMessage

pytestmark = pytest.mark.anyio


class Echo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"ok": True}


class Sleeper(BaseWorker):
    @job
    async def sleep(self, job: Job) -> dict[str, Any]:
        await anyio.sleep(job.payload.get("seconds", 60))
        return {}


class Caller(BaseWorker):
    """Requests fire-and-forget jobs and records how each ended."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ended: dict[str, JobResponseMessage] = {}
        self.changed = anyio.Event()

    async def on_job_response(self, response: JobResponseMessage) -> None:
        self.ended[response.job_id] = response
        self.changed.set()
        self.changed = anyio.Event()

    async def wait_for(self, count: int) -> None:
        while len(self.ended) < count:
            await self.changed.wait()


# ----------------------------------------------------------------- timeouts


async def test_fire_and_forget_timeouts_leave_no_task_per_job() -> None:
    jobs = 10_000
    with anyio.fail_after(60):
        async with WorkerRunner() as runner:
            await runner.add_worker(Echo("echo"))
            caller = Caller("caller")
            await runner.add_worker(caller)
            baseline = len(asyncio.all_tasks())
            for _ in range(jobs):
                await caller.request_job("echo", timeout=3600)
            await caller.wait_for(jobs)
            assert {r.status for r in caller.ended.values()} == {JobStatus.COMPLETED}
            await anyio.sleep(0.05)  # let finished job tasks be collected
            assert len(asyncio.all_tasks()) <= baseline + 3
            requester = caller._require_requester()
            assert requester._deadlines == [] and requester._pending == {}


async def test_fire_and_forget_timeouts_still_fire_in_deadline_order() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Sleeper("sleepy"))
            caller = Caller("caller")
            await runner.add_worker(caller)
            late = await caller.request_job("sleepy", timeout=3600)
            early = await caller.request_job("sleepy", timeout=0.2)  # wakes the timer early
            done = await caller.request_job("sleepy", payload={"seconds": 0}, timeout=0.1)
            await caller.wait_for(2)
            assert caller.ended[done].status is JobStatus.COMPLETED
            assert caller.ended[early].status is JobStatus.CANCELLED
            assert "timed out after 0.2 s" in caller.ended[early].response["error"]
            assert late not in caller.ended
            assert await caller.cancel_job(late)
            await caller.wait_for(3)
            assert caller.ended[late].status is JobStatus.CANCELLED
