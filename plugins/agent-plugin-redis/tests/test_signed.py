"""Signed messages on the Redis bus: runners that share a secret work as before; what a
client of Redis forges, replays or takes without the secret has no effect."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis.bus import RedisBus
from test_bus import Echo, Gate, bus_of, eventually, namespace_of, plain_url, run_job

from framework import BaseWorker, Job, JobStatus, WorkerRunner, job
from framework.bus.messages import JobCancelMessage, JobResponseMessage
from framework.bus.network import (
    Bye,
    Heartbeat,
    RoutedEncoder,
    Signer,
    SigningKeys,
    encode_envelope,
)

pytestmark = pytest.mark.anyio

SECRET = "a-shared-secret-of-32-characters"
OTHER = "another-secret-of-32-characters!"


@contextlib.asynccontextmanager
async def signed_runners(
    url: str, *names: str, secret: Any = SECRET
) -> AsyncIterator[list[WorkerRunner]]:
    async with contextlib.AsyncExitStack() as stack:
        started = []
        for name in names:
            bus = RedisBus(url, secret=secret)
            runner = WorkerRunner(name, bus=bus, grace_period=1.0)
            started.append(await stack.enter_async_context(runner))
        yield started


async def _capture(client: aioredis.Redis, channel: str, count: int) -> list[bytes]:
    """The next ``count`` messages published on ``channel``, as a spy would read them."""
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    got: list[bytes] = []
    try:
        while len(got) < count:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            if item is not None and item["type"] == "message":
                got.append(item["data"])
    finally:
        await pubsub.aclose()
    return got


async def test_signed_runners_exchange_jobs_and_rotate_secrets(redis_url: str) -> None:
    """A signed job crosses runners; a runner with ``[new, old]`` and one with ``[old,
    new]`` still understand each other (the rotation's middle step)."""
    with anyio.fail_after(10):
        async with (
            signed_runners(redis_url, "a", secret=[OTHER, SECRET]) as (a,),
            signed_runners(redis_url, "b", secret=[SECRET, OTHER]) as (b,),
        ):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            status, response = await run_job(a, "echo", payload={"x": 1})
            assert status is JobStatus.COMPLETED, response
            assert response == {"payload": {"x": 1}, "runner": "b", "requester": "a"}
            assert bus_of(a).signed and bus_of(b).signed
            assert sum(bus_of(a).rejected_messages.values()) == 0


async def test_a_runner_without_the_secret_is_not_heard(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Unsigned heartbeats (a runner with no secret) and heartbeats signed with another
    secret are rejected: their runners' workers never enter the registry."""
    with anyio.fail_after(10):
        async with (
            signed_runners(redis_url, "a") as (a,),
            signed_runners(redis_url, "b", secret=OTHER) as (b,),
            signed_runners(redis_url, "c", secret=None) as (c,),
        ):
            await b.add_worker(Echo("on-b"))
            await c.add_worker(Echo("on-c"))
            await eventually(
                lambda: (
                    bus_of(a).rejected_messages["bad signature"] >= 2
                    and bus_of(a).rejected_messages["unsigned"] >= 2
                ),
                what="b's and c's heartbeats rejected",
            )
            assert a.registry.remote_workers == []
            assert "b" not in bus_of(a)._peers and "c" not in bus_of(a)._peers
    assert "rejected a message from runner 'b': bad signature" in caplog.text


async def test_a_runner_without_a_secret_says_once_that_others_sign(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner with no secret among runners that sign drops their messages and says
    why once, not a line per heartbeat."""
    caplog.set_level(logging.WARNING)
    with anyio.fail_after(10):
        async with (
            signed_runners(redis_url, "plain", secret=None) as (plain,),
            signed_runners(redis_url, "s1", "s2") as _,
        ):
            await eventually(lambda: bus_of(plain).dropped_messages >= 6, what="6 dropped")
            assert plain.registry.remote_workers == []
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plain: ")]
    assert said == [
        "plain: dropped a signed message from "
        f"{namespace_of(redis_url)}:all: another runner has a bus_secret and this one has none: "
        "give every runner the same bus_secret"
    ]


class Held(BaseWorker):
    """Notes which runner started each job, and holds it until ``release`` is set."""

    def __init__(self, name: str, runs: list[str], release: anyio.Event) -> None:
        super().__init__(name)
        self.runs, self.release = runs, release

    @job
    async def hold(self, j: Job) -> dict[str, Any]:
        self.runs.append(self.runner.name)
        await self.release.wait()
        return {"done": True}


async def _first_request(client: aioredis.Redis, channel: str, ready: anyio.Event) -> bytes:
    """The first job request published on ``channel``, as a spy reads it."""
    pubsub = client.pubsub()
    await pubsub.subscribe(channel)
    try:
        ready.set()
        while True:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
            if item is not None and b'"job_request"' in item["data"]:
                return bytes(item["data"])
    finally:
        await pubsub.aclose()


async def test_a_request_copied_to_another_runners_channel_has_no_effect(
    redis_url: str,
) -> None:
    """A client of Redis copies a signed request from the channel of the runner it was
    sent to onto another runner's: that runner rejects it (it was signed for the first
    channel), so it neither answers it ERROR nor runs it, and the job completes."""
    runs: list[str] = []
    release = anyio.Event()
    with anyio.fail_after(15):
        async with signed_runners(redis_url, "a", "one", "three") as (a, one, three):
            await one.add_worker(Held("held", runs, release))
            await three.add_worker(Held("other", runs, release))
            await a.registry.wait_ready("held")
            ns = bus_of(a).settings.namespace
            client = aioredis.Redis.from_url(plain_url(redis_url))
            async with client, anyio.create_task_group() as tg:
                ready = anyio.Event()
                copied: list[bytes] = []

                async def spy() -> None:
                    copied.append(await _first_request(client, f"{ns}:runner:one", ready))

                tg.start_soon(spy)
                await ready.wait()
                outcome: list[Any] = []

                async def ask() -> None:
                    outcome.append(await run_job(a, "held"))

                tg.start_soon(ask)
                await eventually(lambda: bool(copied) and runs == ["one"], what="held runs")
                await client.publish(f"{ns}:runner:three", copied[0])
                await eventually(
                    lambda: bus_of(three).rejected_messages["bad signature"] == 1,
                    what="three rejects the copy",
                )
                release.set()
            assert outcome == [(JobStatus.COMPLETED, {"done": True})]
            assert runs == ["one"]


async def test_a_request_copied_from_the_stream_to_the_replicas_runs_once(
    redis_url: str,
) -> None:
    """A client of Redis reads a signed request from a worker's stream and publishes it on
    each replica's channel: the copies were signed for the stream, so no replica runs
    them, and the job runs once."""
    runs: list[str] = []
    release = anyio.Event()
    with anyio.fail_after(15):
        async with signed_runners(redis_url, "a", "r1", "r2") as (a, r1, r2):
            await r1.add_worker(Held("held", runs, release))
            await r2.add_worker(Held("held", runs, release))
            await eventually(
                lambda: bus_of(a)._peers.hosts("held") == {"r1", "r2"}, what="both replicas"
            )
            ns = bus_of(a).settings.namespace
            client = aioredis.Redis.from_url(plain_url(redis_url))
            async with client, anyio.create_task_group() as tg:
                outcome: list[Any] = []

                async def ask() -> None:
                    outcome.append(await run_job(a, "held"))

                tg.start_soon(ask)
                await eventually(lambda: len(runs) == 1, what="a replica runs it")
                ((_, fields),) = await client.xrange(f"{ns}:worker:held")
                for replica in ("r1", "r2"):
                    await client.publish(f"{ns}:runner:{replica}", fields[b"m"])
                await eventually(
                    lambda: (
                        sum(bus_of(r).rejected_messages["bad signature"] for r in (r1, r2)) == 2
                    ),
                    what="both copies rejected",
                )
                release.set()
            assert outcome == [(JobStatus.COMPLETED, {"done": True})]
            assert len(runs) == 1


async def test_forged_and_replayed_messages_have_no_effect(redis_url: str) -> None:
    """A raw redis-py client with no secret, in the middle of a job from a to b's worker:
    it forges b's heartbeat under a new session and b's ``bye`` (either would end the job
    ERROR, unsigned), a COMPLETED response to a, a cancel to b, a phantom runner, and it
    replays b's own signed heartbeat and a's own signed request. The job completes with
    b's answer, once, and nothing else happens."""
    ns = namespace_of(redis_url)
    client = aioredis.Redis.from_url(plain_url(redis_url))
    forger = RoutedEncoder("b")
    try:
        with anyio.fail_after(15):
            async with signed_runners(redis_url, "a", "b") as (a, b):
                gate = Gate("gate")
                await b.add_worker(gate)
                await a.registry.wait_ready("gate")
                beats = await _capture(client, f"{ns}:all", 1)
                async with anyio.create_task_group() as tg:
                    requests: list[bytes] = []

                    async def spy() -> None:
                        requests.extend(await _capture(client, f"{ns}:runner:b", 1))

                    tg.start_soon(spy)
                    await anyio.sleep(0.1)
                    ctx = a.job("gate", payload={"real": True})
                    await ctx.__aenter__()
                    await gate.running.wait()
                job_id = ctx.job_id
                instance = bus_of(b)._instance
                forged = [
                    (
                        f"{ns}:all",
                        Heartbeat(runner="b", instance="x", interval=1, misses=3, workers=[]),
                    ),
                    (f"{ns}:all", Bye(runner="b", instance=instance)),
                    (
                        f"{ns}:all",
                        Heartbeat(
                            runner="ghost",
                            instance="g",
                            interval=3600,
                            misses=1000,
                            workers=["gate", "phantom"],
                        ),
                    ),
                ]
                for channel, envelope in forged:
                    await client.publish(channel, encode_envelope(envelope))
                answer = JobResponseMessage.build(
                    source="gate",
                    target=a.name,
                    job_id=job_id,
                    status=JobStatus.COMPLETED,
                    response={"forged": True},
                )
                await client.publish(f"{ns}:runner:a", forger.encode(answer, f"{ns}:runner:a"))
                cancel = JobCancelMessage(source=a.name, target="gate", job_id=job_id, reason="x")
                await client.publish(
                    f"{ns}:runner:b", RoutedEncoder("a").encode(cancel, f"{ns}:runner:b")
                )
                for beat in beats:
                    await client.publish(f"{ns}:all", beat)  # a replay of b's (or a's) own
                for request in requests:
                    await client.publish(f"{ns}:runner:b", request)  # a replayed request
                await eventually(
                    lambda: (
                        sum(bus_of(a).rejected_messages.values()) >= 5
                        and sum(bus_of(b).rejected_messages.values()) >= 4
                    ),
                    what="the forgeries rejected",
                )
                await anyio.sleep(0.3)
                assert ctx.status is None, "a forged message ended the job"
                assert "phantom" not in a.registry and "ghost" not in bus_of(a)._peers
                gate.release.set()
                await ctx.__aexit__(None, None, None)
                assert ctx.status is JobStatus.COMPLETED, ctx.response
                assert ctx.response == {"real": True}
                assert (
                    bus_of(a).rejected_messages["replayed"]
                    + bus_of(b).rejected_messages["replayed"]
                    >= 2
                )
    finally:
        await client.aclose()


async def test_a_runner_speaks_only_for_itself(redis_url: str) -> None:
    """A message signed by one runner but naming another (an insider with the secret,
    playing runner b) is dropped: b's job is not ended by c's word."""
    ns = namespace_of(redis_url)
    client = aioredis.Redis.from_url(plain_url(redis_url))
    insider = Signer("c", SigningKeys(SECRET))
    try:
        with anyio.fail_after(10):
            async with signed_runners(redis_url, "a", "b") as (a, b):
                gate = Gate("gate")
                await b.add_worker(gate)
                await a.registry.wait_ready("gate")
                async with a.job("gate") as ctx:
                    await gate.running.wait()
                    lie = Bye(runner="b", instance=bus_of(b)._instance)
                    await client.publish(
                        f"{ns}:all", insider.sign(encode_envelope(lie), f"{ns}:all")
                    )
                    await eventually(lambda: bus_of(a).rejected_messages["sender mismatch"] == 1)
                    assert "gate" in a.registry
                    gate.release.set()
                assert ctx.status is JobStatus.COMPLETED
    finally:
        await client.aclose()


async def test_without_a_secret_a_remote_redis_is_warned_about(
    caplog: pytest.LogCaptureFixture, redis_url: str
) -> None:
    """A runner on a non-loopback Redis without a secret says that any client of that
    Redis can act as a runner; with a secret, or on loopback, it says nothing."""
    from agent_plugin_redis.bus import is_loopback

    assert is_loopback("redis://127.0.0.1:6379/0") and is_loopback("redis://localhost/0")
    assert is_loopback("redis://[::1]:6379/0")
    assert not is_loopback("redis://redis.internal:6379/0")
    assert not is_loopback("rediss://10.0.0.5:6380/0")
    caplog.set_level(logging.WARNING)
    with anyio.fail_after(10):
        async with signed_runners(redis_url, "a", secret=None):
            pass
    assert "no bus_secret" not in caplog.text


async def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="shorter than the 16 required"):
        RedisBus("redis://127.0.0.1:6379/0", secret="short")
    assert not RedisBus("redis://127.0.0.1:6379/0", secret=[]).signed


async def test_a_stranger_in_the_group_takes_no_job_for_good(redis_url: str) -> None:
    """A raw client joins the group of a worker hosted twice (its jobs go through the
    worker's stream) and takes an entry as consumer "evil". The payload is signed, not
    encrypted: it can read it, but not answer it. Its requester is answered (ERROR,
    outcome unknown: a stranger may be a runner that died) once the stranger has been
    silent for longer than a live runner can be; the other jobs complete."""
    ns = namespace_of(redis_url)
    client = aioredis.Redis.from_url(plain_url(redis_url))
    stream = f"{ns}:worker:echo"
    try:
        with anyio.fail_after(30):
            async with signed_runners(redis_url, "a", "b", "c") as (a, b, c):
                await b.add_worker(Echo("echo"))
                await c.add_worker(Echo("echo"))
                await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"})
                taken: list[Any] = []

                async def steal() -> None:
                    taken.extend(
                        await client.xreadgroup(
                            "workers", "evil", {stream: ">"}, count=1, block=5000
                        )
                        or []
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(steal)
                    await anyio.sleep(1.3)  # b and c block again behind evil
                    status, response = await run_job(a, "echo", payload={"i": 0}, timeout=25)
                ((_, entries),) = taken
                ((_, fields),) = entries
                assert fields[b"m"][:1] == b"\x01"  # signed: readable, not actionable
                assert status is JobStatus.ERROR, response
                assert response is not None and response["outcome"] == "unknown"
                for i in range(1, 5):
                    status, response = await run_job(a, "echo", payload={"i": i}, timeout=5)
                    assert status is JobStatus.COMPLETED, response
                # Each entry is deleted once its response is out: the last one just after.
                with anyio.fail_after(2):
                    while await client.xlen(stream):
                        await anyio.sleep(0.01)
    finally:
        await client.aclose()
