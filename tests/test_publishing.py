"""Delivery to ``publish_event`` impls: a sync impl runs in a thread of its own, off the loop.

A sync impl that is slow or blocks for ever costs only its own events: the jobs keep their
speed, the runner ends on time, and the process can exit while the impl is still stuck.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from publishers import AsyncRecorder, Recorder

from framework import BaseWorker, EventModel, EventType, Job, WorkerRunner, hookimpl, job


class Echo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"echo": job.payload}


class Blocked:
    """A sync publisher whose first call blocks until ``gate`` is set (in practice: for ever)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls = 0

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        self.calls += 1
        # Bounded only so that a runner calling it on the event loop fails the test
        # (fail_after fires once the loop runs again) instead of hanging it.
        self.gate.wait(timeout=5)


class Threads:
    """A sync publisher recording the thread each call runs in."""

    def __init__(self) -> None:
        self.idents: list[int] = []

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        self.idents.append(threading.get_ident())


class AsyncThreads:
    """The same, ``async def``."""

    def __init__(self) -> None:
        self.idents: list[int] = []

    @hookimpl
    async def publish_event(self, event: EventModel) -> None:
        self.idents.append(threading.get_ident())


class SlowRecorder(Recorder):
    """A sync publisher keeping every event, after 3 ms of blocking work on each."""

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        time.sleep(0.003)
        self.events.append(event)


class OddFails:
    """A sync publisher that raises on every event with an odd sequence id."""

    def __init__(self) -> None:
        self.kept: list[int] = []

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        if event.sequence_id % 2:
            raise RuntimeError(f"cannot publish {event.sequence_id}")
        self.kept.append(event.sequence_id)


@pytest.fixture
def blocked() -> Iterator[Blocked]:
    plugin = Blocked()
    yield plugin
    plugin.gate.set()  # let the abandoned thread go


def total_events(jobs: int) -> int:
    """Runner start, worker ready, two per job, runner end."""
    return 1 + 1 + 2 * jobs + 1


@pytest.mark.anyio
async def test_a_sync_publisher_blocked_for_ever_costs_the_jobs_nothing(blocked: Blocked) -> None:
    with anyio.fail_after(10):
        recorder = AsyncRecorder()
        drain = 0.2
        runner = WorkerRunner("r", plugins=[blocked, recorder], event_drain_timeout=drain)
        jobs = 200
        await runner.__aenter__()
        try:
            await runner.add_worker(Echo("w"))
            with anyio.fail_after(3):
                for i in range(jobs):
                    async with runner.job("w", payload={"i": i}) as j:
                        pass
                    assert j.response == {"echo": {"i": i}}
        finally:
            started = time.perf_counter()
            await runner.__aexit__(None, None, None)
            ending = time.perf_counter() - started
        # The end waits for the drain timeout, not for the blocked impl.
        assert ending < runner.grace_period + drain + 1.0
        assert ending < drain + 1.0  # no job was running: no grace period was needed

    total = total_events(jobs)
    assert blocked.calls == 1
    assert not blocked.gate.is_set()
    stats = runner.event_stats()
    assert (stats["Blocked"].delivered, stats["Blocked"].failed) == (0, 0)
    assert stats["Blocked"].dropped == total
    assert (stats["AsyncRecorder"].delivered, stats["AsyncRecorder"].dropped) == (total, 0)
    assert len(recorder.events) == total


@pytest.mark.anyio
async def test_a_sync_impl_runs_in_a_thread_of_its_own_and_an_async_one_on_the_loop() -> None:
    with anyio.fail_after(10):
        first, second, on_loop = Threads(), Threads(), AsyncThreads()
        async with WorkerRunner(plugins=[first, second, on_loop]) as runner:
            await runner.add_worker(Echo("w"))
            for i in range(20):
                async with runner.job("w", payload={"i": i}):
                    pass
        loop_thread = threading.get_ident()
        assert len(first.idents) == len(second.idents) == total_events(20)
        assert set(on_loop.idents) == {loop_thread}
        # One thread per sync impl, the same for all its calls, and not the loop's.
        assert len(set(first.idents)) == len(set(second.idents)) == 1
        assert first.idents[0] != loop_thread
        assert second.idents[0] not in (loop_thread, first.idents[0])


@pytest.mark.anyio
async def test_a_slow_sync_publisher_gets_every_event_in_order_and_counts_right(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(20):
        slow, reference, odd = SlowRecorder(), AsyncRecorder(), OddFails()
        jobs = 100
        runner = WorkerRunner(plugins=[slow, reference, odd], event_drain_timeout=15)
        with caplog.at_level(logging.DEBUG, logger="framework.events"):
            async with runner:
                await runner.add_worker(Echo("w"))
                started = time.perf_counter()
                for i in range(jobs):
                    async with runner.job("w", payload={"i": i}):
                        pass
                # The jobs did not wait for the slow impl (it needs over 0.6 s for them).
                assert time.perf_counter() - started < 0.3
            # It lags behind, then catches up while the runner ends.

    total = total_events(jobs)
    assert slow.events == reference.events
    sequence = [event.sequence_id for event in slow.events]
    assert sequence == list(range(1, total + 1))
    assert slow.events[-1].event_type is EventType.END
    stats = runner.event_stats()
    assert (stats["SlowRecorder"].delivered, stats["SlowRecorder"].dropped) == (total, 0)
    assert stats["SlowRecorder"].failed == 0
    assert odd.kept == [s for s in sequence if s % 2 == 0]
    failures = (total + 1) // 2
    assert (stats["OddFails"].delivered, stats["OddFails"].failed) == (total - failures, failures)
    assert stats["OddFails"].dropped == 0
    # Logged with its traceback once; the following failures at debug level only.
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "'OddFails'" in errors[0].getMessage()
    assert errors[0].exc_info is not None


@pytest.mark.anyio
async def test_a_plain_function_returning_an_awaitable_fails_with_a_clear_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def keep(event: EventModel) -> None:
        pass

    class Confused:
        @hookimpl
        def publish_event(self, event: EventModel) -> Any:
            return keep(event)  # a coroutine nobody in a thread could await

    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[Confused()]) as runner:
            pass
    assert runner.event_stats()["Confused"].failed == 2  # runner start and end
    assert "declare it 'async def'" in caplog.text


CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path

    import anyio

    from framework import BaseWorker, Job, WorkerRunner, job
    from framework.builtins.jsonl import JsonlPublisher


    class Echo(BaseWorker):
        @job
        async def echo(self, job: Job) -> dict:
            return {"echo": job.payload}


    async def main() -> None:
        started = time.perf_counter()
        runner = WorkerRunner(plugins=[JsonlPublisher(Path(sys.argv[1]))], event_drain_timeout=0.2)
        async with runner:
            await runner.add_worker(Echo("w"))
            async with runner.job("w", payload={"x": 1}) as j:
                pass
        stats = runner.event_stats()["JsonlPublisher"]
        print(json.dumps({
            "seconds": time.perf_counter() - started,
            "response": j.response,
            "stats": [stats.delivered, stats.dropped, stats.failed],
        }))


    anyio.run(main)
    """
)


def test_the_jsonl_publisher_on_a_fifo_without_reader_hangs_neither_the_runner_nor_exit(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)  # opening it for writing blocks until a reader opens it: never here
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), str(fifo)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["response"] == {"echo": {"x": 1}}
    # The runner started, ran the job and ended within the drain timeout and a margin...
    assert result["seconds"] < 0.2 + 2.0
    # ...and the process exited although the publisher's thread is still stuck in open().
    assert elapsed < 15
    # Its events are lost and counted: runner start, worker ready, job start and result, end.
    assert result["stats"] == [0, 5, 0]
