"""The requesting side under load and abuse: timeouts that cost no task per job, failure
paths that always yield to the event loop, and stream buffers that stay bounded.

Each test states the limit it checks (tasks, ticks, buffered events) and is bounded in time.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from framework import (
    BaseWorker,
    Job,
    JobError,
    JobGroupError,
    JobStatus,
    WorkerReadyData,
    WorkerRunner,
    job,
)
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


# ----------------------------------------------------------------- failures yield


async def _ghost_job(runner: WorkerRunner) -> None:
    async with runner.job("ghost"):
        pass


async def _ghost_group(runner: WorkerRunner) -> None:
    async with runner.job_group("ghost", "ghost2"):
        pass


async def _ghost_group_without_cancel_on_error(runner: WorkerRunner) -> None:
    async with runner.job_group("ghost", "ghost2", cancel_on_error=False) as group:
        pass
    assert group.statuses == {"ghost": JobStatus.ERROR, "ghost2": JobStatus.ERROR}


async def _block_raises(runner: WorkerRunner) -> None:
    async with runner.job("echo"):
        raise LookupError("the block gave up at once")


async def _refused_payload(runner: WorkerRunner) -> None:
    async with runner.job("echo", payload={"x": object()}):
        pass


async def _fire_and_forget_to_ghost(runner: WorkerRunner) -> None:
    await runner.request_job("ghost")


async def _fire_and_forget_refused_payload(runner: WorkerRunner) -> None:
    await runner.request_job("echo", payload={"x": object()})


@pytest.mark.parametrize(
    "attempt",
    [
        _ghost_job,
        _ghost_group,
        _ghost_group_without_cancel_on_error,
        _block_raises,
        _refused_payload,
        _fire_and_forget_to_ghost,
        _fire_and_forget_refused_payload,
    ],
)
async def test_a_retry_loop_of_failing_jobs_lets_other_tasks_run(attempt: Any) -> None:
    """A worker the registry knows but no bus hosts (or a job that fails at once) must not
    turn a retry loop into a busy loop that starves the event loop."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    with anyio.fail_after(20):
        async with WorkerRunner() as runner:
            await runner.add_worker(Echo("echo"))
            for ghost in ("ghost", "ghost2"):
                await runner.registry.register(
                    WorkerReadyData(worker_name=ghost, runner=runner.name)
                )
            async with anyio.create_task_group() as tg:
                tg.start_soon(tick)
                end = anyio.current_time() + 0.5
                while anyio.current_time() < end:
                    try:
                        await attempt(runner)
                    except (JobError, JobGroupError, LookupError, TypeError):
                        continue
                tg.cancel_scope.cancel()
            for ghost in ("ghost", "ghost2"):
                await runner.registry.unregister(ghost, "test over")
    assert ticks >= 20
