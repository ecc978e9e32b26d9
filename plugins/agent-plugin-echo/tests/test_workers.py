"""The workers of agent-plugin-echo, run on a real runner (the ``framework_runner``
fixture of ``framework.testing``: the in-process bus, every worker the plugin registers,
under its registered name)."""

from __future__ import annotations

import subprocess
import sys

import agent_plugin_echo
import anyio
import pytest

from framework import JobError, JobEvent, JobStatus, WorkerRunner
from framework.testing import MemoryPublisher, make_host

# Every async test body runs under a deadline: a bug makes a test fail, never hang.
TIMEOUT = 5


def test_registers_its_workers() -> None:
    host = make_host(agent_plugin_echo)
    host.collect_registrations()
    assert host.registration_errors == []
    assert host.workers.names_by_plugin("agent_plugin_echo") == ["echo", "reverse", "count"]


def test_each_worker_describes_its_job_and_payload() -> None:
    # describe() is what MCP tools, A2A skills and the assistant's tools say about a worker.
    from agent_plugin_echo.workers import Count, Echo, Reverse

    described = {
        worker.name: [(d.name, d.description) for d in worker.describe()]
        for worker in (Echo("echo"), Reverse("reverse"), Count("count"))
    }
    assert described == {
        "echo": [(None, "Answer with the payload itself: any JSON object, under any job name.")],
        "reverse": [
            (None, 'Reverse a text: the payload {"text": "hi"} is answered with {"text": "ih"}.')
        ],
        "count": [
            (
                None,
                'Count to n: for the payload {"n": 3} (n from 0 to 10000), stream {"n": 1},\n'
                '{"n": 2}, {"n": 3}, with a progress update after each.',
            )
        ],
    }


def test_plugin_module_is_light() -> None:
    # The entry-point module is imported for every `framework` command, --help included:
    # it must not pull in the workers or the runtime.
    code = (
        "import sys, agent_plugin_echo; "
        "heavy = {'agent_plugin_echo.workers', 'framework.worker', 'anyio', 'pydantic'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.anyio
async def test_echo_returns_its_payload(framework_runner: WorkerRunner) -> None:
    with anyio.fail_after(TIMEOUT):
        payload = {"text": "hi", "n": 1, "nested": {"ok": True}}
        async with framework_runner.job("echo", payload=payload) as job:
            pass
        assert job.status == JobStatus.COMPLETED
        assert job.response == payload


@pytest.mark.anyio
async def test_echo_answers_any_job_name(framework_runner: WorkerRunner) -> None:
    with anyio.fail_after(TIMEOUT):
        async with framework_runner.job("echo", name="anything", payload={"a": 1}) as job:
            pass
        assert job.response == {"a": 1}


@pytest.mark.anyio
async def test_reverse(framework_runner: WorkerRunner) -> None:
    with anyio.fail_after(TIMEOUT):
        async with framework_runner.job("reverse", payload={"text": "hello"}) as job:
            pass
        assert job.response == {"text": "olleh"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("payload", "got"),
    [({}, "got no text"), ({"text": 42}, "got int 42"), ({"text": None}, "got NoneType None")],
)
async def test_reverse_without_text_fails(
    framework_runner: WorkerRunner, payload: dict[str, object], got: str
) -> None:
    with anyio.fail_after(TIMEOUT):
        with pytest.raises(JobError) as info:
            async with framework_runner.job("reverse", payload=payload):
                pass
        assert info.value.status == JobStatus.FAILED
        error = info.value.response["error"]
        assert 'reverse needs a string "text"' in error
        assert error.endswith(got)


@pytest.mark.anyio
async def test_count_streams_with_progress(framework_runner: WorkerRunner) -> None:
    with anyio.fail_after(TIMEOUT):
        events: list[tuple[str, object]] = []
        async with framework_runner.job("count", payload={"n": 3}) as job:
            async for event in job:
                events.append((event.type, event.data))
        assert job.response == {"chunks": 3}
        assert [d for t, d in events if t == JobEvent.STREAM_DATA] == [
            {"n": 1},
            {"n": 2},
            {"n": 3},
        ]
        assert [d for t, d in events if t == JobEvent.UPDATE] == [
            {"done": 1, "of": 3},
            {"done": 2, "of": 3},
            {"done": 3, "of": 3},
        ]
        assert events[0] == (JobEvent.STREAM_START, {})
        assert events[-1] == (JobEvent.STREAM_END, {})


@pytest.mark.anyio
async def test_count_zero_streams_nothing(framework_runner: WorkerRunner) -> None:
    with anyio.fail_after(TIMEOUT):
        async with framework_runner.job("count", payload={"n": 0}) as job:
            types = [event.type async for event in job]
        assert types == [JobEvent.STREAM_START, JobEvent.STREAM_END]
        assert job.response == {"chunks": 0}


@pytest.mark.anyio
@pytest.mark.parametrize("n", [None, -1, 10_001, 2.5, "3", True])
async def test_count_validates_n(framework_runner: WorkerRunner, n: object) -> None:
    with anyio.fail_after(TIMEOUT):
        payload = {} if n is None else {"n": n}
        with pytest.raises(JobError) as info:
            async with framework_runner.job("count", payload=payload):
                pass
        assert info.value.status == JobStatus.FAILED
        assert (
            'count needs an integer "n" from 0 to 10000 in its payload'
            in (info.value.response["error"])
        )


@pytest.mark.anyio
async def test_events_are_published(
    framework_runner: WorkerRunner, framework_events: MemoryPublisher
) -> None:
    # framework_events records every event of the framework_runner fixture's run.
    with anyio.fail_after(TIMEOUT):
        async with framework_runner.job("echo", payload={"text": "hi"}):
            pass
        # Events reach a publisher through a buffer: wait for the one to check.
        while not any(
            e.node_name == "echo" and e.data.get("payload") == {"text": "hi"}
            for e in framework_events.events
        ):
            await anyio.sleep(0.01)
