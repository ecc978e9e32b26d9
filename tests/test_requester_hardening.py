"""The requesting side under load and abuse: timeouts that cost no task per job, failure
paths that always yield to the event loop, and stream buffers that stay bounded.

Each test states the limit it checks (tasks, ticks, buffered events) and is bounded in time.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from framework import (
    BaseWorker,
    Job,
    JobError,
    JobEvent,
    JobGroupError,
    JobStatus,
    WorkerReadyData,
    WorkerRunner,
    job,
)
from framework._pending import EVENT_BUFFER, REMOTE_EVENT_BUFFER
from framework.bus.local import LocalBus
from framework.bus.messages import (
    JobCancelMessage,
    JobRequestMessage,
    JobResponseMessage,
    JobStreamDataMessage,
)

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


# ----------------------------------------------------------------- bounded stream buffers


class Producer(BaseWorker):
    """Streams ``payload["n"]`` items (or sends them as updates with ``"updates"``), counting
    what it has sent; ``released`` is set when its handler ends, however it ends."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.sent = 0
        self.released = anyio.Event()

    @job
    async def stream(self, job: Job) -> AsyncIterator[int]:
        try:
            for i in range(job.payload["n"]):
                self.sent = i
                yield i
            self.sent = job.payload["n"]
        finally:
            self.released.set()

    @job(name="updates")
    async def updates(self, job: Job) -> dict[str, Any]:
        try:
            for i in range(job.payload["n"]):
                await job.update({"i": i})
                self.sent = i + 1
        finally:
            self.released.set()
        return {"sent": job.payload["n"]}


def _buffered(context: Any) -> int:
    events = context._pending._events
    return 0 if events is None else len(events)


async def _until_blocked(context: Any, producer: Producer) -> None:
    """Wait until the producer has filled the requester's buffer and stopped there."""
    while _buffered(context) < EVENT_BUFFER:
        await anyio.sleep(0.005)
    sent = producer.sent
    await anyio.sleep(0.05)
    assert producer.sent == sent and _buffered(context) == EVENT_BUFFER
    assert not producer.released.is_set()


async def test_a_slow_reader_holds_at_most_the_buffer_and_gets_every_item_in_order() -> None:
    n = 200_000
    with anyio.fail_after(60):
        async with WorkerRunner() as runner:
            await runner.add_worker(Producer("producer"))
            items: list[int] = []
            most = 0
            async with runner.job("producer", payload={"n": n}) as j:
                async for event in j:
                    most = max(most, _buffered(j) + 1)  # it only grows between two reads
                    if event.type == JobEvent.STREAM_DATA:
                        items.append(event.data)
                        if not len(items) % 1_000:
                            await anyio.sleep(0.001)
            assert items == list(range(n))
            assert j.response == {"chunks": n}
            assert most == EVENT_BUFFER


async def test_updates_nobody_reads_yet_wait_for_room_too() -> None:
    n = 5_000
    with anyio.fail_after(30):
        async with WorkerRunner() as runner:
            producer = Producer("producer")
            await runner.add_worker(producer)
            async with runner.job("producer", name="updates", payload={"n": n}) as j:
                await _until_blocked(j, producer)
                assert producer.sent == EVENT_BUFFER - 1  # the last one sent waits for room
                seen = [event.data["i"] async for event in j]
            assert seen == list(range(n))
            assert j.response == {"sent": n}


async def test_a_stream_read_only_at_the_end_keeps_no_more_than_the_buffer() -> None:
    n = 200_000
    with anyio.fail_after(60):
        async with WorkerRunner() as runner:
            producer = Producer("producer")
            await runner.add_worker(producer)
            tracemalloc.start()
            try:
                async with runner.job("producer", payload={"n": n}) as j:
                    await _until_blocked(j, producer)
                    _, peak_unread = tracemalloc.get_traced_memory()
                    count = 0
                    async for event in j:
                        if event.type == JobEvent.STREAM_DATA:
                            assert event.data == count
                            count += 1
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert count == n and j.response == {"chunks": n}
            # 200,000 buffered events would take tens of MB; 256 take a few dozen KB.
            assert peak_unread < 2_000_000 and peak < 4_000_000


async def test_leaving_the_block_without_reading_releases_the_producer() -> None:
    with anyio.fail_after(30):
        async with WorkerRunner() as runner:
            producer = Producer("producer")
            await runner.add_worker(producer)
            async with runner.job("producer", payload={"n": 10_000}) as j:
                await _until_blocked(j, producer)
            assert j.status is JobStatus.COMPLETED and j.response == {"chunks": 10_000}
            assert _buffered(j) == 0


async def test_cancelling_a_job_releases_its_blocked_producer_at_once() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            producer = Producer("producer")
            await runner.add_worker(producer)
            with pytest.raises(JobError) as caught:
                async with runner.job("producer", payload={"n": 10**9}) as j:
                    await _until_blocked(j, producer)
                    assert await runner.cancel_job(j.job_id)
                    with anyio.fail_after(1):
                        await producer.released.wait()
                    async for _ in j:  # what was sent before the cancel, then the end
                        pass
            assert caught.value.status is JobStatus.CANCELLED
            assert producer.active_jobs == {}


async def test_leaving_the_block_by_an_exception_releases_the_blocked_producer() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            producer = Producer("producer")
            await runner.add_worker(producer)
            with pytest.raises(LookupError):
                async with runner.job("producer", payload={"n": 10**9}) as j:
                    await _until_blocked(j, producer)
                    raise LookupError("gave up reading")
            assert j.status is JobStatus.CANCELLED
            with anyio.fail_after(1):
                await producer.released.wait()


async def test_a_timeout_ends_a_job_whose_producer_is_blocked() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            producer = Producer("producer")
            await runner.add_worker(producer)
            started = anyio.current_time()
            with pytest.raises(JobError) as caught:
                async with runner.job("producer", payload={"n": 10**9}, timeout=0.5) as j:
                    await _until_blocked(j, producer)
                    await anyio.sleep(60)
            assert caught.value.timed_out and caught.value.status is JobStatus.CANCELLED
            assert anyio.current_time() - started < 2
            with anyio.fail_after(1):
                await producer.released.wait()


async def test_a_group_member_waits_for_room_like_a_single_job() -> None:
    n = 20_000
    with anyio.fail_after(30):
        async with WorkerRunner() as runner:
            await runner.add_worker(Producer("a"))
            await runner.add_worker(Producer("b"))
            got: dict[str, list[int]] = {"a": [], "b": []}
            most = 0
            async with runner.job_group("a", "b", payload={"n": n}) as g:
                async for event in g:
                    most = max(most, _buffered(g) + 1)
                    if event.type == JobEvent.STREAM_DATA:
                        got[event.worker_name].append(event.data)
                        if not sum(map(len, got.values())) % 1_000:
                            await anyio.sleep(0.001)
            assert got == {"a": list(range(n)), "b": list(range(n))}
            assert most <= EVENT_BUFFER + 1  # each member may add one before it waits


async def test_a_worker_reading_its_own_stream_slowly_gets_everything() -> None:
    n = 5_000

    class SelfReader(Producer):
        """Requests a stream from itself, and has job callbacks: its replies queue in its
        inbox and reach the buffer through its receive loop."""

        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.callbacks = 0

        async def on_job_stream_data(self, message: Any) -> None:
            self.callbacks += 1

        @job(name="read")
        async def read(self, job: Job) -> dict[str, Any]:
            items = []
            async with self.job(self.name, payload={"n": n}) as own:
                async for event in own:
                    if event.type == JobEvent.STREAM_DATA:
                        items.append(event.data)
                        if not len(items) % 500:
                            await anyio.sleep(0.001)
            return {"in_order": items == list(range(n))}

    with anyio.fail_after(30):
        async with WorkerRunner() as runner:
            reader = SelfReader("self-reader")
            await runner.add_worker(reader)
            async with runner.job("self-reader", name="read") as j:
                pass
            assert j.response == {"in_order": True}
            assert reader.callbacks == n


async def test_streaming_from_the_reading_task_itself_never_waits() -> None:
    class Holder(BaseWorker):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.current: Job | None = None
            self.go = anyio.Event()

        @job
        async def hold(self, job: Job) -> dict[str, Any]:
            self.current = job
            await self.go.wait()
            return {}

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            holder = Holder("holder")
            await runner.add_worker(holder)
            async with runner.job("holder") as j:
                while holder.current is None:
                    await anyio.sleep(0.005)
                for i in range(2 * EVENT_BUFFER):  # from the reader's task: it must not wait
                    await holder.current.stream(i)
                holder.go.set()
                items = [e.data async for e in j if e.type == JobEvent.STREAM_DATA]
            assert items == list(range(2 * EVENT_BUFFER))


async def test_fire_and_forget_streams_keep_no_events() -> None:
    n = 3_000

    class Listener(BaseWorker):
        def __init__(self, name: str) -> None:
            super().__init__(name)
            self.items: list[int] = []
            self.done = anyio.Event()

        async def on_job_stream_data(self, message: Any) -> None:
            self.items.append(message.data)

        async def on_job_completed(self, result: JobResponseMessage) -> None:
            self.done.set()

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Producer("producer"))
            listener = Listener("listener")
            await runner.add_worker(listener)
            job_id = await listener.request_job("producer", payload={"n": n})
            pending = listener._require_requester()._pending[job_id]
            assert pending._events is None
            await listener.done.wait()
            assert listener.items == list(range(n))


async def test_a_worker_on_another_runner_that_overfills_the_buffer_ends_the_job() -> None:
    """A network bus cannot make a remote worker wait: simulated here by a shared bus and
    a registry entry saying that ``far`` runs elsewhere, and messages sent by hand."""
    bus = LocalBus()
    with anyio.fail_after(10):
        async with WorkerRunner(bus=bus) as runner:
            far = bus.subscribe("far")
            await runner.registry.register(WorkerReadyData(worker_name="far", runner="elsewhere"))
            with pytest.raises(JobError) as caught:
                async with runner.job("far") as j:
                    request = await far.receive()
                    assert isinstance(request, JobRequestMessage)
                    for i in range(REMOTE_EVENT_BUFFER + 100):
                        await bus.send(
                            JobStreamDataMessage.build(
                                source="far", target=runner.name, job_id=j.job_id, data=i
                            )
                        )
                        assert _buffered(j) <= REMOTE_EVENT_BUFFER
                    items = [e.data async for e in j]
            assert caught.value.status is JobStatus.CANCELLED
            assert "fell behind" in caught.value.response["error"]
            assert items == list(range(REMOTE_EVENT_BUFFER))
            cancel = await far.receive()
            assert isinstance(cancel, JobCancelMessage) and cancel.job_id == j.job_id
            await runner.registry.unregister("far", "test over")
