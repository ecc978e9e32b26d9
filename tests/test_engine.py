"""The serving engine and the runtime seam: behaviour a refactor must keep (found by review)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from framework import (
    BaseWorker,
    Job,
    JobStatus,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRunner,
    job,
)
from framework.bus.local import LocalBus
from framework.bus.messages import (
    BusMessage,
    CancelMessage,
    DeactivateMessage,
    EndMessage,
    JobCancelMessage,
    JobRequestMessage,
    JobResponseMessage,
    JobUpdateRequestMessage,
)

pytestmark = pytest.mark.anyio


class Plain(BaseWorker):
    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        return {}


class Records(BaseWorker):
    """Answers every job at once, keeping the ids of the jobs it ran."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.ran: list[str] = []

    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        self.ran.append(job.job_id)
        return {}


def send_request(bus: LocalBus, source: str, target: str, job_id: str) -> None:
    """A job request put on ``bus`` with no checkpoint: for tests of delivery order."""
    bus.send_nowait(JobRequestMessage.build(source=source, target=target, job_id=job_id))


async def test_a_parent_ends_without_waiting_for_a_stranger_that_took_a_childs_name() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner(grace_period=2) as runner:
            parent, child = Plain("p"), Plain("c")
            await runner.add_worker(parent)
            await parent.add_worker(child)
            await child.end()
            while "c" in runner.workers:
                await anyio.sleep(0.01)
            await runner.add_worker(Plain("c"))  # an unrelated root worker, the same name
            await parent.end()
            with anyio.fail_after(1):
                while "p" in runner.workers:
                    await anyio.sleep(0.01)
            assert "c" in runner.workers  # the stranger is untouched


async def test_watch_worker_before_the_worker_starts_takes_effect_when_it_starts() -> None:
    seen: list[tuple[str, str]] = []

    class Watcher(BaseWorker):
        async def on_worker_ready(self, data: WorkerReadyData) -> None:
            seen.append(("ready", data.worker_name))

        async def on_worker_error(self, data: WorkerErrorData) -> None:
            seen.append(("error", data.worker_name))

    class Broken(BaseWorker):
        async def on_ready(self) -> None:
            raise RuntimeError("broken on purpose")

    with pytest.raises(RuntimeError, match="add_worker"):
        await Watcher("lonely").watch_worker("x")  # on no runner: says how to add it
    with anyio.fail_after(10):
        runner = WorkerRunner()
        watcher = Watcher("w")
        await runner.add_worker(watcher)
        await watcher.watch_worker("b")
        await watcher.watch_worker("bad")
        async with runner:
            await runner.add_worker(Plain("b"))
            await runner.add_worker(Broken("bad"))
            while len(seen) < 2:
                await anyio.sleep(0.01)
    assert sorted(seen) == [("error", "bad"), ("ready", "b")]


async def test_stream_chunks_go_through_an_overridden_send_of_a_local_bus_subclass() -> None:
    class CountingBus(LocalBus):
        def __init__(self) -> None:
            super().__init__()
            self.seen: Counter[str] = Counter()

        async def send(self, message: BusMessage) -> None:
            self.seen[message.type] += 1
            await super().send(message)

    class Streams(BaseWorker):
        @job
        async def handle(self, job: Job) -> Any:
            for i in range(3):
                yield i

    bus = CountingBus()
    with anyio.fail_after(10):
        async with WorkerRunner(bus=bus) as runner:
            await runner.add_worker(Streams("s"))
            async with runner.job("s"):
                pass
    assert bus.seen["job_stream_data"] == 3


async def test_a_stream_chunk_never_overtakes_a_reply_queued_before_it() -> None:
    # Chunks to a requester in this process skip the bus message while its inbox is empty.
    # Here the requester's inbox holds a message its loop has not taken yet (a worker's inbox
    # takes its job requests too), so the update sent next queues behind it: every chunk
    # after that update must queue behind the update as well.
    bus = LocalBus()

    class Streams(BaseWorker):
        @job
        async def handle(self, job: Job) -> Any:
            yield 0
            # Not a reply: the requester's inbox loop must take it before anything after it.
            bus.send_nowait(JobUpdateRequestMessage.build(source="s", target="r", job_id="x"))
            await job.update({"step": 1})
            yield 1
            await job.update({"step": 2})
            yield 2

    class Reads(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            async with self.job("s") as stream:
                seen = [[event.type, event.data] async for event in stream]
            return {"seen": seen}

    with anyio.fail_after(10):
        async with WorkerRunner(bus=bus) as runner:
            await runner.add_worker(Streams("s"))
            await runner.add_worker(Reads("r"))
            async with runner.job("r") as reader:
                pass
    assert reader.response == {
        "seen": [
            ["stream_start", {}],
            ["stream_data", 0],
            ["update", {"step": 1}],
            ["stream_data", 1],
            ["update", {"step": 2}],
            ["stream_data", 2],
            ["stream_end", {}],
        ]
    }


async def test_on_error_of_a_failed_worker_sees_the_failure_recorded() -> None:
    recorded: list[list[str]] = []

    class Broken(BaseWorker):
        async def on_ready(self) -> None:
            raise RuntimeError("broken on purpose")

        async def on_error(self, error: BaseException) -> None:
            recorded.append(sorted(self.runner.failed_workers))

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Broken("bad"))
    assert recorded == [["bad"]]


async def test_a_callback_raising_before_the_worker_starts_goes_to_on_error() -> None:
    errors: list[str] = []

    class Touchy(BaseWorker):
        async def on_deactivated(self) -> None:
            raise RuntimeError("touchy")

        async def on_error(self, error: BaseException) -> None:
            errors.append(str(error))

    runner = WorkerRunner()
    touchy = Touchy("t")
    await runner.add_worker(touchy)
    with anyio.fail_after(10), pytest.raises(LookupError):
        # handoff deactivates itself first (the error goes to on_error), then cannot find
        # the target, which never became ready
        import framework.worker

        framework.worker.ACTIVATION_WAIT, saved = 0.05, framework.worker.ACTIVATION_WAIT
        try:
            await touchy.handoff_to("nobody")
        finally:
            framework.worker.ACTIVATION_WAIT = saved
    assert errors == ["touchy"]


async def test_a_worker_failing_while_a_watcher_cleans_up_does_not_crash_the_runner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = anyio.Event()

    class SlowToStop(BaseWorker):
        async def on_ready(self) -> None:
            await self.watch_worker("late")

        @job
        async def hold(self, job: Job) -> dict[str, Any]:
            while not release.is_set():
                try:
                    await anyio.sleep(0.01)
                except anyio.get_cancelled_exc_class():
                    continue
            return {}

    class Late(BaseWorker):
        async def on_ready(self) -> None:
            await anyio.sleep(0.3)  # fails while the watcher is cleaning up
            raise RuntimeError("late failure")

    with anyio.fail_after(15), caplog.at_level(logging.ERROR):
        async with WorkerRunner(grace_period=0.05) as runner:
            slow = SlowToStop("slow")
            await runner.add_worker(slow)
            await runner.request_job("slow")
            await anyio.sleep(0.05)
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow.end)
                await anyio.sleep(0.1)  # slow is now waiting for its stubborn job
                await runner.add_worker(Late("late"))
            release.set()
    assert "late failure" in caplog.text
    assert "This task group is not active" not in caplog.text


async def test_a_worker_hosted_on_a_runner_cannot_be_adopted_elsewhere() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as first:
            busy = Plain("busy")
            await first.add_worker(busy)
            orphanage = Plain("parent")
            with pytest.raises(ValueError, match="is on runner"):
                await orphanage.add_worker(busy)


async def test_an_ended_worker_cannot_request_jobs() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            worker = Plain("w")
            await runner.add_worker(worker)
            await runner.add_worker(Plain("other"))
            await worker.end()
            while "w" in runner.workers:
                await anyio.sleep(0.01)
            with pytest.raises(RuntimeError, match="is not running"):
                worker.job("other")


# A job request that reaches an idle worker starts at delivery, in the sender's ``send``,
# without a hop through the worker's inbox loop; these pin what must not change with it.

_REQUESTER_SIDE: contextvars.ContextVar[str] = contextvars.ContextVar("requester_side")


async def test_a_job_taken_at_delivery_runs_in_the_workers_context_not_the_senders() -> None:
    seen: list[str] = []

    class Reads(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            seen.append(_REQUESTER_SIDE.get("unset"))
            _REQUESTER_SIDE.set("set by the handler")  # must not leak to the next job
            return {}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Reads("reads"))
            _REQUESTER_SIDE.set("the requester's")
            for _ in range(2):
                async with runner.job("reads"):
                    pass
            assert _REQUESTER_SIDE.get() == "the requester's"
    assert seen == ["unset", "unset"]


async def test_a_job_sent_while_the_inbox_loop_is_busy_waits_its_turn() -> None:
    # The inbox loop runs on_activated; a job sent meanwhile starts after it, as it would
    # have from the queue, never beside it.
    order: list[str] = []

    class Slow(BaseWorker):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.activating = anyio.Event()
            self.go_on = anyio.Event()

        async def on_activated(self, args: Any) -> None:
            self.activating.set()
            await self.go_on.wait()
            order.append("activated")

        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            order.append("job")
            return {}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            worker, boss = Slow("slow"), Plain("boss")
            await runner.add_worker(worker)
            await runner.add_worker(boss)
            await boss.activate_worker("slow")
            await worker.activating.wait()
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    async with runner.job("slow"):
                        pass

                tg.start_soon(ask)
                await anyio.sleep(0.05)
                worker.go_on.set()
    assert order == ["activated", "job"]


async def test_a_reply_reaches_a_callback_of_the_inbox_loop_while_a_control_message_waits() -> None:
    # on_activated (run by the inbox loop) waits for a job; a deactivation queued meanwhile
    # must not hold the reply back behind the loop that waits for it.
    class Helper(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            await anyio.sleep(0.2)
            return {"ok": 1}

    class Asks(BaseWorker):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.got: dict[str, Any] | None = None

        async def on_activated(self, args: Any) -> None:
            async with self.job("helper") as asked:
                pass
            self.got = asked.response

    with anyio.fail_after(5):
        async with WorkerRunner(grace_period=0.5) as runner:
            asks, boss = Asks("asks"), Plain("boss")
            for worker in (Helper("helper"), asks, boss):
                await runner.add_worker(worker)
            await boss.activate_worker("asks")
            await anyio.sleep(0.05)  # the loop is inside on_activated now
            await boss.deactivate_worker("asks")
            with anyio.fail_after(2):
                while asks.got is None:
                    await anyio.sleep(0.01)
    assert asks.got == {"ok": 1}


@pytest.mark.parametrize("control", [DeactivateMessage, EndMessage, CancelMessage])
async def test_a_control_message_sent_right_after_a_request_still_overtakes_it(
    control: type[BusMessage],
) -> None:
    records = Records("records")

    bus = LocalBus()
    with anyio.fail_after(5):
        async with WorkerRunner(bus=bus, grace_period=0.5) as runner:
            await runner.add_worker(records)
            await anyio.sleep(0.01)
            # No checkpoint between the two: the request reaches an idle worker first.
            send_request(bus, runner.name, "records", "j1")
            bus.send_nowait(control.build(source="someone", target="records"))
            await anyio.sleep(0.1)
    assert records.ran == []


_SET_BY_CALLBACK: contextvars.ContextVar[str] = contextvars.ContextVar("set_by_callback")


async def test_a_job_sees_context_variables_set_by_a_callback_of_the_inbox_loop() -> None:
    class Tenant(BaseWorker):
        async def on_activated(self, args: Any) -> None:
            _SET_BY_CALLBACK.set("from on_activated")

        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            return {"tenant": _SET_BY_CALLBACK.get("unset")}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            boss = Plain("boss")
            await runner.add_worker(Tenant("tenant"))
            await runner.add_worker(boss)
            await boss.activate_worker("tenant")
            await anyio.sleep(0.05)
            async with runner.job("tenant") as asked:
                pass
    assert asked.response == {"tenant": "from on_activated"}


async def test_jobs_run_under_an_asyncio_task_factory_that_takes_no_context() -> None:
    loop = asyncio.get_running_loop()
    loop.set_task_factory(lambda loop, coro: asyncio.Task(coro, loop=loop))  # type: ignore[arg-type,misc]
    try:
        with anyio.fail_after(5):
            async with WorkerRunner() as runner:
                await runner.add_worker(Plain("plain"))
                async with runner.job("plain") as asked:
                    pass
        assert asked.response == {}
    finally:
        loop.set_task_factory(None)


async def test_requests_a_control_message_overtakes_go_back_in_the_order_they_came() -> None:
    records = Records("records")

    bus = LocalBus()
    with anyio.fail_after(5):
        async with WorkerRunner(bus=bus) as runner:
            await runner.add_worker(records)
            await anyio.sleep(0.01)
            for job_id in ("j1", "j2", "j3"):
                send_request(bus, runner.name, "records", job_id)
            bus.send_nowait(
                JobCancelMessage.build(source=runner.name, target="records", job_id="another")
            )
            with anyio.fail_after(2):
                while len(records.ran) < 3:
                    await anyio.sleep(0.01)
    assert records.ran == ["j1", "j2", "j3"]


async def test_a_control_message_from_a_started_job_does_not_overtake_a_request_beside_it() -> None:
    # Two requests reach the worker before either job runs: both start, as they would from
    # the queue, even though the first one's handler ends the worker at once.
    ran: list[str] = []

    class EndsItself(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            ran.append(job.job_id)
            if job.job_id == "j1":
                await self.end()
            return {}

    bus = LocalBus()
    with anyio.fail_after(5):
        async with WorkerRunner(bus=bus, grace_period=0.5) as runner:
            await runner.add_worker(EndsItself("ends"))
            await anyio.sleep(0.01)
            for job_id in ("j1", "j2"):
                send_request(bus, runner.name, "ends", job_id)
            await anyio.sleep(0.1)
    assert ran == ["j1", "j2"]


@pytest.fixture(params=["taken at delivery", "queued"])
async def delivery(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """Each test twice: with requests to idle workers taken at delivery, and with every
    request queued (any custom asyncio task factory turns taking at delivery off)."""
    loop = asyncio.get_running_loop()
    if request.param == "queued":
        loop.set_task_factory(
            lambda loop, coro, **kwargs: asyncio.Task(coro, loop=loop, **kwargs)  # type: ignore[arg-type]
        )
    yield request.param
    loop.set_task_factory(None)


class Holds(BaseWorker):
    """Takes jobs and never answers them (the tests answer them by hand)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.got: list[str] = []

    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        self.got.append(job.job_id)
        await anyio.sleep_forever()
        return {}


async def test_a_reply_queued_after_a_request_is_handled_before_the_job_runs(
    delivery: str,
) -> None:
    order: list[str] = []

    class Observes(BaseWorker):
        async def on_job_completed(self, result: Any) -> None:
            order.append("on_job_completed")

        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            order.append("handler")
            return {}

    bus = LocalBus()
    with anyio.fail_after(5):
        async with WorkerRunner(bus=bus, grace_period=0.2) as runner:
            holds, observes = Holds("holds"), Observes("observes")
            await runner.add_worker(holds)
            await runner.add_worker(observes)
            asked = await observes.request_job("holds")
            while not holds.got:
                await anyio.sleep(0.01)
            await anyio.sleep(0.01)
            send_request(bus, runner.name, "observes", "j1")
            bus.send_nowait(
                JobResponseMessage.build(
                    source="holds", target="observes", job_id=asked, status=JobStatus.COMPLETED
                )
            )
            await anyio.sleep(0.1)
    assert order == ["on_job_completed", "handler"]


async def test_a_reply_after_a_request_a_control_message_sends_back_keeps_its_place(
    delivery: str,
) -> None:
    order: list[str] = []

    class InOrder(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            order.append("handler")
            return {}

    bus = LocalBus()
    with anyio.fail_after(5):
        async with WorkerRunner(bus=bus, grace_period=0.2) as runner:
            holds, records = Holds("holds"), InOrder("records")
            await runner.add_worker(holds)
            await runner.add_worker(records)

            async def ask() -> None:
                async with records.job("holds"):
                    pass
                order.append("reply")

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                while not holds.got:
                    await anyio.sleep(0.01)
                await anyio.sleep(0.01)
                # No checkpoint between: the request, the reply to the worker's own job,
                # then a control message.
                send_request(bus, runner.name, "records", "j1")
                bus.send_nowait(
                    JobResponseMessage.build(
                        source="holds",
                        target="records",
                        job_id=holds.got[0],
                        status=JobStatus.COMPLETED,
                    )
                )
                bus.send_nowait(
                    JobCancelMessage.build(source=runner.name, target="records", job_id="other")
                )
                await anyio.sleep(0.1)
    assert order == ["handler", "reply"]


async def test_a_request_sent_as_the_worker_hands_off_is_refused_as_from_the_queue(
    delivery: str,
) -> None:
    # handoff_to deactivates the worker without a message: a request it took just before
    # must not start on an inactive worker.
    ran: list[str] = []
    go_on = anyio.Event()

    class HandsOff(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            ran.append(job.job_id)
            if job.job_id == "j1":
                await go_on.wait()
                await self.handoff_to("other")
            return {}

    bus = LocalBus()
    with anyio.fail_after(5):
        async with WorkerRunner(bus=bus, grace_period=0.2) as runner:
            await runner.add_worker(HandsOff("hands-off"))
            await runner.add_worker(HandsOff("other"))
            send_request(bus, runner.name, "hands-off", "j1")
            while not ran:
                await anyio.sleep(0.01)
            await anyio.sleep(0.01)
            go_on.set()  # j1 goes on (and hands off) before j2's task first runs
            send_request(bus, runner.name, "hands-off", "j2")
            await anyio.sleep(0.1)
    assert ran == ["j1"]


async def test_two_requesters_may_use_the_same_job_id(delivery: str) -> None:
    ran: list[str] = []

    class RecordsRequesters(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            ran.append(job.requester)
            return {}

    bus = LocalBus()
    with anyio.fail_after(5):
        async with WorkerRunner(bus=bus, grace_period=0.2) as runner:
            for name in ("records", "a", "b"):
                await runner.add_worker(RecordsRequesters(name))
            await anyio.sleep(0.01)
            for source in ("a", "b"):
                send_request(bus, source, "records", "same")
            await anyio.sleep(0.1)
    assert sorted(ran) == ["a", "b"]


async def test_a_request_reusing_a_running_jobs_id_leaves_that_job_alone(delivery: str) -> None:
    # Job ids are unique per requester: b's request with a's job id, then the worker's end,
    # must still cancel and answer a's running job.
    started: list[str] = []
    unwound: list[str] = []

    class HoldsOn(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            started.append(job.requester)
            try:
                await anyio.sleep_forever()
            finally:
                unwound.append(job.requester)
            return {}

    bus = LocalBus()
    with anyio.fail_after(5):
        async with WorkerRunner(bus=bus, grace_period=0.2) as runner:
            inbox_a = bus.subscribe("a")
            bus.subscribe("b")
            await runner.add_worker(HoldsOn("holds-on"))
            await anyio.sleep(0.01)
            send_request(bus, "a", "holds-on", "same")
            while not started:
                await anyio.sleep(0.01)
            await anyio.sleep(0.01)
            send_request(bus, "b", "holds-on", "same")
            bus.send_nowait(EndMessage.build(source="someone", target="holds-on"))
            await anyio.sleep(0.5)
            answers = inbox_a.drain()
    assert started == ["a"]
    assert unwound == ["a"]
    assert [type(answer) for answer in answers] == [JobResponseMessage]


async def test_a_request_that_comes_as_the_worker_is_cancelled_does_not_start(
    delivery: str,
) -> None:
    records = Records("records")

    bus = LocalBus()
    with anyio.fail_after(5):
        with anyio.CancelScope() as outer:
            async with WorkerRunner(bus=bus, grace_period=0.2) as runner:
                await runner.add_worker(records)
                await anyio.sleep(0.01)
                outer.cancel()  # the worker's loop is cancelled while it waits, and before
                # it resumes a request comes (no checkpoint between)
                send_request(bus, runner.name, "records", "j1")
                await anyio.sleep(1)
    assert records.ran == []
