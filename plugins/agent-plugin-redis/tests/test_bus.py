"""The Redis bus in one process: several runners, each with its own ``RedisBus`` on one
real redis-server, exchanging jobs as runners on different machines would."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis._settings import RedisBusSettings
from agent_plugin_redis.bus import RedisBus, RedisUnavailableError
from conftest import RedisServer, free_port

from framework import (
    BaseWorker,
    Job,
    JobError,
    JobFailed,
    JobGroupError,
    JobStatus,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRunner,
    hookimpl,
    job,
)
from framework.bus.messages import JobRequestMessage
from framework.bus.network.wire import Bye, Heartbeat, RoutedEncoder, encode_envelope

pytestmark = pytest.mark.anyio

MAY_HAVE_RUN = ": the job may or may not have run"
"""How a job ended by the loss of its runner ends its reason (its outcome is unknown)."""


# --------------------------------------------------------------------------- helpers


class Echo(BaseWorker):
    """Answers with its payload and the runner that ran it; other jobs for other cases."""

    def __init__(self, name: str = "echo") -> None:
        super().__init__(name)
        self.seen: list[str] = []
        self.started = anyio.Event()
        self.cancelled: list[str] = []
        self.slow_jobs: list[str] = []

    @job
    async def echo(self, j: Job) -> dict[str, Any]:
        self.seen.append(j.job_id)
        return {"payload": j.payload, "runner": self.runner.name, "requester": j.requester}

    @job(name="slow")
    async def slow(self, j: Job) -> dict[str, Any]:
        self.slow_jobs.append(j.job_id)
        self.started.set()
        try:
            await anyio.sleep(j.payload.get("seconds", 30))
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(j.job_id)
            raise
        return {"slept": True}

    @job(name="stream")
    async def stream(self, j: Job) -> AsyncIterator[Any]:
        for i in range(j.payload["n"]):
            yield {"i": i}
        yield "last"

    @job(name="progress")
    async def progress(self, j: Job) -> dict[str, Any]:
        for step in (1, 2, 3):
            await j.update({"step": step})
        return {"done": 3}

    @job(name="fail")
    async def fail(self, j: Job) -> dict[str, Any]:
        raise JobFailed("no can do", {"code": 7})

    @job(name="crash")
    async def crash(self, j: Job) -> dict[str, Any]:
        raise RuntimeError("kaboom")

    @job(name="big")
    async def big(self, j: Job) -> dict[str, Any]:
        return {"blob": "x" * j.payload["size"]}

    async def on_job_update_requested(self, j: Job) -> None:
        await j.update({"asked": True})


class Recorder:
    """A plugin: what the runner's notification hooks saw."""

    def __init__(self) -> None:
        self.ready: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []

    @hookimpl
    def on_worker_ready(self, data: WorkerReadyData, runner: WorkerRunner) -> None:
        self.ready.append((data.worker_name, data.runner))

    @hookimpl
    def on_worker_failed(self, error: WorkerErrorData, runner: WorkerRunner) -> None:
        self.failed.append((error.worker_name, error.error))


class Watcher(BaseWorker):
    """Watches "echo": its ready and error callbacks, as a worker sees a remote worker."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen_ready: list[str] = []
        self.errors: list[tuple[str, str]] = []

    async def on_ready(self) -> None:
        await self.watch_worker("echo")

    async def on_worker_ready(self, data: WorkerReadyData) -> None:
        self.seen_ready.append(f"{data.worker_name}@{data.runner}")

    async def on_worker_error(self, data: WorkerErrorData) -> None:
        self.errors.append((data.worker_name, data.error))


class Gate(BaseWorker):
    """Its jobs run until ``release`` is set; each answers its payload, or ``{"done": True}``
    when it has none."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.release = anyio.Event()
        self.running = anyio.Event()

    @job
    async def wait(self, j: Job) -> dict[str, Any]:
        self.running.set()
        await self.release.wait()
        return dict(j.payload) or {"done": True}


class Proxy:
    """A TCP relay to redis-server, for one runner: ``cut()`` closes every connection
    through it (as a network blip would); new ones are relayed again at once."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = 0
        self._scopes: set[anyio.CancelScope] = set()
        self._frozen: set[anyio.CancelScope] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, self._relay)
            yield self
            tg.cancel_scope.cancel()

    def cut(self) -> None:
        for scope in list(self._scopes):
            scope.cancel()

    def freeze(self) -> None:
        """Stop relaying on every open connection, keeping the sockets open (a link that
        hangs without an error); new connections are relayed again."""
        self._frozen.update(self._scopes)

    async def _relay(self, client: anyio.abc.SocketStream) -> None:
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                async with client, await anyio.connect_tcp("127.0.0.1", self.target) as server:

                    async def pump(src: anyio.abc.ByteStream, dst: anyio.abc.ByteStream) -> None:
                        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                            async for chunk in src:
                                if scope in self._frozen:
                                    await anyio.sleep_forever()
                                await dst.send(chunk)
                        scope.cancel()

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(pump, client, server)
                        tg.start_soon(pump, server, client)
            finally:
                self._scopes.discard(scope)


def bus_of(runner: WorkerRunner) -> RedisBus:
    assert isinstance(runner.bus, RedisBus)
    return runner.bus


def namespace_of(url: str) -> str:
    return RedisBusSettings.from_url(url).namespace


def plain_url(url: str) -> str:
    """The redis-py URL of a bus URL (our parameters removed), for a raw client."""
    return RedisBusSettings.from_url(url).url


@contextlib.asynccontextmanager
async def runners(
    url: str, *names: str, recorders: dict[str, Recorder] | None = None, grace: float = 1.0
) -> AsyncIterator[list[WorkerRunner]]:
    """Start one runner per name, each with its own RedisBus on ``url``."""
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for name in names:
            plugins = [recorders[name]] if recorders and name in recorders else []
            runner = WorkerRunner(name, bus=RedisBus(url), plugins=plugins, grace_period=grace)
            started.append(await stack.enter_async_context(runner))
        yield started


async def eventually(check: Callable[[], bool], timeout: float = 3.0, what: str = "") -> None:
    """Poll ``check`` until it is true; fail (not hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout} s: {what or check}")
        await anyio.sleep(0.01)


async def run_job(
    runner: WorkerRunner | BaseWorker, worker: str, **kwargs: Any
) -> tuple[JobStatus | None, dict[str, Any] | None]:
    """One job; its status and response, whatever the outcome."""
    ctx = runner.job(worker, **kwargs)
    with contextlib.suppress(JobError):
        async with ctx:
            pass
    return ctx.status, ctx.response


# --------------------------------------------------------------------------- jobs


async def test_job_between_two_runners(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            assert a.registry.remote_workers == ["echo"]
            assert a.registry.get("echo") == WorkerReadyData(
                worker_name="echo", runner="b", jobs=tuple(echo.describe())
            )
            async with a.job("echo", payload={"text": "hi", "n": [1, 2.5, None]}) as j:
                pass
            assert j.status is JobStatus.COMPLETED
            assert j.response == {
                "payload": {"text": "hi", "n": [1, 2.5, None]},
                "runner": "b",
                "requester": "a",
            }


async def test_failed_and_crashed_jobs_keep_their_status_and_error(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            with pytest.raises(JobError) as failed:
                async with a.job("echo", name="fail"):
                    pass
            assert failed.value.status is JobStatus.FAILED
            assert failed.value.response == {"code": 7, "error": "no can do"}
            with pytest.raises(JobError) as crashed:
                async with a.job("echo", name="crash"):
                    pass
            assert crashed.value.status is JobStatus.ERROR
            assert crashed.value.response == {"error": "RuntimeError: kaboom"}


async def test_worker_to_worker_across_runners(redis_url: str) -> None:
    """A worker's handler asks a worker on another runner: the reply finds the worker."""

    class Front(BaseWorker):
        @job
        async def ask(self, j: Job) -> dict[str, Any]:
            async with self.job("echo", payload={"from": self.name}) as inner:
                pass
            return {"inner": inner.response}

    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            await b.add_worker(Front("front"))
            await c.add_worker(Echo("echo"))
            await a.registry.wait_ready("front")
            async with a.job("front") as j:
                pass
            assert j.response == {
                "inner": {"payload": {"from": "front"}, "runner": "c", "requester": "front"}
            }


async def test_a_job_waits_for_a_worker_that_appears_later_on_another_runner(
    redis_url: str,
) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            result: list[Any] = []

            async def ask() -> None:
                result.append(await run_job(a, "late", payload={"k": 1}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await anyio.sleep(0.3)
                assert result == []
                await b.add_worker(Echo("late"))
            assert result[0][0] is JobStatus.COMPLETED
            assert result[0][1]["runner"] == "b"


async def test_job_group_spanning_three_runners(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            await a.add_worker(Echo("here"))
            await b.add_worker(Echo("there"))
            await c.add_worker(Echo("yonder"))
            for name in ("there", "yonder"):
                await a.registry.wait_ready(name)
            async with a.job_group("here", "there", "yonder", name="progress") as group:
                events = [(e.type, e.worker_name, e.data) async for e in group]
            assert group.statuses == dict.fromkeys(("here", "there", "yonder"), JobStatus.COMPLETED)
            assert group.responses == {m: {"done": 3} for m in ("here", "there", "yonder")}
            for member in ("here", "there", "yonder"):
                mine = [data for kind, worker, data in events if worker == member]
                assert mine == [{"step": 1}, {"step": 2}, {"step": 3}]


async def test_a_failing_group_member_cancels_the_others_on_their_runners(redis_url: str) -> None:
    """cancel_on_error: one member FAILED on runner b; the slow member on runner c is
    cancelled there (its handler sees the cancellation) and ends CANCELLED."""

    class Mixed(Echo):
        @job(name="mixed")
        async def mixed(self, j: Job) -> dict[str, Any]:
            if self.name == "bad":
                await self.peer_started.wait()
                raise JobFailed("bad member")
            return await self.slow(j)

    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            good, bad = Mixed("good"), Mixed("bad")
            bad.peer_started = good.started  # type: ignore[attr-defined]
            await b.add_worker(bad)
            await c.add_worker(good)
            for name in ("good", "bad"):
                await a.registry.wait_ready(name)
            with pytest.raises(JobGroupError) as caught:
                async with a.job_group("good", "bad", name="mixed"):
                    pass
            assert caught.value.statuses == {"bad": JobStatus.FAILED, "good": JobStatus.CANCELLED}
            await eventually(lambda: len(good.cancelled) == 1, what="c's job cancelled")


async def test_streaming_handler_across_runners(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            async with a.job("echo", name="stream", payload={"n": 50}) as j:
                events = [(e.type, e.data) async for e in j]
            assert j.status is JobStatus.COMPLETED
            assert j.response == {"chunks": 51}
            assert events[0][0] == "stream_start"
            assert events[-1][0] == "stream_end"
            assert [data for kind, data in events if kind == "stream_data"] == [
                *({"i": i} for i in range(50)),
                "last",
            ]


async def test_updates_and_update_requests_across_runners(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            async with a.job("echo", name="progress") as j:
                updates = [e.data async for e in j if e.type == "update"]
            assert updates == [{"step": 1}, {"step": 2}, {"step": 3}]
            assert j.response == {"done": 3}

            async with a.job("echo", name="slow", payload={"seconds": 0.5}) as j:
                await echo.started.wait()
                await a.request_job_update(j.job_id, "echo")
                async for event in j:
                    assert (event.type, event.data) == ("update", {"asked": True})
                    break
            assert j.status is JobStatus.COMPLETED


async def test_cancel_across_runners(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            with pytest.raises(JobError) as caught:
                async with a.job("echo", name="slow") as j:
                    await echo.started.wait()
                    assert await a.cancel_job(j.job_id, reason="changed my mind")
            assert caught.value.status is JobStatus.CANCELLED
            # The answer came from the worker on b, which was really cancelled.
            assert caught.value.response == {"error": "changed my mind"}
            await eventually(lambda: echo.cancelled == [j.job_id], what="handler cancelled")
            assert echo.active_jobs == {}


async def test_cancel_sent_right_after_the_request(redis_url: str) -> None:
    """A cancel sent at once after the request: the job ends CANCELLED, and if the handler
    had started it was cancelled (it never runs to its end)."""
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            with pytest.raises(JobError) as caught:
                async with a.job("echo", name="slow") as j:
                    await a.cancel_job(j.job_id, reason="never mind")
            assert caught.value.status is JobStatus.CANCELLED
            await anyio.sleep(0.2)
            assert echo.active_jobs == {}
            assert set(echo.slow_jobs) <= set(echo.cancelled)


async def test_timeout_on_a_remote_job_cancels_it_there(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            start = time.monotonic()
            with pytest.raises(JobError) as caught:
                async with a.job("echo", name="slow", timeout=0.3):
                    pass
            assert 0.3 <= time.monotonic() - start < 2.0
            assert caught.value.timed_out
            assert caught.value.status is JobStatus.CANCELLED
            await eventually(lambda: len(echo.cancelled) == 1, what="remote handler cancelled")


async def test_timeout_waiting_for_a_worker_no_runner_hosts(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, _b):
            with pytest.raises(JobError) as caught:
                async with a.job("ghost", timeout=0.3):
                    pass
            assert caught.value.timed_out and "ghost" in str(caught.value)


async def test_the_bus_settles_one_interval_after_connecting_knowing_the_others(
    redis_url: str,
) -> None:
    """``wait_settled`` returns once the newcomer has heard the runners already there (one
    heartbeat interval, 0.2 s here): their workers are in its registry by then."""
    with anyio.fail_after(10):
        async with runners(redis_url, "a") as (a,):
            await a.add_worker(Echo("echo"))
            await anyio.sleep(0.3)
            start = time.monotonic()
            async with runners(redis_url, "b") as (b,):
                await bus_of(b).wait_settled()
                assert 0.15 <= time.monotonic() - start < 2.0
                assert "echo" in b.registry


async def test_framework_run_job_for_a_worker_nobody_hosts_fails_fast(
    redis_url: str, tmp_path: Any
) -> None:
    """``framework run --job`` on the Redis bus: a worker no runner hosts is an error as
    soon as the bus has settled, naming the workers on the bus, not after a 10 s wait."""
    with anyio.fail_after(30):
        async with runners(redis_url, "a") as (a,):
            await a.add_worker(Echo("remote-echo"))
            start = time.monotonic()
            result = await anyio.run_process(
                [
                    sys.executable,
                    "-m",
                    "framework",
                    "run",
                    "--bus",
                    redis_url,
                    "--job",
                    "remote-ech",
                ],
                cwd=tmp_path,
                check=False,
            )
            elapsed = time.monotonic() - start
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    assert elapsed < 6, f"took {elapsed:.1f} s: it waited for the worker instead"
    assert "no worker named 'remote-ech'" in stderr, stderr
    assert "did you mean 'remote-echo'?" in stderr, stderr


# --------------------------------------------------------------------------- registry


async def test_remote_workers_and_the_ready_hook(redis_url: str) -> None:
    recorders = {"a": Recorder(), "b": Recorder()}
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b", recorders=recorders) as (a, b):
            await a.add_worker(Echo("mine"))
            await b.add_worker(Echo("theirs-1"))
            await b.add_worker(Echo("theirs-2"))
            await a.registry.wait_ready("theirs-1")
            await a.registry.wait_ready("theirs-2")
            await b.registry.wait_ready("mine")
            assert a.registry.local_workers == ["mine"]
            assert sorted(a.registry.remote_workers) == ["theirs-1", "theirs-2"]
            assert b.registry.remote_workers == ["mine"]
            assert a.registry.get("theirs-2") == WorkerReadyData(
                worker_name="theirs-2", runner="b", jobs=tuple(Echo().describe())
            )
            # Each runner's hook fired once per worker, remote ones included, with the
            # hosting runner's name.
            await anyio.sleep(0.5)  # a few heartbeats: they must not fire it again
            assert sorted(recorders["a"].ready) == [
                ("mine", "a"),
                ("theirs-1", "b"),
                ("theirs-2", "b"),
            ]
            assert sorted(recorders["b"].ready) == [
                ("mine", "a"),
                ("theirs-1", "b"),
                ("theirs-2", "b"),
            ]
            assert recorders["a"].failed == recorders["b"].failed == []


async def test_a_runner_started_later_learns_the_workers_at_once(redis_url: str) -> None:
    """A newcomer says hello; the others answer with a heartbeat at once, so the newcomer
    does not wait a heartbeat interval (here a long one) to learn their workers."""
    slow_url = redis_url.replace("heartbeat=0.2", "heartbeat=5")
    with anyio.fail_after(10):
        async with runners(slow_url, "a") as (a,):
            await a.add_worker(Echo("echo"))
            await anyio.sleep(0.1)
            start = time.monotonic()
            async with runners(slow_url, "b") as (b,):
                await b.registry.wait_ready("echo")
                assert time.monotonic() - start < 2.0
                status, _ = await run_job(b, "echo")
                assert status is JobStatus.COMPLETED


async def test_a_worker_that_ends_leaves_the_other_runners(redis_url: str) -> None:
    recorders = {"a": Recorder()}
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b", recorders=recorders) as (a, b):
            echo, other = Echo("echo"), Echo("other")
            await b.add_worker(echo)
            await b.add_worker(other)
            await a.registry.wait_ready("echo")
            await a.registry.wait_ready("other")
            await echo.end()
            await eventually(lambda: "echo" not in a.registry, 2.0, "echo gone from a")
            assert a.registry.remote_workers == ["other"]
            # An ordinary end is not a failure; the other worker still serves.
            assert recorders["a"].failed == []
            assert (await run_job(a, "other"))[0] is JobStatus.COMPLETED
            # A job to the ended worker now waits for it (up to its timeout).
            with pytest.raises(JobError, match="timed out"):
                async with a.job("echo", timeout=0.3):
                    pass


async def test_a_runner_that_ends_takes_its_workers_away_at_once(redis_url: str) -> None:
    """Its bye: the others drop its workers without waiting for missed heartbeats (which
    would take 10 s at heartbeat=1, misses=10), and its jobs end, none hangs."""
    url = redis_url.replace("heartbeat=0.2", "heartbeat=1&misses=10")
    recorders = {"a": Recorder()}
    with anyio.fail_after(10):
        async with runners(url, "a", recorders=recorders) as (a,):
            results: list[Any] = []
            async with anyio.create_task_group() as tg:
                async with runners(url, "b", grace=0.2) as (b,):
                    echo = Echo("echo")
                    await b.add_worker(echo)
                    await b.add_worker(Echo("spare"))
                    await a.registry.wait_ready("echo")
                    await a.registry.wait_ready("spare")

                    async def ask() -> None:
                        results.append(await run_job(a, "echo", name="slow"))

                    tg.start_soon(ask)
                    await echo.started.wait()
                    start = time.monotonic()
                # b ended here (its 'async with' left): its bye is out.
                await eventually(
                    lambda: a.registry.remote_workers == [], 1.0, "b's workers gone from a"
                )
            assert time.monotonic() - start < 2.0
            (status, response) = results[0]
            assert status in (JobStatus.CANCELLED, JobStatus.ERROR)
            assert response is not None and response["error"]
            # An ending runner is not a failure.
            assert recorders["a"].failed == []


async def test_a_bye_ends_the_jobs_of_its_runner_error(redis_url: str) -> None:
    """A runner that ends with a job of ours it never answered (here a bare runner speaking
    the wire protocol through redis-py): the job ends ERROR "runner <name> ended" at once."""
    ns = namespace_of(redis_url)
    url = redis_url.replace("heartbeat=0.2", "heartbeat=1&misses=10")
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(url, "a") as (a,):
            beat = Heartbeat(runner="ghost", instance="g1", interval=1, misses=10, workers=["w"])
            await client.publish(f"{ns}:all", encode_envelope(beat))
            await a.registry.wait_ready("w")
            pubsub = client.pubsub()
            await pubsub.subscribe(f"{ns}:runner:ghost")
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    results.append(await run_job(a, "w"))

                tg.start_soon(ask)
                request = await _next_message(pubsub)
                assert request["kind"] == "msg" and request["origin"] == "a"
                assert request["message"]["type"] == "job_request"
                await client.publish(
                    f"{ns}:all", encode_envelope(Bye(runner="ghost", instance="g1"))
                )
            assert results == [
                (
                    JobStatus.ERROR,
                    {"error": "runner ghost ended" + MAY_HAVE_RUN, "outcome": "unknown"},
                )
            ]
            await eventually(lambda: "w" not in a.registry, 1.0, "w gone from a")
            await pubsub.aclose()


async def _next_message(pubsub: Any, timeout: float = 3.0) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=timeout)
            if item is not None and item["type"] == "message":
                return json.loads(item["data"])  # type: ignore[no-any-return]


async def test_a_bye_from_an_old_instance_is_ignored(redis_url: str) -> None:
    """A restarted runner's old instance saying bye late must not remove the new one."""
    ns = namespace_of(redis_url)
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            await client.publish(f"{ns}:all", encode_envelope(Bye(runner="b", instance="not-b's")))
            await anyio.sleep(0.3)
            assert "echo" in a.registry
            assert (await run_job(a, "echo"))[0] is JobStatus.COMPLETED


async def test_a_silent_runner_is_lost(redis_url: str) -> None:
    """Runner b's bus dies without a bye (its task group cancelled, as if its process
    froze): a drops b's workers after misses * heartbeat, the job b had ends ERROR
    "runner b lost", and on_worker_failed fires for each of b's workers."""
    recorders = {"a": Recorder()}
    with anyio.fail_after(10):
        async with (
            runners(redis_url, "a", recorders=recorders) as (a,),
            runners(redis_url, "b") as (b,),
        ):
            watcher = Watcher("watcher")
            await a.add_worker(watcher)
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            await eventually(lambda: watcher.seen_ready == ["echo@b"], 1.0, "watcher told")
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    results.append(await run_job(a, "echo", name="slow"))

                tg.start_soon(ask)
                await echo.started.wait()
                b_bus = bus_of(b)
                assert b_bus._tg is not None
                b_bus._tg.cancel_scope.cancel()  # heartbeats and readers stop, no bye
                start = time.monotonic()
            # Lost once silent for more than misses * heartbeat = 0.6 s (its last beat may
            # have gone out up to 0.2 s before the bus stopped).
            lost_after = time.monotonic() - start
            assert 0.35 < lost_after < 3.0
            assert results == [
                (JobStatus.ERROR, {"error": "runner b lost" + MAY_HAVE_RUN, "outcome": "unknown"})
            ]
            await eventually(lambda: "echo" not in a.registry, 1.0, "echo gone from a")
            await eventually(lambda: recorders["a"].failed != [], 1.0, "on_worker_failed")
            assert recorders["a"].failed == [("echo", "runner b lost")]
            await eventually(lambda: watcher.errors == [("echo", "runner b lost")], 1.0)


async def test_a_restarted_runner_ends_the_old_instances_jobs(redis_url: str) -> None:
    """Runner b dies without a bye and a new process named b starts before it counts as
    lost: its new instance id tells a that the old one is gone, so the job the old one had
    ends ERROR at once, and new jobs go to the new b."""
    url = redis_url.replace("heartbeat=0.2", "heartbeat=1&misses=10")
    with anyio.fail_after(10):
        async with runners(url, "a") as (a,), runners(url, "b") as (old,):
            echo = Echo("echo")
            await old.add_worker(echo)
            await a.registry.wait_ready("echo")
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    results.append(await run_job(a, "echo", name="slow"))

                tg.start_soon(ask)
                await echo.started.wait()
                assert bus_of(old)._tg is not None
                bus_of(old)._tg.cancel_scope.cancel()  # the old b is gone, without a bye
                start = time.monotonic()
                async with runners(url, "b") as (new,):
                    await new.add_worker(Echo("echo"))
                    with anyio.fail_after(3):
                        while not results:
                            await anyio.sleep(0.01)
                    assert time.monotonic() - start < 3.0
                    ((status, response),) = results
                    assert status is JobStatus.ERROR and response is not None
                    assert "runner b" in response["error"], response
                    assert "restarted" in response["error"], response
                    await a.registry.wait_ready("echo")
                    status, response = await run_job(a, "echo", timeout=5)
                    assert status is JobStatus.COMPLETED and response is not None
                    assert response["runner"] == "b"


async def test_namespaces_keep_systems_apart(redis_url: str) -> None:
    other = redis_url.replace("namespace=", "namespace=other")
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b), runners(other, "x") as (x,):
            await b.add_worker(Echo("echo"))
            await x.add_worker(Echo("elsewhere"))
            await a.registry.wait_ready("echo")
            await anyio.sleep(0.4)  # two heartbeats
            assert a.registry.remote_workers == ["echo"]
            assert x.registry.remote_workers == []
            with pytest.raises(JobError, match="timed out"):
                async with x.job("echo", timeout=0.2):
                    pass


async def test_two_runners_with_one_name_are_reported(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="agent_plugin_redis.bus")
    with anyio.fail_after(10):
        async with runners(redis_url, "twin") as _first, runners(redis_url, "twin") as _second:
            await eventually(
                lambda: any(
                    "another runner named 'twin'" in r.getMessage() for r in caplog.records
                ),
                2.0,
                "the clash logged",
            )


# --------------------------------------------------------------------------- routing


async def test_routing_is_targeted(redis_url: str) -> None:
    """Job traffic between a and b goes on their own channels only: a third runner's
    channel carries none of it (at most the descriptions owed to a newcomer), and the
    broadcast channel carries heartbeats, descriptions and byes."""
    ns = namespace_of(redis_url)
    marker = uuid.uuid4().hex
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client:
            spy = client.pubsub()
            await spy.subscribe(f"{ns}:runner:c", f"{ns}:all")
            await spy.psubscribe(f"{ns}:runner:*")
            async with runners(redis_url, "a", "b", "c") as (a, b, c):
                await b.add_worker(Echo("echo"))
                await a.registry.wait_ready("echo")
                await c.registry.wait_ready("echo")
                for i in range(20):
                    status, response = await run_job(a, "echo", payload={"m": marker, "i": i})
                    assert status is JobStatus.COMPLETED and response is not None
                async with a.job("echo", name="stream", payload={"n": 5, "m": marker}) as j:
                    pass
                assert j.status is JobStatus.COMPLETED
            seen: dict[str, list[bytes]] = {}
            while (item := await spy.get_message(timeout=0.2)) is not None:
                if item["type"] in ("message", "pmessage"):
                    key = item["channel"].decode() + (" (pattern)" if item["pattern"] else "")
                    seen.setdefault(key, []).append(item["data"])
            await spy.aclose()
        # The job traffic did travel: requests on b's channel, replies on a's.
        on_b = seen.get(f"{ns}:runner:b (pattern)", [])
        on_a = seen.get(f"{ns}:runner:a (pattern)", [])
        assert sum(marker.encode() in data for data in on_b) == 21
        assert any(b'"job_response"' in data for data in on_a)
        assert any(b'"job_stream_data"' in data for data in on_a)
        # c's channel: no job traffic (nobody had business with c); b may have described
        # echo there, had c joined after b first described it.
        for key in (f"{ns}:runner:c", f"{ns}:runner:c (pattern)"):
            assert {json.loads(data)["kind"] for data in seen.get(key, [])} <= {"desc"}
        # The broadcast channel: heartbeats, descriptions and byes only.
        broadcast = [json.loads(data) for data in seen[f"{ns}:all"]]
        assert {envelope["kind"] for envelope in broadcast} == {"hb", "desc", "bye"}
        assert {e["runner"] for e in broadcast if e["kind"] == "bye"} == {"a", "b", "c"}
        assert all(marker.encode() not in data for data in seen[f"{ns}:all"])


@pytest.mark.parametrize("in_flight", [50, 200])
async def test_replicas_share_the_jobs_each_answered_once(redis_url: str, in_flight: int) -> None:
    """200 jobs from a to a worker that b and c both host, ``in_flight`` at a time: each is
    run by exactly one replica and answered once, and both replicas take some."""
    limit = anyio.CapacityLimiter(in_flight)
    with anyio.fail_after(20):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            one, two = Echo("echo"), Echo("echo")
            await b.add_worker(one)
            await c.add_worker(two)
            # Wait until a knows both replicas (so it uses the worker's stream).
            await eventually(
                lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"}, what="both replicas known"
            )
            results: dict[int, tuple[Any, Any]] = {}

            async def ask(i: int) -> None:
                async with limit:
                    results[i] = await run_job(a, "echo", payload={"i": i}, timeout=15)

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(ask, i)
            assert len(results) == 200
            errors = {str(r) for s, r in results.values() if s is not JobStatus.COMPLETED}
            assert errors == set()
            assert all(response["payload"] == {"i": i} for i, (_, response) in results.items())
            by_runner = [response["runner"] for _, response in results.values()]
            assert by_runner.count("b") == len(one.seen) > 0
            assert by_runner.count("c") == len(two.seen) > 0
            handled = one.seen + two.seen
            assert len(handled) == len(set(handled)) == 200  # exactly once each
            # Every entry was acknowledged and deleted: the stream does not grow.
            ns = bus_of(a).settings.namespace
            client = aioredis.Redis.from_url(plain_url(redis_url))
            async with client:
                stream = f"{ns}:worker:echo"
                with anyio.fail_after(2):
                    while await client.xlen(stream):
                        await anyio.sleep(0.02)
                assert (await client.xpending(stream, "workers"))["pending"] == 0


async def test_many_concurrent_requests_to_one_remote_worker(redis_url: str) -> None:
    """200 jobs at once from one runner to a worker on another: each is sent and answered
    (the bus must not refuse sends because many are in flight at the same moment)."""
    with anyio.fail_after(20):
        async with runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            results: dict[int, tuple[Any, Any]] = {}

            async def ask(i: int) -> None:
                results[i] = await run_job(a, "echo", payload={"i": i}, timeout=10)

            async with anyio.create_task_group() as tg:
                for i in range(200):
                    tg.start_soon(ask, i)
            errors = {str(r) for s, r in results.values() if s is not JobStatus.COMPLETED}
            assert errors == set()
            assert len(echo.seen) == 200


async def test_many_replies_at_once_from_one_runner(redis_url: str) -> None:
    """200 jobs running on b finish at the same moment: every response reaches a. (A
    response lost on the way leaves its requester waiting for ever when it set no
    timeout; here a 3 s timeout turns that into CANCELLED "timed out".)"""

    with anyio.fail_after(20):
        async with runners(redis_url, "a", "b") as (a, b):
            gate = Gate("gate")
            await b.add_worker(gate)
            await a.registry.wait_ready("gate")
            results: dict[int, tuple[Any, Any]] = {}

            async def ask(i: int) -> None:
                results[i] = await run_job(a, "gate", payload={"i": i}, timeout=3)

            async with anyio.create_task_group() as tg:
                for batch in range(5):  # requests 40 at a time: only the replies pile up
                    for i in range(batch * 40, batch * 40 + 40):
                        tg.start_soon(ask, i)
                    await eventually(lambda n=batch * 40 + 40: len(gate.active_jobs) == n)
                gate.release.set()
            errors = {str(r) for s, r in results.values() if s is not JobStatus.COMPLETED}
            assert errors == set()
            assert all(response == {"i": i} for i, (_, response) in results.items())


async def test_when_one_replica_ends_the_other_takes_the_jobs(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            one, two = Echo("echo"), Echo("echo")
            await b.add_worker(one)
            await c.add_worker(two)
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"})
            await one.end()
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"c"})
            assert "echo" in a.registry  # still reachable: through c
            for _ in range(5):
                status, response = await run_job(a, "echo", timeout=5)
                assert status is JobStatus.COMPLETED and response is not None
                assert response["runner"] == "c"


async def test_a_replica_lost_holding_a_job_ends_it_error(redis_url: str) -> None:
    """b takes a job from the worker's stream and goes silent (its bus's task group
    cancelled: no bye): that job ends ERROR "runner b lost" (found in the group's pending
    list), the jobs c took complete, and new jobs go to c."""
    with anyio.fail_after(15):
        async with runners(redis_url, "a", "c") as (a, c), runners(redis_url, "b") as (b,):
            one, two = Echo("echo"), Echo("echo")
            await b.add_worker(one)
            await c.add_worker(two)
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"})
            results: dict[str, tuple[Any, Any]] = {}
            async with anyio.create_task_group() as tg:

                async def ask(i: int) -> None:
                    ctx = a.job("echo", name="slow", payload={"seconds": 1.0, "i": i})
                    with contextlib.suppress(JobError):
                        async with ctx:
                            pass
                    results[ctx.job_id] = (ctx.status, ctx.response)

                for i in range(10):  # until b has taken one from the stream
                    tg.start_soon(ask, i)
                    await anyio.sleep(0.05)
                    if one.started.is_set():
                        break
                assert one.started.is_set(), "b took no job from the stream"
                assert bus_of(b)._tg is not None
                bus_of(b)._tg.cancel_scope.cancel()  # b goes silent
            on_b = set(one.slow_jobs)
            assert on_b
            for job_id, (status, response) in results.items():
                if job_id in on_b:
                    assert (status, response) == (
                        JobStatus.ERROR,
                        {"error": "runner b lost" + MAY_HAVE_RUN, "outcome": "unknown"},
                    )
                else:
                    assert status is JobStatus.COMPLETED, response
            status, response = await run_job(a, "echo", timeout=5)
            assert status is JobStatus.COMPLETED and response is not None
            assert response["runner"] == "c"


async def test_cancel_reaches_the_replica_that_took_the_job(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            one, two = Echo("echo"), Echo("echo")
            await b.add_worker(one)
            await c.add_worker(two)
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"})
            with pytest.raises(JobError) as caught:
                async with a.job("echo", name="slow") as j:
                    with anyio.fail_after(3):
                        while not (one.started.is_set() or two.started.is_set()):
                            await anyio.sleep(0.01)
                    await a.cancel_job(j.job_id, reason="stop it")
            assert caught.value.status is JobStatus.CANCELLED
            assert caught.value.response == {"error": "stop it"}
            await eventually(lambda: one.cancelled + two.cancelled == [j.job_id])


async def test_a_replica_ending_leaves_new_jobs_to_the_other(redis_url: str) -> None:
    """A rolling restart: replica b's worker ends gracefully (it finishes its running job
    within the grace period) while replica c serves on. Jobs asked meanwhile are served
    by c; none is refused because b's copy is ending."""
    with anyio.fail_after(15):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            one, two = Echo("echo"), Echo("echo")
            await b.add_worker(one)
            await c.add_worker(two)
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"})
            async with anyio.create_task_group() as tg:
                first: list[Any] = []

                async def ask_slow() -> None:
                    first.append(await run_job(a, "echo", name="slow", payload={"seconds": 1}))

                for _ in range(10):  # until b has taken a slow job from the stream
                    tg.start_soon(ask_slow)
                    await anyio.sleep(0.05)
                    if one.started.is_set():
                        break
                assert one.started.is_set()
                await one.end(grace_period=3)
                await anyio.sleep(0.05)
                outcomes = [await run_job(a, "echo", timeout=5) for _ in range(20)]
            bad = [(s, r) for s, r in outcomes if s is not JobStatus.COMPLETED]
            assert bad == []
            assert {status for status, _ in first} == {JobStatus.COMPLETED}


# --------------------------------------------------------------------------- bad input


async def test_garbage_on_a_runner_channel_is_dropped(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_url + "&max_message_size=2048"
    ns = namespace_of(url)
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(url))
        async with client, runners(url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            bus = bus_of(b)
            channel = f"{ns}:runner:b"
            unknown_type = json.dumps(
                {
                    "kind": "msg",
                    "origin": "a",
                    "message": {"type": "exec", "source": "a", "target": "echo"},
                }
            )
            misplaced = encode_envelope(
                Heartbeat(runner="x", instance="i", interval=1, misses=3, workers=["evil"])
            )
            cases = [
                (b"\x80\x04pickle", "Invalid JSON"),
                (b"{" + b" " * 3000 + b"}", "over the 2048-byte limit"),
                (unknown_type.encode(), "Input tag 'exec'"),
                (b'{"kind": "bye"}', "Field required"),
                (misplaced, "it belongs on"),
            ]
            for i, (data, reason) in enumerate(cases, start=1):
                caplog.clear()
                await client.publish(channel, data)
                await eventually(lambda i=i: bus.dropped_messages == i, what=f"drop {reason}")
                warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
                assert any(reason in text and "dropped" in text for text in warnings), warnings
            # The misplaced heartbeat did not add a runner, and the runner still serves.
            assert "evil" not in b.registry
            for _ in range(3):
                assert (await run_job(a, "echo"))[0] is JobStatus.COMPLETED
            assert bus_of(a).dropped_messages == 0


async def test_garbage_in_a_worker_stream_is_dropped_and_deleted(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = redis_url + "&max_message_size=2048"
    ns = namespace_of(url)
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(url))
        async with client, runners(url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            bus = bus_of(b)
            stream = f"{ns}:worker:echo"
            unknown = (
                RoutedEncoder("a")
                .encode(JobRequestMessage.build(source="a", target="echo", job_id="x"), stream)
                .replace(b'"job_request"', b'"job_teleport"')
            )
            cases = [
                ({b"m": b"not json at all"}, "Invalid JSON"),
                ({b"m": b"[" + b"1," * 1500 + b"1]"}, "over the 2048-byte limit"),
                ({b"m": unknown}, "Input tag 'job_teleport'"),
                ({b"other": b"field"}, "no data"),
            ]
            for i, (fields, reason) in enumerate(cases, start=1):
                caplog.clear()
                await client.xadd(stream, fields)
                await eventually(lambda i=i: bus.dropped_messages == i, what=f"drop {reason}")
                warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
                assert any(reason in text and "dropped" in text for text in warnings), warnings
            # Acknowledged and deleted: nobody reads them again.
            with anyio.fail_after(3):
                while await client.xlen(stream):
                    await anyio.sleep(0.02)
            assert (await client.xpending(stream, "workers"))["pending"] == 0
            for _ in range(3):
                assert (await run_job(a, "echo"))[0] is JobStatus.COMPLETED


async def test_a_request_over_the_size_limit_ends_error_unsent(redis_url: str) -> None:
    url = redis_url + "&max_message_size=4096"
    with anyio.fail_after(10):
        async with runners(url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            status, response = await run_job(a, "echo", payload={"x": "y" * 5000})
            assert status is JobStatus.ERROR and response is not None
            assert "over the bus's 4096-byte limit" in response["error"]
            assert echo.seen == []
            assert bus_of(b).dropped_messages == 0  # refused when sent, never on the wire


async def test_a_response_over_the_size_limit_becomes_an_error(redis_url: str) -> None:
    url = redis_url + "&max_message_size=4096"
    with anyio.fail_after(10):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            status, response = await run_job(a, "echo", name="big", payload={"size": 5000})
            assert status is JobStatus.ERROR and response is not None
            assert "over the bus's 4096-byte limit" in response["error"]
            status, response = await run_job(a, "echo", name="big", payload={"size": 100})
            assert status is JobStatus.COMPLETED


# --------------------------------------------------------------------------- Redis trouble


async def test_redis_unreachable_at_start_the_bus_says_where() -> None:
    port = free_port()  # nothing listens there
    bus = RedisBus(f"redis://:hunter2@127.0.0.1:{port}/0?heartbeat=0.2")
    bus.attach(WorkerRunner("a", bus=bus))
    with anyio.fail_after(15), pytest.raises(RedisUnavailableError) as caught:
        await bus.start()
    text = str(caught.value)
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in text
    assert "hunter2" not in text
    assert "is redis-server running there" in text


async def test_redis_unreachable_at_start_the_runner_raises_it() -> None:
    """``async with WorkerRunner(bus=RedisBus(url))`` with Redis down raises the bus's
    RedisUnavailableError itself, so ``except RedisUnavailableError`` (or ConnectionError)
    around it works, as it does for an exception raised in the block."""
    port = free_port()
    url = f"redis://:hunter2@127.0.0.1:{port}/0?heartbeat=0.2"
    with anyio.fail_after(15), pytest.raises(RedisUnavailableError) as caught:
        async with WorkerRunner("a", bus=RedisBus(url)):
            pytest.fail("the runner started without Redis")
    assert f"redis://:***@127.0.0.1:{port}/0" in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_a_reply_sent_while_the_runner_reconnects_is_not_lost_for_ever(
    redis_server: RedisServer,
) -> None:
    """Only b's connection to Redis breaks, for a moment, just as its job finishes: the
    requester on a (whose connection is fine) still gets an outcome, the result or an
    ERROR, rather than waiting for ever (here until its 3 s timeout) for a reply that was
    dropped while b was reconnecting."""

    ns = f"t{uuid.uuid4().hex[:12]}"
    with anyio.fail_after(15):
        async with Proxy(redis_server.port).running() as proxy:
            direct = f"redis://127.0.0.1:{redis_server.port}/0?namespace={ns}&heartbeat=0.2"
            relayed = f"redis://127.0.0.1:{proxy.port}/0?namespace={ns}&heartbeat=0.2"
            async with runners(direct, "a") as (a,), runners(relayed, "b") as (b,):
                gate = Gate("gate")
                await b.add_worker(gate)
                await a.registry.wait_ready("gate")
                results: list[Any] = []
                async with anyio.create_task_group() as tg:

                    async def ask() -> None:
                        results.append(await run_job(a, "gate", timeout=3))

                    tg.start_soon(ask)
                    await gate.running.wait()
                    proxy.cut()
                    await eventually(lambda: not bus_of(b)._connected, 1.0, "b disconnected")
                    gate.release.set()  # the response goes out while b reconnects
                # b is back (the relay works again): a new job goes through.
                assert (await run_job(a, "gate", timeout=5))[0] is JobStatus.COMPLETED
                ((status, response),) = results
                assert response != {"error": "timed out"}, "the reply was lost for ever"
                assert status in (JobStatus.COMPLETED, JobStatus.ERROR), response


async def test_start_before_attach_says_what_to_do(redis_url: str) -> None:
    with pytest.raises(RuntimeError, match="WorkerRunner"):
        await RedisBus(redis_url).start()


async def test_redis_outage_mid_traffic(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """redis-server stops while jobs run and comes back on the same port: every job in
    flight ends (ERROR or COMPLETED), none hangs; the runners reconnect, announce their
    workers again, and new jobs work."""
    url = f"{own_redis_server.url}?heartbeat=0.2"
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    with anyio.fail_after(25):
        async with runners(url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            results: list[tuple[Any, Any]] = []

            async def ask(i: int) -> None:
                name = "slow" if i % 2 else None
                results.append(await run_job(a, "echo", name=name, payload={"seconds": 0.5}))

            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(ask, i)
                await echo.started.wait()
                await anyio.to_thread.run_sync(own_redis_server.stop)
                with anyio.fail_after(5):  # every job in flight ends, none waits for Redis
                    while len(results) < 20:
                        await anyio.sleep(0.02)
            statuses = {status for status, _ in results}
            assert statuses <= {JobStatus.COMPLETED, JobStatus.ERROR}
            errors = [r["error"] for s, r in results if s is JobStatus.ERROR]
            assert errors, "the outage ended no job in flight"
            assert all(e.startswith("the connection to Redis was lost (") for e in errors), errors
            # b is forgotten until heard again.
            await eventually(lambda: "echo" not in a.registry, 1.0, "echo gone during outage")

            await anyio.sleep(1.0)
            await anyio.to_thread.run_sync(own_redis_server.start)
            await eventually(lambda: "echo" in a.registry, 8.0, "echo announced again")
            for _ in range(5):
                status, response = await run_job(a, "echo", timeout=5)
                assert status is JobStatus.COMPLETED, response
        assert any("reconnected to Redis" in r.getMessage() for r in caplog.records)


async def test_a_lost_connection_says_why(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The error of a job ended by an outage (and the log line) names what broke (say
    "ConnectionError: Connection closed by server."), not the plumbing around it."""
    url = f"{own_redis_server.url}?heartbeat=0.2"
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    with anyio.fail_after(15):
        async with runners(url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    results.append(await run_job(a, "echo", name="slow"))

                tg.start_soon(ask)
                await echo.started.wait()
                await anyio.to_thread.run_sync(own_redis_server.stop)
            ((status, response),) = results
            assert status is JobStatus.ERROR and response is not None
            error = response["error"]
            assert error.startswith("the connection to Redis was lost (")
            assert "TaskGroup" not in error and "sub-exception" not in error, error
            assert "Error" in error, error
        logged = [r.getMessage() for r in caplog.records if "lost the connection" in r.getMessage()]
        assert logged
        assert all("TaskGroup" not in line for line in logged), logged


async def test_jobs_sent_during_an_outage_wait_for_the_worker(
    own_redis_server: RedisServer,
) -> None:
    """A job asked while Redis is down waits (the worker left the registry) and runs once
    Redis and the worker are back."""
    url = f"{own_redis_server.url}?heartbeat=0.2"
    with anyio.fail_after(25):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            await anyio.to_thread.run_sync(own_redis_server.stop)
            await eventually(lambda: "echo" not in a.registry, 8.0, "echo gone during outage")
            result: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    result.append(await run_job(a, "echo", payload={"k": 1}, timeout=15))

                tg.start_soon(ask)
                await anyio.sleep(0.3)
                assert result == []
                await anyio.to_thread.run_sync(own_redis_server.start)
            assert result[0][0] is JobStatus.COMPLETED, result


async def test_a_link_that_hangs_without_an_error_is_found_and_replaced(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """No socket timeout is set, so a connection that stops carrying data without closing
    is noticed through the runner's own heartbeats: the session ends, the bus reconnects,
    and jobs flow again."""
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    ns = f"t{uuid.uuid4().hex[:12]}"
    with anyio.fail_after(15):
        async with Proxy(redis_server.port).running() as proxy:
            direct = f"redis://127.0.0.1:{redis_server.port}/0?namespace={ns}&heartbeat=0.2"
            relayed = f"redis://127.0.0.1:{proxy.port}/0?namespace={ns}&heartbeat=0.2"
            async with runners(direct, "a") as (a,), runners(relayed, "b") as (b,):
                await b.add_worker(Echo("echo"))
                await a.registry.wait_ready("echo")
                proxy.freeze()
                await eventually(
                    lambda: (
                        "no heartbeat of this runner came back" in caplog.text
                        or "TimeoutError" in caplog.text
                    ),
                    5.0,
                    "b noticed its hung link",
                )
                await eventually(lambda: "reconnected to Redis" in caplog.text, 5.0, "b back")
                await a.registry.wait_ready("echo")
                status, response = await run_job(a, "echo", payload={"n": 1}, timeout=5)
                assert status is JobStatus.COMPLETED, response


async def test_a_runner_name_too_long_for_the_wire_is_a_configuration_error(
    redis_url: str,
) -> None:
    from framework.config import ConfigError

    with anyio.fail_after(5), pytest.raises(ConfigError, match="shorter name") as caught:
        async with WorkerRunner("r" * 300, bus=RedisBus(redis_url)):
            pass
    assert caught.value.key == "name"
