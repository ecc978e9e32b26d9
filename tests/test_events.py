"""Runtime events: the EventModel itself, and what a real runner publishes through it."""

from __future__ import annotations

import itertools
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pydantic
import pytest
from publishers import AsyncRecorder, Recorder

import framework._runtime
from framework import (
    BaseWorker,
    ContentType,
    Event,
    EventModel,
    EventType,
    Job,
    JobError,
    JobFailed,
    JobStatus,
    WorkerRunner,
    hookimpl,
    job,
)

# ----------------------------------------------------------------- the model


def test_enums_are_str_enums_with_lower_case_values() -> None:
    assert [e.value for e in Event] == [
        "graph_execution",
        "node_execution",
        "tool_execution",
        "streaming",
    ]
    assert [e.value for e in EventType] == [
        "start",
        "progress",
        "result",
        "end",
        "update",
        "error",
        "interrupted",
    ]
    assert [e.value for e in ContentType] == [
        "text",
        "message",
        "reasoning",
        "tool_call",
        "tool_result",
        "image",
        "audio",
        "video",
        "document",
        "data",
        "state",
        "update",
        "error",
    ]
    for enum in (Event, EventType, ContentType):
        for member in enum:
            assert isinstance(member, str)
            assert member == member.name.lower()


def test_event_model_defaults() -> None:
    before = time.time()
    event = EventModel(event=Event.NODE_EXECUTION, event_type=EventType.START)
    after = time.time()
    assert event.event is Event.NODE_EXECUTION
    assert event.event_type is EventType.START
    assert event.content == ""
    assert event.content_blocks is None
    assert event.delta is False
    assert event.delta_type is None
    assert event.block_index is None
    assert event.chunk_index is None
    assert event.byte_offset is None
    assert event.data == {}
    assert event.content_type is None
    assert event.sequence_id == 0
    assert event.node_name == ""
    assert str(uuid.UUID(event.run_id)) == event.run_id
    assert uuid.UUID(event.run_id).version == 4
    assert event.thread_id == ""
    assert before <= event.timestamp <= after
    assert event.is_error is False
    assert event.metadata == {}


def test_event_and_event_type_are_required() -> None:
    with pytest.raises(pydantic.ValidationError):
        EventModel(event=Event.STREAMING)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        EventModel(event_type=EventType.START)  # type: ignore[call-arg]


def test_event_model_accepts_every_field_and_string_enum_values() -> None:
    event = EventModel(
        event="tool_execution",  # type: ignore[arg-type]
        event_type="result",  # type: ignore[arg-type]
        content="hello",
        content_blocks=[{"type": "text", "text": "hello"}],
        delta=True,
        delta_type="json",
        block_index=1,
        chunk_index=2,
        byte_offset=3,
        data={"a": 1},
        content_type=["tool_result", ContentType.DATA],  # type: ignore[list-item]
        sequence_id=7,
        node_name="w",
        run_id="run-1",
        thread_id=42,
        timestamp=123.5,
        is_error=True,
        metadata={"user": "ann"},
    )
    assert event.event is Event.TOOL_EXECUTION
    assert event.event_type is EventType.RESULT
    assert event.content_type == [ContentType.TOOL_RESULT, ContentType.DATA]
    assert event.thread_id == 42
    assert event.timestamp == 123.5
    with pytest.raises(pydantic.ValidationError):
        EventModel(event=Event.STREAMING, event_type=EventType.PROGRESS, delta_type="xml")  # type: ignore[arg-type]
    with pytest.raises(pydantic.ValidationError):
        EventModel(event="bogus", event_type=EventType.START)  # type: ignore[arg-type]


def test_event_model_is_frozen() -> None:
    event = EventModel(event=Event.NODE_EXECUTION, event_type=EventType.START, data={"a": 1})
    for field, value in (("content", "x"), ("sequence_id", 3), ("event_type", EventType.END)):
        with pytest.raises(pydantic.ValidationError):
            setattr(event, field, value)
    assert event.content == ""
    assert hash(event.run_id)  # usable as-is
    copy = event.model_copy(update={"sequence_id": 9})
    assert copy.sequence_id == 9
    assert event.sequence_id == 0


def test_each_event_has_its_own_timestamp_run_id_and_containers() -> None:
    first = EventModel(event=Event.STREAMING, event_type=EventType.PROGRESS)
    time.sleep(0.01)
    second = EventModel(event=Event.STREAMING, event_type=EventType.PROGRESS)
    assert second.timestamp > first.timestamp
    assert first.run_id != second.run_id
    assert first.data is not second.data
    assert first.metadata is not second.metadata


def test_default_builds_from_a_base_config() -> None:
    base = {"thread_id": "t-1", "run_id": "run-9", "timestamp": 1000.0, "user": "ann"}
    event = EventModel.default(
        base,
        {"answer": 42},
        ContentType.DATA,
        event=Event.NODE_EXECUTION,
        event_type=EventType.RESULT,
        node_name="w",
        extra={"sequence_id": 5, "is_error": True},
    )
    assert event.event is Event.NODE_EXECUTION
    assert event.event_type is EventType.RESULT
    assert event.data == {"answer": 42}
    assert event.content == ""
    assert event.content_type == [ContentType.DATA]
    assert event.node_name == "w"
    assert event.thread_id == "t-1"
    assert event.run_id == "run-9"
    assert event.timestamp == 1000.0
    assert event.metadata == {"user": "ann"}
    assert event.sequence_id == 5
    assert event.is_error is True


def test_default_with_text_a_list_of_content_types_and_an_empty_base() -> None:
    before = time.time()
    event = EventModel.default({}, "some text", [ContentType.TEXT, ContentType.MESSAGE])
    assert event.event is Event.GRAPH_EXECUTION
    assert event.event_type is EventType.START
    assert event.content == "some text"
    assert event.data == {}
    assert event.content_type == [ContentType.TEXT, ContentType.MESSAGE]
    assert event.node_name == ""
    assert event.thread_id == ""
    assert event.metadata == {}
    assert event.timestamp >= before
    uuid.UUID(event.run_id)

    bare = EventModel.default({"thread_id": 7}, None, None)
    assert bare.content_type is None
    assert bare.data == {}
    assert bare.content == ""
    assert bare.thread_id == 7


def test_stream_builds_a_streaming_delta() -> None:
    base = {"thread_id": "t-2", "run_id": "run-3", "timestamp": 5.0}
    event = EventModel.stream(base, node_name="llm", extra={"content": "tok", "chunk_index": 4})
    assert event.event is Event.STREAMING
    assert event.event_type is EventType.PROGRESS
    assert event.delta is True
    assert event.content_type == [ContentType.TEXT]
    assert event.content == "tok"
    assert event.chunk_index == 4
    assert event.node_name == "llm"
    assert (event.thread_id, event.run_id, event.timestamp) == ("t-2", "run-3", 5.0)
    plain = EventModel.stream({})
    assert plain.event is Event.STREAMING
    assert plain.event_type is EventType.PROGRESS
    assert plain.delta is True


def test_json_serialization_uses_enum_values_as_strings() -> None:
    event = EventModel(
        event=Event.NODE_EXECUTION,
        event_type=EventType.INTERRUPTED,
        content_type=[ContentType.STATE, ContentType.ERROR],
        data={"n": 1},
        thread_id="j",
    )
    dumped = event.model_dump(mode="json")
    assert dumped["event"] == "node_execution"
    assert dumped["event_type"] == "interrupted"
    assert dumped["content_type"] == ["state", "error"]
    assert type(dumped["event"]) is str
    parsed = json.loads(event.model_dump_json())
    assert parsed == dumped
    assert parsed["event"] == "node_execution"
    assert parsed["content_type"] == ["state", "error"]
    # Plain json.dumps of a python-mode dump gives the same strings: the enums are str.
    assert json.loads(json.dumps(event.model_dump()))["event_type"] == "interrupted"
    assert EventModel.model_validate_json(event.model_dump_json()) == event


# ----------------------------------------------------------------- workers and publishers


class Demo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"echo": job.payload}

    @job(name="fail")
    async def fail(self, job: Job) -> dict[str, Any]:
        raise JobFailed("bad input")

    @job(name="boom")
    async def boom(self, job: Job) -> dict[str, Any]:
        raise RuntimeError("kaboom")

    @job(name="progress")
    async def progress(self, job: Job) -> dict[str, Any]:
        await job.update({"pct": 50})
        return {"done": True}

    @job(name="stream")
    async def stream(self, job: Job) -> AsyncIterator[Any]:
        yield "hello"
        yield {"n": 1}

    @job(name="hang")
    async def hang(self, job: Job) -> dict[str, Any]:
        await anyio.sleep_forever()
        return {}


class BrokenStart(BaseWorker):
    async def on_ready(self) -> None:
        raise RuntimeError("no database")


class Stuck:
    """Blocks forever on its first event."""

    def __init__(self) -> None:
        self.never = anyio.Event()
        self.calls = 0

    @hookimpl
    async def publish_event(self, event: EventModel) -> None:
        self.calls += 1
        await self.never.wait()


class KeepsUp:
    """Keeps every event, on the loop, without a scheduling point."""

    def __init__(self) -> None:
        self.events: list[EventModel] = []

    @hookimpl
    async def publish_event(self, event: EventModel) -> None:
        self.events.append(event)


class Broken:
    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        raise RuntimeError("publisher down")


class BrokenAsync:
    @hookimpl
    async def publish_event(self, event: EventModel) -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("async publisher down")


def kinds(events: list[EventModel]) -> list[tuple[Event, EventType, list[ContentType] | None]]:
    return [(e.event, e.event_type, e.content_type) for e in events]


async def exercise(runner: WorkerRunner) -> dict[str, str]:
    """Make every happening of the mapping table happen once; return the job ids by kind."""
    await runner.add_worker(Demo("w"))
    await runner.add_worker(BrokenStart("broken"))
    ids: dict[str, str] = {}
    async with runner.job("w", payload={"x": 1}) as j:
        pass
    assert j.status is JobStatus.COMPLETED
    ids["ok"] = j.job_id
    for name, status in (("fail", JobStatus.FAILED), ("boom", JobStatus.ERROR)):
        with pytest.raises(JobError) as info:
            async with runner.job("w", name=name) as j:
                pass
        assert info.value.status is status
        ids[name] = j.job_id
    async with runner.job("w", name="progress") as j:
        assert [e.data async for e in j] == [{"pct": 50}]
    ids["progress"] = j.job_id
    async with runner.job("w", name="stream") as j:
        assert [e.data async for e in j if e.type == "stream_data"] == ["hello", {"n": 1}]
    ids["stream"] = j.job_id
    with pytest.raises(JobError) as info:
        async with runner.job("w", name="hang", timeout=0.05) as j:
            pass
    assert info.value.timed_out
    ids["hang"] = j.job_id
    return ids


async def run_exercise(**runner_kwargs: Any) -> tuple[WorkerRunner, dict[str, str]]:
    runner = WorkerRunner("events-runner", **runner_kwargs)
    async with runner:
        ids = await exercise(runner)
    return runner, ids


NODE = Event.NODE_EXECUTION
STATE = [ContentType.STATE]
DATA = [ContentType.DATA]
ERROR = [ContentType.ERROR]


@pytest.mark.anyio
async def test_runner_start_and_stop_events() -> None:
    with anyio.fail_after(10):
        recorder = Recorder()
        runner = WorkerRunner("r1", plugins=[recorder])
        async with runner:
            pass
        assert kinds(recorder.events) == [
            (Event.GRAPH_EXECUTION, EventType.START, STATE),
            (Event.GRAPH_EXECUTION, EventType.END, STATE),
        ]
        for event in recorder.events:
            assert event.node_name == "r1"
            assert event.thread_id == ""
            assert event.is_error is False


@pytest.mark.anyio
async def test_worker_ready_events_before_and_after_start() -> None:
    with anyio.fail_after(10):
        recorder = Recorder()
        runner = WorkerRunner("r1", plugins=[recorder])
        await runner.add_worker(Demo("early"))
        async with runner:
            await runner.add_worker(Demo("late"))
        ready = [e for e in recorder.events if e.event is NODE]
        assert [e.node_name for e in ready] == ["early", "late"]
        assert kinds(ready) == [(NODE, EventType.START, STATE)] * 2
        assert all(e.thread_id == "" for e in ready)
        assert recorder.events[0].event is Event.GRAPH_EXECUTION
        assert recorder.events[0].event_type is EventType.START
        assert recorder.events[-1].event_type is EventType.END


@pytest.mark.anyio
async def test_worker_failed_event() -> None:
    with anyio.fail_after(10):
        recorder = Recorder()
        runner = WorkerRunner("r1", plugins=[recorder])
        async with runner:
            await runner.add_worker(BrokenStart("broken"))
        about = [e for e in recorder.events if e.node_name == "broken"]
        assert kinds(about) == [(NODE, EventType.ERROR, ERROR)]
        assert about[0].is_error is True
        assert about[0].thread_id == ""
        assert "no database" in about[0].content


@pytest.mark.anyio
async def test_every_happening_in_the_mapping_table() -> None:
    with anyio.fail_after(10):
        recorder = Recorder()
        _, ids = await run_exercise(plugins=[recorder])
        events = recorder.events

        def of(kind: str) -> list[EventModel]:
            found = [e for e in events if e.thread_id == ids[kind]]
            assert all(e.node_name == "w" for e in found), found
            return found

        ok = of("ok")
        assert kinds(ok) == [(NODE, EventType.START, DATA), (NODE, EventType.RESULT, DATA)]
        assert [e.is_error for e in ok] == [False, False]

        for kind in ("fail", "boom"):
            found = of(kind)
            assert kinds(found) == [(NODE, EventType.START, DATA), (NODE, EventType.ERROR, ERROR)]
            assert found[-1].is_error is True

        progress = of("progress")
        assert kinds(progress) == [
            (NODE, EventType.START, DATA),
            (NODE, EventType.UPDATE, [ContentType.UPDATE]),
            (NODE, EventType.RESULT, DATA),
        ]
        assert progress[1].data == {"pct": 50}

        stream = of("stream")
        assert kinds(stream) == [
            (NODE, EventType.START, DATA),
            (Event.STREAMING, EventType.PROGRESS, [ContentType.TEXT]),
            (Event.STREAMING, EventType.PROGRESS, DATA),
            (NODE, EventType.RESULT, DATA),
        ]
        assert stream[1].content == "hello"
        assert stream[2].data == {"n": 1}

        hang = of("hang")
        assert kinds(hang) == [(NODE, EventType.START, DATA), (NODE, EventType.INTERRUPTED, STATE)]
        assert hang[-1].is_error is False

        # Worker events, and the runner's own, carry no thread id.
        assert [(e.node_name, e.event_type) for e in events if e.thread_id == ""] == [
            ("events-runner", EventType.START),
            ("w", EventType.START),
            ("broken", EventType.ERROR),
            ("events-runner", EventType.END),
        ]
        # Nothing else was published.
        assert {e.thread_id for e in events} == {"", *ids.values()}


@pytest.mark.anyio
async def test_one_run_shares_a_run_id_and_sequence_ids_increase() -> None:
    with anyio.fail_after(10):
        first = Recorder()
        runner, _ = await run_exercise(plugins=[first])
        assert len(first.events) > 10
        run_ids = {e.run_id for e in first.events}
        assert run_ids == {runner.run_id}
        assert runner.run_id
        sequence = [e.sequence_id for e in first.events]
        assert all(a < b for a, b in itertools.pairwise(sequence)), sequence

        second = Recorder()
        other, _ = await run_exercise(plugins=[second])
        assert {e.run_id for e in second.events} == {other.run_id}
        assert other.run_id != runner.run_id


@pytest.mark.anyio
async def test_every_publisher_receives_every_event() -> None:
    with anyio.fail_after(10):
        sync_a, sync_b, async_c = Recorder(), Recorder(), AsyncRecorder()
        runner, _ = await run_exercise(plugins=[sync_a, sync_b, async_c])
        assert len(sync_a.events) > 10
        assert sync_b.events == sync_a.events
        assert async_c.events == sync_a.events
        stats = runner.event_stats()
        assert len(stats) == 3
        for figures in stats.values():
            assert (figures.delivered, figures.dropped, figures.failed) == (
                len(sync_a.events),
                0,
                0,
            )
        # Publishers get the same frozen objects: nobody can change what another sees.
        with pytest.raises(pydantic.ValidationError):
            sync_a.events[0].content = "changed"


@pytest.mark.anyio
async def test_a_publisher_that_blocks_forever_loses_only_its_own_events() -> None:
    with anyio.fail_after(10):
        stuck_plugin = Stuck()
        # Async without a scheduling point: it keeps up with a 4-event buffer at full speed
        # (a sync one runs in a thread, which may not get the GIL in time for so small a one).
        recorder = KeepsUp()
        runner = WorkerRunner(
            "r",
            plugins=[stuck_plugin, recorder],
            event_buffer_size=4,
            event_drain_timeout=0.05,
        )
        jobs = 200
        async with runner:
            await runner.add_worker(Demo("w"))
            # Full speed: the jobs never wait for the stuck publisher.
            with anyio.fail_after(3):
                for i in range(jobs):
                    async with runner.job("w", payload={"i": i}) as j:
                        pass
                    assert j.response == {"echo": {"i": i}}

        total = 1 + 1 + 2 * jobs + 1  # runner start, worker ready, 2 per job, runner end
        assert len(recorder.events) == total
        assert recorder.events[-1].event_type is EventType.END
        assert stuck_plugin.calls == 1
        assert not stuck_plugin.never.is_set()
        stuck = runner.event_stats()["Stuck"]
        assert stuck.delivered == 0
        assert stuck.failed == 0
        assert stuck.dropped >= total - 4 - 1
        assert stuck.delivered + stuck.dropped + stuck.failed == total
        other = runner.event_stats()["KeepsUp"]
        assert (other.delivered, other.dropped, other.failed) == (total, 0, 0)


@pytest.mark.anyio
async def test_a_publisher_that_raises_on_every_event(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(10):
        recorder = Recorder()
        runner = WorkerRunner("r", plugins=[Broken(), recorder, BrokenAsync()])
        jobs = 20
        with caplog.at_level(logging.WARNING):
            async with runner:
                await runner.add_worker(Demo("w"))
                for i in range(jobs):
                    async with runner.job("w", payload={"i": i}) as j:
                        pass
                    assert j.status is JobStatus.COMPLETED
                    assert j.response == {"echo": {"i": i}}

        total = 1 + 1 + 2 * jobs + 1
        assert len(recorder.events) == total
        stats = runner.event_stats()
        for name in ("Broken", "BrokenAsync"):
            assert (stats[name].delivered, stats[name].dropped, stats[name].failed) == (
                0,
                0,
                total,
            )
            errors = [
                r
                for r in caplog.records
                if r.levelno >= logging.ERROR and f"'{name}'" in r.getMessage()
            ]
            # Logged with its name (and a traceback), but not once per event.
            assert len(errors) == 1, [r.getMessage() for r in errors]
            assert errors[0].exc_info is not None
        assert (stats["Recorder"].delivered, stats["Recorder"].failed) == (total, 0)


class _ConstructionSpy:
    """Stands in for EventModel where events are built (framework._runtime), recording every
    construction."""

    def __init__(self) -> None:
        self.built: list[dict[str, Any]] = []

    def __call__(self, **fields: Any) -> EventModel:
        self.built.append(fields)
        return EventModel(**fields)


@pytest.mark.anyio
async def test_no_event_is_built_without_a_publisher(monkeypatch: pytest.MonkeyPatch) -> None:
    with anyio.fail_after(10):
        spy = _ConstructionSpy()
        monkeypatch.setattr(framework._runtime, "EventModel", spy)

        class OnlyCompletions:
            def __init__(self) -> None:
                self.seen: list[str] = []

            @hookimpl
            def on_job_completed(self, response: Any) -> None:
                self.seen.append(response.job_id)

        other = OnlyCompletions()
        runner, ids = await run_exercise(plugins=[other])
        assert runner.events_enabled is False
        assert runner.event_stats() == {}
        assert sorted(other.seen) == sorted(ids.values())
        assert spy.built == []


@pytest.mark.anyio
async def test_the_construction_spy_sees_events_when_a_publisher_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Control for the test above: the spy sits where the runner really builds events.
    with anyio.fail_after(10):
        spy = _ConstructionSpy()
        monkeypatch.setattr(framework._runtime, "EventModel", spy)
        recorder = Recorder()
        await run_exercise(plugins=[recorder])
        assert len(spy.built) == len(recorder.events) > 10


class SlowPublisher:
    """Takes a little time per event: the runner must wait for it when it ends."""

    def __init__(self) -> None:
        self.events: list[EventModel] = []

    @hookimpl
    async def publish_event(self, event: EventModel) -> None:
        await anyio.sleep(0.002)
        self.events.append(event)


@pytest.mark.anyio
async def test_ending_waits_for_slow_publishers_and_accounts_for_every_event() -> None:
    with anyio.fail_after(10):
        slow = SlowPublisher()
        fast = Recorder()
        async with WorkerRunner(plugins=[slow, fast], event_drain_timeout=5) as runner:
            await runner.add_worker(Demo("demo"))
            for _ in range(30):
                async with runner.job("demo", name="ok"):
                    pass
        stats = runner.event_stats()["SlowPublisher"]
        assert stats.delivered + stats.dropped + stats.failed == len(fast.events)
        assert slow.events == fast.events
        assert slow.events[-1].event_type is EventType.END


# ----------------------------------------------------------------- listen_events


@pytest.mark.anyio
async def test_listen_events_builds_events_only_while_someone_listens() -> None:
    class Echo(BaseWorker):
        @job
        async def default(self, job: Job) -> dict[str, Any]:
            return {}

    seen: list[EventModel] = []
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Echo("echo"))
            with pytest.raises(RuntimeError, match="running runner"):
                WorkerRunner().listen_events(seen.append)
            assert runner.events_enabled is False
            async with runner.job("echo"):
                pass
            stop = runner.listen_events(seen.append)
            assert runner.events_enabled is True
            async with runner.job("echo") as watched:
                pass
            stop()
            assert runner.events_enabled is False
            async with runner.job("echo"):
                pass
    assert {e.thread_id for e in seen} == {watched.job_id}
    assert [e.event_type for e in seen] == [EventType.START, EventType.RESULT]


@pytest.mark.anyio
async def test_a_listener_that_raises_is_removed_and_jobs_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Echo(BaseWorker):
        @job
        async def default(self, job: Job) -> dict[str, Any]:
            return {}

    def broken(event: EventModel) -> None:
        raise ValueError("listener bug")

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Echo("echo"))
            runner.listen_events(broken)
            async with runner.job("echo") as first:
                pass
            async with runner.job("echo") as second:
                pass
    assert first.status is second.status is JobStatus.COMPLETED
    assert "event listener" in caplog.text and "listener bug" in caplog.text
    assert caplog.text.count("it is removed") == 1
