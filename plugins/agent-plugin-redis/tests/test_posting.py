"""Posted messages (``PublishLine.post``: a request or reply that goes on without waiting
for Redis's answer) against a real redis-server: the order of what a job sends, refusals,
backpressure, a line that breaks, a runner that stops, and Redis's idle ``timeout``."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis import _publish_line as publish_line_module
from agent_plugin_redis._durable import IDEMPOTENCY_HEADER
from agent_plugin_redis._publish_line import HIGH_WATER, PublishLine
from conftest import RedisServer, channel_limited_user, free_port
from redis.exceptions import ResponseError
from test_bus import Echo, bus_of, run_job, runners
from test_publish_line import _received

from framework import BaseWorker, Job, JobStatus, job

pytestmark = pytest.mark.anyio

CHUNK = 200_000
STEPS = 30


class Chatty(BaseWorker):
    """Jobs that send many large updates or stream items before their response."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.answered = anyio.Event()

    @job(name="dstream", durable=True)
    async def dstream(self, j: Job) -> AsyncIterator[Any]:
        for i in range(STEPS):
            yield {"i": i, "pad": "x" * CHUNK}

    @job(name="dprogress", durable=True)
    async def dprogress(self, j: Job) -> dict[str, Any]:
        return await self.progress(j)

    @job(name="progress")
    async def progress(self, j: Job) -> dict[str, Any]:
        for step in range(STEPS):
            await j.update({"step": step, "pad": "x" * CHUNK})
        self.answered.set()
        return {"done": STEPS}


# --------------------------------------------------------------------------- order


async def test_a_durable_jobs_stream_items_all_come_before_its_response(redis_url: str) -> None:
    """A durable job's response goes by a script on another connection: the stream items
    its worker sent before must not be overtaken by it (and then dropped)."""
    url = redis_url + "&max_message_size=1000000"
    with anyio.fail_after(30):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Chatty("chatty"))
            await a.registry.wait_ready("chatty")
            async with a.job("chatty", name="dstream") as j:
                events = [(e.type, e.data) async for e in j]
            assert j.status is JobStatus.COMPLETED, (j.status, j.response)
            got = [d["i"] for kind, d in events if kind == "stream_data"]
            assert got == list(range(STEPS)), got


@pytest.mark.parametrize("how", ["durable", "idempotency key"])
async def test_updates_all_come_before_a_response_sent_by_script(redis_url: str, how: str) -> None:
    """The same for updates, of a durable job and of a plain one with an idempotency key
    (its response is kept for the key by the same kind of script)."""
    url = redis_url + "&max_message_size=1000000"
    with anyio.fail_after(30):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Chatty("chatty"))
            await a.registry.wait_ready("chatty")
            if how == "durable":
                request = a.job("chatty", name="dprogress")
            else:
                key = f"key-{uuid.uuid4().hex}"
                request = a.job("chatty", name="progress", headers={IDEMPOTENCY_HEADER: key})
            async with request as j:
                updates = [e.data["step"] async for e in j if e.type == "update"]
            assert j.status is JobStatus.COMPLETED, (j.status, j.response)
            assert updates == list(range(STEPS)), updates


async def test_posted_and_awaited_commands_keep_each_senders_order(
    redis_server: RedisServer,
) -> None:
    """Many senders mixing ``post`` and ``publish``, small and larger messages, yielding
    at random: each sender's messages arrive in the order it sent them."""
    client = aioredis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    await pubsub.subscribe("mix")
    line = PublishLine(client)
    await line.open()
    rng = random.Random(1)
    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(line.run)

                async def sender(number: int) -> None:
                    for i in range(200):
                        data = f"{number}:{i}:".encode() + b"p" * rng.choice((10, 3_000))
                        if rng.random() < 0.5:
                            await line.post("mix", data)
                        else:
                            await line.publish("mix", data)
                        if rng.random() < 0.2:
                            await anyio.lowlevel.checkpoint()

                async with anyio.create_task_group() as senders:
                    for number in range(20):
                        senders.start_soon(sender, number)
                got = await _received(pubsub, 20 * 200)
                tg.cancel_scope.cancel()
    finally:
        await line.close()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    for number in range(20):
        mine = [int(m.split(b":")[1]) for m in got if m.split(b":")[0] == str(number).encode()]
        assert mine == list(range(200))


# --------------------------------------------------------------------------- refusals and room


async def test_a_refusal_reaches_a_sender_cancelled_while_it_waited_for_room(
    own_redis_server: RedisServer,
) -> None:
    """Past ``HIGH_WATER`` a posting sender waits; cancelled there, its command still goes
    out (it was queued), and Redis's refusal still reaches its callback."""
    async with channel_limited_user(own_redis_server, "allowed-*") as url:
        client = aioredis.Redis.from_url(url)
        line = PublishLine(client)
        await line.open()
        process = own_redis_server.process
        assert process is not None
        refused: list[ResponseError] = []
        try:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(line.run)
                    os.kill(process.pid, signal.SIGSTOP)
                    try:
                        for _ in range(HIGH_WATER):
                            await line.post("allowed-x", b"x")
                        async with anyio.create_task_group() as doomed:
                            doomed.start_soon(line.post, "denied", b"x", refused.append)
                            await anyio.sleep(0.2)
                            doomed.cancel_scope.cancel()
                    finally:
                        os.kill(process.pid, signal.SIGCONT)
                    assert await line.publish("allowed-x", b"after") == 0
                    tg.cancel_scope.cancel()
        finally:
            await line.close()
            await client.aclose()
    assert len(refused) == 1, refused
    assert "no permissions" in str(refused[0])


async def test_large_posted_messages_wait_for_room_in_bytes_too(
    own_redis_server: RedisServer,
) -> None:
    """Fewer than ``HIGH_WATER`` messages can still be a lot of memory: while Redis reads
    nothing, a producer of 1 MiB messages stops once a few are queued, not after 200."""
    client = aioredis.Redis.from_url(own_redis_server.url)
    line = PublishLine(client)
    await line.open()
    process = own_redis_server.process
    assert process is not None
    posted = 0
    message = b"m" * (1024 * 1024)
    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(line.run)
                os.kill(process.pid, signal.SIGSTOP)
                try:

                    async def producer() -> None:
                        nonlocal posted
                        for _ in range(200):
                            await line.post("c", message)
                            posted += 1

                    tg.start_soon(producer)
                    await anyio.sleep(1.0)
                    assert posted < 60, f"{posted} MiB queued while Redis read nothing"
                finally:
                    os.kill(process.pid, signal.SIGCONT)
                with anyio.fail_after(15):
                    while posted < 200:
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    finally:
        await line.close()
        await client.aclose()


# --------------------------------------------------------------------------- breaks and stops


async def test_a_posted_request_on_a_line_that_breaks_ends_error(redis_url: str) -> None:
    """The line breaks right after a request was posted on it: the session ends and the job
    ends ERROR; it does not hang."""
    with anyio.fail_after(15):
        async with runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            line = bus_of(a)._line
            assert line is not None
            original = line.post

            async def post_then_break(*args: Any, **kwargs: Any) -> None:
                await original(*args, **kwargs)
                assert line._transport is not None
                line._transport.abort()

            line.post = post_then_break  # type: ignore[method-assign]
            status, response = await run_job(a, "echo", name="slow", payload={"seconds": 30})
            assert status is JobStatus.ERROR, (status, response)


async def test_a_reply_posted_just_before_its_runner_stops_still_arrives(redis_url: str) -> None:
    url = redis_url + "&max_message_size=1000000"
    outcome: list[Any] = []
    with anyio.fail_after(30):
        async with runners(url, "a") as (a,):
            worker = Chatty("chatty")
            async with runners(url, "b") as (b,):
                await b.add_worker(worker)
                await a.registry.wait_ready("chatty")

                async def one() -> None:
                    outcome.append(await run_job(a, "chatty", name="progress"))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(one)
                    await worker.answered.wait()
                    await anyio.lowlevel.checkpoint()
                    await b.end()
            with anyio.fail_after(10):
                while not outcome:
                    await anyio.sleep(0.01)
    assert outcome[0][0] is JobStatus.COMPLETED, outcome


class Talker(BaseWorker):
    """One job that sends 3 MB of updates, posted on the publish line."""

    @job
    async def talk(self, j: Job) -> dict[str, Any]:
        for step in range(12):
            await j.update({"step": step, "pad": "x" * 250_000})
        return {"done": True}


@pytest.fixture
def slow_link(redis_server: RedisServer) -> Iterator[int]:
    """The port of a proxy to ``redis_server`` that passes 1 MB/s from clients to Redis."""
    port = free_port()
    script = str(Path(__file__).with_name("throttle_proxy.py"))
    command = [sys.executable, script, str(port), str(redis_server.port), "1000000"]
    proxy = subprocess.Popen(command, stdout=subprocess.PIPE)
    try:
        assert proxy.stdout is not None and proxy.stdout.readline().startswith(b"ready")
        yield port
    finally:
        proxy.kill()
        proxy.wait()


async def test_a_busy_publish_line_does_not_hold_back_the_heartbeats(
    redis_server: RedisServer, slow_link: int
) -> None:
    """Runner b reaches Redis through a link of 1 MB/s and its job sends 3 MB: its
    heartbeats must not wait behind that backlog, or the others count b lost (after 1 s
    of silence here) and b's own session ends, while b is healthy and busy."""
    query = f"?namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2&misses=5"
    with anyio.fail_after(60):
        async with (
            runners(redis_server.url + query, "a") as (a,),
            runners(f"redis://127.0.0.1:{slow_link}/0" + query, "b") as (b,),
        ):
            await b.add_worker(Talker("talker"))
            await a.registry.wait_ready("talker")
            instance = bus_of(b)._instance
            status, response = await run_job(a, "talker")
            assert status is JobStatus.COMPLETED, (status, response)
            assert bus_of(b)._instance == instance


async def test_a_graceful_end_still_sends_what_its_jobs_posted(
    redis_server: RedisServer, slow_link: int
) -> None:
    """Runner b, on a slow link, ends while its job's 3 MB of updates and its response are
    still queued on the publish line: all of them reach Redis before b disconnects, and
    the requester gets the response (b keeps naming the worker in its heartbeats until
    then, so runner a does not end the job as lost first)."""
    ns = f"t{uuid.uuid4().hex[:12]}"
    query = f"?namespace={ns}&heartbeat=0.2&misses=50"
    spy = aioredis.Redis.from_url(redis_server.url)
    pubsub = spy.pubsub()
    await pubsub.subscribe(f"{ns}:runner:a")
    seen: list[bytes] = []
    outcome: list[tuple[JobStatus | None, dict[str, Any] | None]] = []

    async def watch() -> None:
        while True:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if item is not None and item["type"] == "message":
                seen.append(item["data"])

    try:
        with anyio.fail_after(60):
            async with runners(redis_server.url + query, "a") as (a,):
                slow = f"redis://127.0.0.1:{slow_link}/0" + query
                async with runners(slow, "b", grace=10) as (b,):
                    await b.add_worker(Talker("talker"))
                    await a.registry.wait_ready("talker")
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(watch)

                        async def ask() -> None:
                            outcome.append(await run_job(a, "talker"))

                        tg.start_soon(ask)
                        await anyio.sleep(0.3)  # the job is running on b
                        await b.end()
                        await anyio.sleep(1)
                        tg.cancel_scope.cancel()
        assert len(seen) == 13, len(seen)  # 12 updates and the response
        assert b'"done"' in seen[-1]
        assert outcome and outcome[0][0] is JobStatus.COMPLETED, outcome
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await spy.aclose()


async def test_the_line_works_without_hiredis_packer(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hiredis is a dependency, but without it the line packs with redis-py (a list of
    parts): sending still works and replies stay in step."""
    monkeypatch.setattr(publish_line_module, "pack_command", None)
    client = aioredis.Redis.from_url(redis_server.url)
    line = PublishLine(client)
    await line.open()
    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(line.run)
                assert await line.publish("nobody", b"x") == 0
                await line.post("nobody", b"y")
                assert await line.publish("nobody", b"z") == 0
                tg.cancel_scope.cancel()
    finally:
        await line.close()
        await client.aclose()


# --------------------------------------------------------------------------- Redis's timeout


@pytest.fixture
def idle_closing_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that closes a connection idle for 1 s (redis.conf ``timeout``)."""
    server = RedisServer(tmp_path / "redis", None, "--timeout", "1")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("busy", ["idle", "running a 3 s job"])
async def test_runners_keep_their_session_under_redis_idle_timeout(
    idle_closing_server: RedisServer, busy: str
) -> None:
    """Runners that send nothing on their publish connection for 3 s, idle or while a job
    runs, keep their session (that connection is pinged at each heartbeat), and the job's
    answer still goes out."""
    url = f"{idle_closing_server.url}?namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2"
    with anyio.fail_after(20):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            instance = bus_of(a)._instance
            if busy == "idle":
                await anyio.sleep(3)
            else:
                status, response = await run_job(a, "echo", name="slow", payload={"seconds": 3})
                assert status is JobStatus.COMPLETED, (status, response)
            assert bus_of(a)._instance == instance  # no new session: never cut off
