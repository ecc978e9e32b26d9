"""Ending is bounded: ``end()`` returns within the grace period plus a fixed margin even
when a handler will not stop, and names that handler."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from framework import BaseWorker, Job, JobError, JobStatus, WorkerRunner, job
from framework.worker import STOP_MARGIN

pytestmark = pytest.mark.anyio


class Stubborn(BaseWorker):
    """Catches its cancellation and goes on, until ``release`` is set."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.stopped = anyio.Event()

    @job
    async def refuse_to_stop(self, job: Job) -> dict[str, Any]:
        self.started.set()
        try:
            while not self.release.is_set():
                try:
                    await anyio.sleep(0.02)
                except anyio.get_cancelled_exc_class():
                    continue  # the bug this test is about
            return {}
        finally:
            self.stopped.set()


async def test_end_returns_within_grace_plus_margin_and_names_the_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    grace = 0.2
    worker = Stubborn("stubborn")
    outcome: list[JobError] = []

    async def ask(runner: WorkerRunner) -> None:
        try:
            async with runner.job("stubborn"):
                pass
        except JobError as exc:
            outcome.append(exc)

    with anyio.fail_after(15), caplog.at_level(logging.ERROR, logger="framework.worker"):
        runner = WorkerRunner(grace_period=grace)
        await runner.add_worker(worker)
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)
            tg.start_soon(ask, runner)
            await worker.started.wait()
            began = anyio.current_time()
            await runner.end()
            took = anyio.current_time() - began
        # The handler is still going: let it finish so the event loop can close.
        worker.release.set()
        with anyio.fail_after(5):
            await worker.stopped.wait()
    # Grace, the runner's one-second watchdog, the stop margin, and slack for a busy machine.
    assert took < grace + 1.0 + STOP_MARGIN + 1.0, took
    assert outcome and outcome[0].status is JobStatus.CANCELLED
    assert "the handler refuse_to_stop() of job" in caplog.text
    assert "would not stop" in caplog.text


async def test_a_shielded_handler_still_finishes_its_shielded_part() -> None:
    done: list[str] = []

    class Careful(BaseWorker):
        @job
        async def save(self, job: Job) -> dict[str, Any]:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.2)
                done.append("saved")
            return {}

    with anyio.fail_after(10):
        async with WorkerRunner(grace_period=0.05) as runner:
            await runner.add_worker(Careful("careful"))
            with pytest.raises(JobError) as info:
                async with runner.job("careful", timeout=0.05):
                    pass
            assert info.value.status is JobStatus.CANCELLED
        # The runner waited (within its margin) for the shielded part to finish.
    assert done == ["saved"]
