"""Requesting jobs: contexts, events, groups, timeouts, cancellation, fire-and-forget.

Every test checks the invariant from the requester's side: each request ends in exactly
one terminal outcome, within a bounded time.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from framework import (
    BaseWorker,
    Job,
    JobError,
    JobEvent,
    JobFailed,
    JobGroupError,
    JobGroupEvent,
    JobStatus,
    WorkerRunner,
    job,
)
from framework.bus.messages import JobResponseMessage

pytestmark = pytest.mark.anyio


class Echo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"echo": job.payload, "name": job.name, "requester": job.requester}


class Steps(BaseWorker):
    """Sends progress updates, then answers; or fails or raises on request."""

    @job
    async def run(self, job: Job) -> dict[str, Any]:
        for step in range(3):
            await job.update({"step": step})
        mode = job.payload.get("mode")
        if mode == "fail":
            raise JobFailed("bad input", {"field": "x"})
        if mode == "raise":
            raise ValueError("boom")
        return {"steps": 3}


class Sleeper(BaseWorker):
    """Sleeps ``payload["seconds"]`` and records whether it was cancelled."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.cancelled: list[str] = []
        self.started = anyio.Event()

    @job
    async def sleep(self, job: Job) -> dict[str, Any]:
        self.started.set()
        try:
            await anyio.sleep(job.payload.get("seconds", 3600))
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(job.job_id)
            raise
        return {"slept": True}


async def test_job_round_trip_returns_response_and_status() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner("r") as runner:
            await runner.add_worker(Echo("echo"))
            async with runner.job("echo", payload={"text": "hi"}) as ctx:
                assert ctx.status is None
            assert ctx.status is JobStatus.COMPLETED
            assert ctx.status == "completed"
            assert ctx.response == {"echo": {"text": "hi"}, "name": None, "requester": "r"}
            assert isinstance(ctx.job_id, str) and ctx.job_id


async def test_updates_arrive_in_order_before_the_response() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Steps("steps"))
            async with runner.job("steps") as ctx:
                events = [event async for event in ctx]
            assert events == [JobEvent(JobEvent.UPDATE, {"step": i}) for i in range(3)]
            assert ctx.response == {"steps": 3}


async def test_handler_raising_after_updates_ends_error_with_updates_delivered() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Steps("steps"))
            received = []
            with pytest.raises(JobError) as info:
                async with runner.job("steps", payload={"mode": "raise"}) as ctx:
                    async for event in ctx:
                        received.append(event.data)
            assert received == [{"step": 0}, {"step": 1}, {"step": 2}]
            assert info.value.status is JobStatus.ERROR
            assert info.value.response == {"error": "ValueError: boom"}
            assert "steps" in str(info.value) and "error" in str(info.value)
            assert ctx.status is JobStatus.ERROR


async def test_job_failed_gives_failed_status_with_data() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Steps("steps"))
            with pytest.raises(JobError) as info:
                async with runner.job("steps", payload={"mode": "fail"}):
                    pass
            assert info.value.status is JobStatus.FAILED
            assert info.value.response == {"field": "x", "error": "bad input"}


async def test_streaming_handler_frames_items_with_start_and_end() -> None:
    class Counter(BaseWorker):
        @job
        async def count(self, job: Job):  # type: ignore[no-untyped-def]
            for i in range(job.payload["n"]):
                yield {"i": i}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Counter("count"))
            async with runner.job("count", payload={"n": 500}) as ctx:
                events = [event async for event in ctx]
            assert events[0].type == JobEvent.STREAM_START
            assert events[-1].type == JobEvent.STREAM_END
            assert [e.data for e in events[1:-1]] == [{"i": i} for i in range(500)]
            assert ctx.response == {"chunks": 500}


async def test_named_jobs_go_to_their_handler_and_others_to_the_default() -> None:
    class Math(BaseWorker):
        @job(name="add")
        async def add(self, job: Job) -> dict[str, Any]:
            return {"sum": job.payload["a"] + job.payload["b"]}

        @job
        async def fallback(self, job: Job) -> dict[str, Any]:
            return {"fallback": job.name}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Math("math"))
            async with runner.job("math", name="add", payload={"a": 2, "b": 3}) as ctx:
                pass
            assert ctx.response == {"sum": 5}
            async with runner.job("math", name="mul") as ctx:
                pass
            assert ctx.response == {"fallback": "mul"}


async def test_no_matching_handler_fails_naming_job_and_worker() -> None:
    class OnlyNamed(BaseWorker):
        @job(name="known")
        async def known(self, job: Job) -> dict[str, Any]:
            return {}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(OnlyNamed("picky"))
            with pytest.raises(JobError) as info:
                async with runner.job("picky", name="unknown"):
                    pass
            assert info.value.status is JobStatus.FAILED
            assert "picky" in info.value.response["error"]
            assert "unknown" in info.value.response["error"]


async def test_pydantic_model_and_none_returns_become_dicts() -> None:
    class Answer(BaseModel):
        value: int

    class Models(BaseWorker):
        @job(name="model")
        async def model(self, job: Job) -> Answer:
            return Answer(value=7)

        @job(name="none")
        async def none(self, job: Job) -> None:
            return None

        @job(name="bad")
        async def bad(self, job: Job) -> Any:
            return [1, 2]

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Models("m"))
            async with runner.job("m", name="model") as ctx:
                pass
            assert ctx.response == {"value": 7}
            async with runner.job("m", name="none") as ctx:
                pass
            assert ctx.response == {}
            with pytest.raises(JobError) as info:
                async with runner.job("m", name="bad"):
                    pass
            assert info.value.status is JobStatus.ERROR
            assert "return a dict" in info.value.response["error"]


async def test_timeout_on_a_slow_job_raises_job_error_and_cancels_the_handler() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            sleeper = Sleeper("sleepy")
            await runner.add_worker(sleeper)
            start = anyio.current_time()
            with pytest.raises(JobError) as info:
                async with runner.job("sleepy", timeout=0.2):
                    pass
            elapsed = anyio.current_time() - start
            assert 0.2 <= elapsed < 1.0
            assert info.value.timed_out
            assert info.value.status is JobStatus.CANCELLED
            with anyio.fail_after(1):
                while not sleeper.cancelled:
                    await anyio.sleep(0.01)


async def test_timeout_covers_waiting_for_a_worker_that_never_appears() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            start = anyio.current_time()
            with pytest.raises(JobError) as info:
                async with runner.job("ghost", timeout=0.3):
                    pass
            assert 0.3 <= anyio.current_time() - start < 1.0
            assert info.value.timed_out
            assert "ghost" in str(info.value)


async def test_without_timeout_ending_the_runner_ends_a_request_to_a_missing_worker() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            outcome: list[BaseException] = []

            async def ask() -> None:
                try:
                    async with runner.job("ghost"):
                        pass
                except JobError as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await anyio.sleep(0.1)
                assert not outcome
                await runner.end()
            assert len(outcome) == 1
            assert isinstance(outcome[0], JobError)
            assert outcome[0].status is JobStatus.CANCELLED


async def test_a_job_waits_for_a_worker_added_later() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:

            async def add_later() -> None:
                await anyio.sleep(0.1)
                await runner.add_worker(Echo("late"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(add_later)
                async with runner.job("late", payload={"x": 1}, timeout=2) as ctx:
                    pass
            assert ctx.response is not None
            assert ctx.response["echo"] == {"x": 1}


async def test_exception_in_the_block_cancels_the_job_and_propagates_unchanged() -> None:
    class Boom(Exception):
        pass

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            sleeper = Sleeper("sleepy")
            await runner.add_worker(sleeper)
            error = Boom("mine")
            with pytest.raises(Boom) as info:
                async with runner.job("sleepy"):
                    await sleeper.started.wait()
                    raise error
            assert info.value is error
            with anyio.fail_after(1):
                while not sleeper.cancelled:
                    await anyio.sleep(0.01)
            assert sleeper.active_jobs == {}


async def test_handler_shielding_itself_still_lets_the_requester_finish_quickly() -> None:
    class Stubborn(BaseWorker):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.finished = 0

        @job
        async def hold(self, job: Job) -> dict[str, Any]:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(1.0)
            self.finished += 1
            return {"late": True}

    with anyio.fail_after(10):
        async with WorkerRunner(grace_period=0.1) as runner:
            worker = Stubborn("stubborn")
            await runner.add_worker(worker)

            # A timeout: the requester is answered on time, not when the shield lifts.
            start = anyio.current_time()
            with pytest.raises(JobError) as info:
                async with runner.job("stubborn", timeout=0.2):
                    pass
            assert anyio.current_time() - start < 0.6
            assert info.value.status is JobStatus.CANCELLED

            # The runner ending: after the grace period the requester gets CANCELLED at
            # once, although the handler holds on to its shield for a second.
            outcome: list[tuple[JobStatus, float]] = []

            async def ask() -> None:
                try:
                    async with runner.job("stubborn"):
                        pass
                except JobError as exc:
                    outcome.append((exc.status, anyio.current_time()))

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await anyio.sleep(0.05)
                ended_at = anyio.current_time()
                tg.start_soon(runner.end)
                with anyio.fail_after(0.8):
                    while not outcome:
                        await anyio.sleep(0.01)
            assert outcome[0][0] is JobStatus.CANCELLED
            assert outcome[0][1] - ended_at < 0.8
        assert worker.finished >= 1  # the handler really outlived its cancellation


async def test_cancel_job_by_id_ends_cancelled_for_the_requesting_worker() -> None:
    responses: list[JobResponseMessage] = []

    class Boss(BaseWorker):
        @job
        async def delegate(self, job: Job) -> dict[str, Any]:
            job_id = await self.request_job("sleepy")
            await anyio.sleep(0.05)
            assert await self.cancel_job(job_id, reason="changed my mind")
            while not responses:
                await anyio.sleep(0.01)
            return {"job_id": job_id}

        async def on_job_cancelled(self, response: JobResponseMessage) -> None:
            responses.append(response)

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            sleeper = Sleeper("sleepy")
            await runner.add_worker(sleeper)
            await runner.add_worker(Boss("boss"))
            async with runner.job("boss") as ctx:
                pass
            assert ctx.response is not None
            assert [r.job_id for r in responses] == [ctx.response["job_id"]]
            assert responses[0].status is JobStatus.CANCELLED
            assert responses[0].response["error"] == "changed my mind"
            assert sleeper.cancelled == [ctx.response["job_id"]]


async def test_fire_and_forget_results_reach_the_callbacks() -> None:
    seen: dict[str, Any] = {}
    done = None

    class Caller(BaseWorker):
        @job
        async def go(self, job: Job) -> dict[str, Any]:
            nonlocal done
            done = anyio.Event()
            seen["id"] = await self.request_job("steps", payload={})
            await done.wait()
            return {}

        async def on_job_update(self, update: Any) -> None:
            seen.setdefault("updates", []).append(update.data)

        async def on_job_response(self, response: JobResponseMessage) -> None:
            seen["response"] = response

        async def on_job_completed(self, result: JobResponseMessage) -> None:
            seen["completed"] = result.response
            assert done is not None
            done.set()

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Steps("steps"))
            await runner.add_worker(Caller("caller"))
            async with runner.job("caller"):
                pass
    assert seen["updates"] == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert seen["response"].job_id == seen["id"]
    assert seen["completed"] == {"steps": 3}


async def test_fire_and_forget_timeout_ends_cancelled() -> None:
    cancelled: list[JobResponseMessage] = []

    class Caller(BaseWorker):
        @job
        async def go(self, job: Job) -> dict[str, Any]:
            job_id = await self.request_job("sleepy", timeout=0.1)
            while not cancelled:
                await anyio.sleep(0.01)
            return {"job_id": job_id}

        async def on_job_cancelled(self, response: JobResponseMessage) -> None:
            cancelled.append(response)

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            sleeper = Sleeper("sleepy")
            await runner.add_worker(sleeper)
            await runner.add_worker(Caller("caller"))
            async with runner.job("caller") as ctx:
                pass
            assert ctx.response is not None
            assert cancelled[0].job_id == ctx.response["job_id"]
            assert "timed out" in cancelled[0].response["error"]
            with anyio.fail_after(1):
                while not sleeper.cancelled:
                    await anyio.sleep(0.01)


async def test_worker_to_worker_job_inside_a_handler() -> None:
    class Front(BaseWorker):
        @job
        async def ask(self, job: Job) -> dict[str, Any]:
            async with self.job("echo", payload={"from": self.name}) as inner:
                pass
            assert inner.response is not None
            return {"inner": inner.response}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Echo("echo"))
            await runner.add_worker(Front("front"))
            async with runner.job("front") as ctx:
                pass
            assert ctx.response == {
                "inner": {"echo": {"from": "front"}, "name": None, "requester": "front"}
            }


async def test_request_job_update_asks_a_running_job_for_an_update() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            sleeper = Sleeper("sleepy")
            await runner.add_worker(sleeper)
            async with runner.job("sleepy", payload={"seconds": 0.3}) as ctx:
                await sleeper.started.wait()
                await runner._require_requester().request_job_update(ctx.job_id, "sleepy")
                events = [event async for event in ctx]
            assert len(events) == 1
            assert events[0].data["status"] == "running"
            assert events[0].data["elapsed"] >= 0


async def test_a_thousand_concurrent_jobs_to_one_worker() -> None:
    class Slow(BaseWorker):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.concurrent = 0
            self.peak = 0

        @job
        async def work(self, job: Job) -> dict[str, Any]:
            self.concurrent += 1
            self.peak = max(self.peak, self.concurrent)
            await anyio.sleep(0.05)
            self.concurrent -= 1
            return {"n": job.payload["n"]}

    results: dict[int, dict[str, Any]] = {}
    with anyio.fail_after(20):
        async with WorkerRunner() as runner:
            worker = Slow("slow")
            await runner.add_worker(worker)

            async def one(n: int) -> None:
                async with runner.job("slow", payload={"n": n}) as ctx:
                    pass
                assert ctx.response is not None
                results[n] = ctx.response

            async with anyio.create_task_group() as tg:
                for n in range(1000):
                    tg.start_soon(one, n)
    assert results == {n: {"n": n} for n in range(1000)}
    assert worker.peak > 100  # they ran concurrently, one task each


class Member(BaseWorker):
    """A group member: fails when its name is in payload["fail"], else sleeps a little."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.cancelled = False

    @job
    async def work(self, job: Job) -> dict[str, Any]:
        if self.name in job.payload.get("fail", ()):
            await anyio.sleep(0.05)
            raise JobFailed(f"{self.name} refuses")
        try:
            await anyio.sleep(job.payload.get("seconds", 0))
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        await job.update({"member": self.name})
        return {"member": self.name}


async def test_job_group_collects_every_members_response_and_events() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            names = [f"m{i}" for i in range(5)]
            for name in names:
                await runner.add_worker(Member(name))
            async with runner.job_group(*names, payload={}) as group:
                events = [event async for event in group]
            assert group.statuses == dict.fromkeys(names, JobStatus.COMPLETED)
            assert group.responses == {n: {"member": n} for n in names}
            assert sorted(e.worker_name for e in events) == names
            assert all(isinstance(e, JobGroupEvent) and e.type == "update" for e in events)
            assert group.group_response.job_id == group.job_id


async def test_group_of_50_with_one_failure_cancels_the_other_49() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            members = [Member(f"m{i}") for i in range(50)]
            for member in members:
                await runner.add_worker(member)
            names = [m.name for m in members]
            with pytest.raises(JobGroupError) as info:
                async with runner.job_group(*names, payload={"fail": ["m7"], "seconds": 30}):
                    pass
            statuses = info.value.statuses
            assert statuses["m7"] is JobStatus.FAILED
            assert "m7 refuses" in str(info.value)
            others = [m for m in members if m.name != "m7"]
            assert all(statuses[m.name] is JobStatus.CANCELLED for m in others)
            with anyio.fail_after(1):
                while not all(m.cancelled for m in others):
                    await anyio.sleep(0.01)


async def test_group_of_50_with_one_failure_and_no_cancel_on_error() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            members = [Member(f"m{i}") for i in range(50)]
            for member in members:
                await runner.add_worker(member)
            names = [m.name for m in members]
            async with runner.job_group(
                *names, payload={"fail": ["m7"], "seconds": 0.1}, cancel_on_error=False
            ) as group:
                pass
            assert group.statuses["m7"] is JobStatus.FAILED
            completed = {n: s for n, s in group.statuses.items() if s is JobStatus.COMPLETED}
            assert len(completed) == 49
            assert len(group.responses) == 50
            assert not any(m.cancelled for m in members)


async def test_group_timeout_raises_and_cancels_unfinished_members() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            slow = Sleeper("slow")
            await runner.add_worker(Echo("fast"))
            await runner.add_worker(slow)
            start = anyio.current_time()
            with pytest.raises(JobGroupError) as info:
                async with runner.job_group("fast", "slow", timeout=0.3):
                    pass
            assert 0.3 <= anyio.current_time() - start < 1.0
            assert info.value.timed_out
            assert info.value.statuses == {
                "fast": JobStatus.COMPLETED,
                "slow": JobStatus.CANCELLED,
            }
            with anyio.fail_after(1):
                while not slow.cancelled:
                    await anyio.sleep(0.01)


async def test_group_rejects_a_worker_named_twice() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            with pytest.raises(ValueError, match="twice"):
                runner.job_group("a", "a")


async def test_a_worker_vanishing_without_answering_ends_its_jobs_error() -> None:
    # What a network bus does when a runner goes silent: its workers leave the registry.
    # Requesters waiting on them must get ERROR, not wait forever.
    with anyio.fail_after(5):
        async with WorkerRunner(grace_period=0.1) as runner:
            sleeper = Sleeper("sleepy")
            await runner.add_worker(sleeper)
            await runner.add_worker(Echo("echo"))
            failures: list[JobError] = []

            async def ask() -> None:
                try:
                    async with runner.job("sleepy"):
                        pass
                except JobError as exc:
                    failures.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                async with runner.job_group("sleepy", "echo", cancel_on_error=False) as group:
                    await sleeper.started.wait()
                    assert await runner.registry.unregister("sleepy", "runner far-away lost")
            assert failures[0].status is JobStatus.ERROR
            assert failures[0].response == {  # it was sent: it may have run
                "error": "runner far-away lost: the job may or may not have run",
                "outcome": "unknown",
            }
            assert group.statuses == {"sleepy": JobStatus.ERROR, "echo": JobStatus.COMPLETED}


async def test_cancelling_a_job_right_after_sending_it_cancels_it() -> None:
    # The cancel (a control message) overtakes the queued request in the worker's inbox;
    # the worker must remember it and refuse the request when it comes.
    with anyio.fail_after(5):
        async with WorkerRunner(grace_period=0.2) as runner:
            sleeper = Sleeper("slow")
            await runner.add_worker(sleeper)
            with pytest.raises(JobError) as info:
                async with runner.job("slow") as ctx:
                    assert await runner.cancel_job(ctx.job_id, reason="user pressed stop")
            assert info.value.status is JobStatus.CANCELLED
            assert info.value.response == {"error": "user pressed stop"}

            job_id = await runner.request_job("slow")
            assert await runner.cancel_job(job_id)
            await anyio.sleep(0.1)
            assert sleeper.active_jobs == {}
            assert not sleeper.started.is_set()


async def test_fire_and_forget_returns_at_once_even_for_a_missing_worker() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            job_id = await runner.request_job("not-yet")
            assert job_id
            await runner.add_worker(Echo("not-yet"))
            # It is sent once the worker is ready; cancelling a job not sent ends it here.
            other = await runner.request_job("never")
            assert await runner.cancel_job(other)
            assert not await runner.cancel_job(other)


@pytest.mark.parametrize("cancel_on_error", [True, False])
async def test_group_member_lost_while_the_group_waits_for_another(cancel_on_error: bool) -> None:
    with anyio.fail_after(5):
        async with WorkerRunner(grace_period=0.2) as runner:
            first = Echo("a")
            await runner.add_worker(first)

            async def later() -> None:
                await anyio.sleep(0.1)
                await first.end("a is done for today")
                await anyio.sleep(0.1)
                await runner.add_worker(Echo("b"))

            async with anyio.create_task_group() as tg:
                tg.start_soon(later)
                if cancel_on_error:
                    with pytest.raises(JobGroupError) as info:
                        async with runner.job_group("b", "a"):
                            pass
                    statuses = info.value.statuses
                    assert statuses == {"a": JobStatus.ERROR, "b": JobStatus.CANCELLED}
                else:
                    async with runner.job_group("b", "a", cancel_on_error=False) as group:
                        pass
                    assert group.statuses == {"a": JobStatus.ERROR, "b": JobStatus.COMPLETED}


async def test_a_plain_handler_can_stream_and_still_return_a_response() -> None:
    class Talker(BaseWorker):
        @job
        async def talk(self, job: Job) -> dict[str, Any]:
            for word in ("hello", " ", "world"):
                await job.stream(word)
            return {"text": "hello world", "usage": {"tokens": 3}}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Talker("talker"))
            async with runner.job("talker") as ctx:
                events = [(e.type, e.data) async for e in ctx]
            assert events == [
                (JobEvent.STREAM_START, {}),
                (JobEvent.STREAM_DATA, "hello"),
                (JobEvent.STREAM_DATA, " "),
                (JobEvent.STREAM_DATA, "world"),
                (JobEvent.STREAM_END, {}),
            ]
            assert ctx.response == {"text": "hello world", "usage": {"tokens": 3}}
