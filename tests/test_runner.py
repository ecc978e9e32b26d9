"""WorkerRunner: hosting workers, ending gracefully or at once, and never losing a requester."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import anyio
import pytest
from anyio.abc import TaskStatus

from framework import (
    BaseWorker,
    Job,
    JobError,
    JobStatus,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRunner,
    hookimpl,
    job,
)
from framework.bus import BusMessage, JobRequestMessage, LocalBus
from framework.bus.network import NetworkBus

pytestmark = pytest.mark.anyio


class Echo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"echo": job.payload}


class Sleeper(BaseWorker):
    """Sleeps ``payload["seconds"]`` (default: an hour)."""

    @job
    async def sleep(self, job: Job) -> dict[str, Any]:
        await anyio.sleep(job.payload.get("seconds", 3600))
        return {"slept": job.payload.get("seconds")}


async def _outcome(runner: WorkerRunner, worker: str, payload: dict[str, Any]) -> JobStatus:
    try:
        async with runner.job(worker, payload=payload) as ctx:
            pass
    except JobError as exc:
        return exc.status
    assert ctx.status is not None
    return ctx.status


async def test_duplicate_worker_name_is_a_value_error_before_and_after_start() -> None:
    with anyio.fail_after(5):
        runner = WorkerRunner("r")
        await runner.add_worker(Echo("a"))
        with pytest.raises(ValueError, match=r"'a'.*already"):
            await runner.add_worker(Echo("a"))
        async with runner:
            with pytest.raises(ValueError, match=r"'a'.*already"):
                await runner.add_worker(Echo("a"))
            with pytest.raises(ValueError, match="runner's own name"):
                await runner.add_worker(Echo("r"))
            parent = Echo("parent")
            await parent.add_worker(Echo("a"))
            with pytest.raises(ValueError, match=r"'a'.*already"):
                await runner.add_worker(parent)
            assert runner.registry.local_workers == ["a"]


async def test_a_runner_runs_once_and_refuses_workers_after_its_end() -> None:
    with anyio.fail_after(5):
        runner = WorkerRunner()
        with pytest.raises(RuntimeError, match="not running"):
            runner.job("x")
        async with runner:
            pass
        with pytest.raises(RuntimeError, match="has ended"):
            await runner.add_worker(Echo("late"))
        with pytest.raises(RuntimeError, match="new WorkerRunner"):
            async with runner:
                pass


async def test_graceful_end_lets_short_jobs_finish_and_cancels_the_rest() -> None:
    with anyio.fail_after(5):
        outcomes: dict[float, JobStatus] = {}
        async with WorkerRunner(grace_period=0.5) as runner:
            await runner.add_worker(Sleeper("sleeper"))

            async def ask(seconds: float) -> None:
                outcomes[seconds] = await _outcome(runner, "sleeper", {"seconds": seconds})

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, 0.2)
                tg.start_soon(ask, 60.0)
                await anyio.sleep(0.05)
                start = anyio.current_time()
                await runner.end()
                assert anyio.current_time() - start < 1.5
        assert outcomes == {0.2: JobStatus.COMPLETED, 60.0: JobStatus.CANCELLED}


async def test_cancel_stops_at_once_whatever_the_grace_period() -> None:
    with anyio.fail_after(5):
        outcomes: list[JobStatus] = []
        async with WorkerRunner(grace_period=60) as runner:
            await runner.add_worker(Sleeper("sleeper"))

            async def ask() -> None:
                outcomes.append(await _outcome(runner, "sleeper", {}))

            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(ask)
                await anyio.sleep(0.05)
                start = anyio.current_time()
                await runner.cancel()
                assert anyio.current_time() - start < 0.5
        assert outcomes == [JobStatus.CANCELLED] * 10


async def test_runner_ending_with_children_holding_jobs_ends_children_first() -> None:
    finished: list[str] = []

    class Tracked(Sleeper):
        async def on_finished(self) -> None:
            finished.append(self.name)

    class Parent(Tracked):
        @job(name="delegate")
        async def delegate(self, job: Job) -> dict[str, Any]:
            # A parent job waiting on a child's job: the child ends first, so this job
            # receives the child's outcome and answers before the parent itself ends.
            try:
                async with self.job(f"{self.name}-child", payload={}):
                    pass
            except JobError as exc:
                return {"child": str(exc.status)}
            return {"child": "completed"}

    with anyio.fail_after(10):
        outcomes: dict[str, Any] = {}
        runner = WorkerRunner(grace_period=0.3)
        for i in range(3):
            parent = Parent(f"p{i}")
            await parent.add_worker(Tracked(f"p{i}-child"))
            await runner.add_worker(parent)
        async with runner:

            async def ask(worker: str, name: str | None) -> None:
                try:
                    async with runner.job(worker, name=name, payload={}) as ctx:
                        pass
                    outcomes[f"{worker}/{name}"] = ctx.response
                except JobError as exc:
                    outcomes[f"{worker}/{name}"] = exc.status

            async with anyio.create_task_group() as tg:
                for i in range(3):
                    tg.start_soon(ask, f"p{i}", "delegate")
                    tg.start_soon(ask, f"p{i}", None)
                    tg.start_soon(ask, f"p{i}-child", None)
                await anyio.sleep(0.1)
                await runner.end()
        assert len(outcomes) == 9
        for i in range(3):
            assert outcomes[f"p{i}/delegate"] == {"child": "cancelled"}
            assert outcomes[f"p{i}/None"] is JobStatus.CANCELLED
            assert outcomes[f"p{i}-child/None"] is JobStatus.CANCELLED
            assert finished.index(f"p{i}-child") < finished.index(f"p{i}")
        assert runner.registry.local_workers == []


async def test_exception_in_the_runner_block_propagates_unchanged_and_stops_jobs() -> None:
    class Boom(Exception):
        pass

    class Recording(Sleeper):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.cancelled = 0

        @job
        async def sleep(self, job: Job) -> dict[str, Any]:
            try:
                await anyio.sleep(3600)
            except anyio.get_cancelled_exc_class():
                self.cancelled += 1
                raise
            return {}

    error = Boom("in the block")
    worker = Recording("sleeper")
    with anyio.fail_after(5):
        with pytest.raises(Boom) as info:
            async with WorkerRunner(grace_period=60) as runner:
                await runner.add_worker(worker)
                await runner.request_job("sleeper")
                await anyio.sleep(0.05)
                raise error
        assert info.value is error
        assert worker.cancelled == 1
        assert not worker.ready


async def test_exception_in_the_runner_block_answers_background_requesters() -> None:
    class Boom(Exception):
        pass

    outcomes: list[JobStatus] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as outer:
            runner_ready = anyio.Event()
            holder: list[WorkerRunner] = []

            async def run_runner() -> None:
                with pytest.raises(Boom):
                    async with WorkerRunner(grace_period=60) as runner:
                        await runner.add_worker(Sleeper("sleeper"))
                        holder.append(runner)
                        runner_ready.set()
                        await anyio.sleep(0.2)
                        raise Boom()

            outer.start_soon(run_runner)
            await runner_ready.wait()
            outcomes.append(await _outcome(holder[0], "sleeper", {}))
        assert outcomes == [JobStatus.CANCELLED]


async def test_run_blocks_until_end_is_called() -> None:
    with anyio.fail_after(5):
        runner = WorkerRunner()
        await runner.add_worker(Echo("echo"))
        finished = anyio.Event()

        async def run() -> None:
            await runner.run()
            finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await runner.registry.wait_ready("echo")
            async with runner.job("echo", payload={"a": 1}) as ctx:
                pass
            assert ctx.response == {"echo": {"a": 1}}
            await anyio.sleep(0.05)
            assert not finished.is_set()
            await runner.end()
            await finished.wait()


def test_sigterm_ends_run_gracefully(tmp_path: Any) -> None:
    script = tmp_path / "serve.py"
    script.write_text(
        textwrap.dedent(
            """
            import anyio
            from framework import BaseWorker, WorkerRunner, job

            class Slow(BaseWorker):
                async def on_ready(self):
                    print("ready", flush=True)

                async def on_finished(self):
                    print("finished", flush=True)

            async def main():
                runner = WorkerRunner(grace_period=1)
                await runner.add_worker(Slow("slow"))
                await runner.run()
                print("ended", flush=True)

            anyio.run(main)
            """
        )
    )
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.split() == ["finished", "ended"]


async def test_a_thousand_idle_workers_start_and_end() -> None:
    with anyio.fail_after(20):
        runner = WorkerRunner()
        for i in range(1000):
            await runner.add_worker(Echo(f"w{i}"))
        async with runner:
            assert len(runner.registry.local_workers) == 1000
            async with runner.job("w999", payload={"n": 1}) as ctx:
                pass
            assert ctx.response == {"echo": {"n": 1}}
        assert runner.registry.local_workers == []
        assert runner.workers == {}


class _StuckOnActivation(BaseWorker):
    async def on_activated(self, args: Any) -> None:
        await anyio.sleep(3600)  # an external call that never returns


async def test_cancel_returns_while_a_worker_is_stuck_in_a_callback() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner(grace_period=0.2) as runner:
            stuck = _StuckOnActivation("front", active=False)
            boss = Echo("boss")
            await runner.add_worker(stuck)
            await runner.add_worker(boss)
            await boss.activate_worker("front")
            await anyio.sleep(0.1)
            await runner.cancel("stop now")
        assert not stuck.ready


async def test_end_turns_into_cancel_when_a_worker_overruns_its_grace_period() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner(grace_period=0.2) as runner:
            stuck = _StuckOnActivation("front", active=False)
            boss = Echo("boss")
            await runner.add_worker(stuck)
            await runner.add_worker(boss)
            await boss.activate_worker("front")
            await anyio.sleep(0.1)
            start = anyio.current_time()
            await runner.end()
            assert 1.0 <= anyio.current_time() - start < 2.5  # grace + 1 s, then cancelled


async def test_cancel_during_start_up_stops_a_worker_stuck_in_on_ready() -> None:
    class SlowStart(Echo):
        async def on_ready(self) -> None:
            await anyio.sleep(3600)

    with anyio.fail_after(5):
        runner = WorkerRunner()
        await runner.add_worker(Echo("first"))
        await runner.add_worker(SlowStart("db"))
        await runner.add_worker(Echo("never-started"))

        async def cancel_soon() -> None:
            await anyio.sleep(0.2)
            assert runner.registry.local_workers == ["first"]
            await runner.cancel("start-up takes too long")

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_soon)
            async with runner:
                pass
        assert runner.workers == {}


async def test_a_worker_may_cancel_the_runner_from_its_on_ready() -> None:
    class Abort(BaseWorker):
        async def on_ready(self) -> None:
            await self.runner.cancel("configuration missing")

    with anyio.fail_after(5):
        runner = WorkerRunner()
        await runner.add_worker(Abort("abort"))
        async with runner:
            pass
        assert runner.workers == {}


async def test_a_worker_added_while_the_runner_starts_is_started() -> None:
    class Setup(BaseWorker):
        async def on_ready(self) -> None:
            await self.runner.add_worker(Echo("echo"))

    with anyio.fail_after(5):
        runner = WorkerRunner()
        await runner.add_worker(Setup("setup"))
        async with runner:
            async with runner.job("echo", payload={"x": 1}, timeout=1) as ctx:
                pass
            assert ctx.response == {"echo": {"x": 1}}


class _FarAwayBus(LocalBus):
    """Stands for a network bus whose remote side never answers: messages to addresses
    not in this process vanish (as into a runner that died)."""

    async def send(self, message: BusMessage) -> None:
        if message.target in self:
            self.send_nowait(message)


class _RecordingPlugin:
    def __init__(self) -> None:
        self.ready: list[WorkerReadyData] = []
        self.failed: list[WorkerErrorData] = []

    @hookimpl
    def on_worker_ready(self, data: WorkerReadyData, runner: WorkerRunner) -> None:
        self.ready.append(data)

    @hookimpl
    def on_worker_failed(self, error: WorkerErrorData, runner: WorkerRunner) -> None:
        self.failed.append(error)


@pytest.mark.anyio
async def test_remote_workers_reported_by_a_network_bus_fire_the_hooks_and_end_jobs() -> None:
    """What a network bus reports through ``remote_worker_ready`` / ``remote_worker_gone``:
    the hooks fire, waiting requests go out, and jobs open to a lost worker end ERROR."""
    plugin = _RecordingPlugin()
    with anyio.fail_after(5):
        async with WorkerRunner("here", bus=_FarAwayBus(), plugins=[plugin]) as runner:
            remote = WorkerReadyData(worker_name="far", runner="there")
            await runner.remote_worker_ready(remote)
            await runner.remote_worker_ready(remote)  # heard twice: one hook call
            assert runner.registry.remote_workers == ["far"]
            assert plugin.ready == [remote]
            # Nothing answers, so the request waits at "far" until its runner is reported
            # lost; the job then ends ERROR with that reason, its outcome unknown (it was
            # sent: it may or may not have run).
            async with anyio.create_task_group() as tg:

                async def lose() -> None:
                    await anyio.sleep(0.05)
                    await runner.remote_worker_gone("far", "runner there lost", failed=True)

                tg.start_soon(lose)
                with pytest.raises(JobError) as caught:
                    async with runner.job("far"):
                        pass
            assert caught.value.status is JobStatus.ERROR
            assert caught.value.response == {
                "error": "runner there lost: the job may or may not have run",
                "outcome": "unknown",
            }
            assert "far" not in runner.registry
            assert plugin.failed == [WorkerErrorData(worker_name="far", error="runner there lost")]
            # A worker that ends normally leaves without on_worker_failed.
            await runner.remote_worker_ready(WorkerReadyData(worker_name="b", runner="there"))
            await runner.remote_worker_gone("b", "worker 'b' ended", failed=False)
            assert "b" not in runner.registry and len(plugin.failed) == 1


@pytest.mark.anyio
async def test_a_job_request_to_the_runner_itself_is_ignored_and_it_keeps_serving() -> None:
    """The runner's address takes replies only: a request sent to it (by a confused or
    hostile peer on a network bus) is ignored, and its own jobs go on."""
    with anyio.fail_after(5):
        async with WorkerRunner("here", bus=_FarAwayBus()) as runner:
            await runner.add_worker(Sleeper("sleeper"))
            await runner.add_worker(Echo("echo"))
            async with runner.job("sleeper", payload={"seconds": 0.2}) as slow:
                # Reusing the id of a job the runner has open, as a forged message could.
                stray = JobRequestMessage.build(source="x", target="here", job_id=slow.job_id)
                await runner.bus.send(stray)
            assert slow.status is JobStatus.COMPLETED
            async with runner.job("echo", payload={"n": 2}) as second:
                pass
            assert second.response == {"echo": {"n": 2}}


class _AttachedBus(LocalBus):
    """An in-process bus that has what ``NetworkBus`` asks for, and records the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def attach(self, runner: WorkerRunner) -> None:
        self.calls.append(f"attach {runner.name}")

    async def start(self) -> None:
        self.calls.append("start")
        await super().start()

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        self.calls.append("serve")
        task_status.started()
        await anyio.sleep_forever()


async def test_a_network_bus_is_attached_before_start_and_served_after_it() -> None:
    assert isinstance(_AttachedBus(), NetworkBus)
    assert not isinstance(LocalBus(), NetworkBus)
    bus = _AttachedBus()
    with anyio.fail_after(5):
        async with WorkerRunner("net", bus=bus) as runner:
            await runner.add_worker(Echo("echo"))
            assert bus.calls == ["attach net", "start", "serve"]
            async with runner.job("echo", payload={"x": 1}) as ctx:
                pass
            assert ctx.response == {"echo": {"x": 1}}
    assert bus.calls == ["attach net", "start", "serve"]  # serve was cancelled, not rerun
