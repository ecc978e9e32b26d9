"""Review of the Redis bus: each test shows one suspected defect (it fails on the code as
reviewed) unless its docstring says it pins a behaviour that had no test."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from test_bus import (
    Echo,
    Gate,
    bus_of,
    eventually,
    namespace_of,
    plain_url,
    run_job,
    runners,
)

from framework import JobStatus
from framework.bus.messages import JobRequestMessage, JobResponseMessage
from framework.bus.network.wire import Bye, Heartbeat, RoutedEncoder, encode_envelope

pytestmark = pytest.mark.anyio


async def _beat(
    client: aioredis.Redis, ns: str, runner: str, workers: list[str], **kw: Any
) -> None:
    beat = Heartbeat(
        runner=runner,
        instance=kw.pop("instance", f"{runner}-1"),
        interval=kw.pop("interval", 0.2),
        misses=kw.pop("misses", 3),
        workers=workers,
        **kw,
    )
    await client.publish(f"{ns}:all", encode_envelope(beat))


# --------------------------------------------------------------------------- registry


async def test_a_local_replica_ending_hides_the_remote_replica(redis_url: str) -> None:
    """a and b both host "echo". a's copy ends: b's copy is still there, so a's jobs to
    "echo" should go to b. On the reviewed code a's registry forgets "echo" entirely (the
    remote host was never recorded while the local one was there, and nothing re-registers
    it when the local one leaves): a's jobs wait for a worker that is up on b."""
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            mine = Echo("echo")
            await a.add_worker(mine)
            await b.add_worker(Echo("echo"))
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b"}, what="b seen")
            await mine.end()
            await eventually(lambda: "echo" not in a.workers)  # a's copy has finished
            await anyio.sleep(0.5)  # a few heartbeats of b's, which still lists "echo"
            assert "echo" in a.registry, "a forgot echo although b hosts it"
            status, response = await run_job(a, "echo", timeout=3)
            assert status is JobStatus.COMPLETED, response


# --------------------------------------------------------------------------- jobs left open


async def _take_entry(client: aioredis.Redis, stream: str, consumer: str, block: int) -> Any:
    """Read one entry as ``consumer``: a runner's consumer name is ``<runner>/<instance>``."""
    return await client.xreadgroup("workers", consumer, {stream: ">"}, count=1, block=block)


async def test_a_replica_that_says_bye_holding_a_stream_entry_ends_the_job(redis_url: str) -> None:
    """Replicas "ghost" (a bare runner speaking the wire protocol) and b host "echo". The
    ghost takes a's job from the worker's stream and ends with a bye, never answering (as
    a real runner does when its stream read is cut short by its own stop: the entry is then
    in its pending list, unseen). For a direct send a bye ends the job ERROR "runner ghost
    ended"; for a stream job nothing looks at the ghost's pending list on a bye (only when
    a runner is *lost*), b still hosts "echo", so a's job waits for ever."""
    ns = namespace_of(redis_url)
    url = redis_url.replace("heartbeat=0.2", "heartbeat=0.2&misses=50")  # nobody "lost"
    with anyio.fail_after(15):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await _beat(client, ns, "ghost", ["echo"], misses=50)
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "ghost"})
            # The ghost reads first (b's reader is parked by taking nothing from b).
            bus_of(b)._reading.discard("echo")
            await anyio.sleep(1.2)  # b's XREADGROUP in flight returns
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    results.append(await run_job(a, "echo"))

                tg.start_soon(ask)
                taken = await _take_entry(client, f"{ns}:worker:echo", "ghost/ghost-1", 3000)
                assert taken, "the ghost took no entry"
                await client.publish(
                    f"{ns}:all", encode_envelope(Bye(runner="ghost", instance="ghost-1"))
                )
                bus_of(b)._reading.add("echo")  # b reads again
                bus_of(b)._streams_changed.set()
                await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b"}, 2.0)
                with anyio.move_on_after(3):
                    while not results:
                        await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
            assert results, "a's job taken by a runner that said bye never ended"


async def test_a_frozen_replica_blocked_in_its_stream_read_takes_a_job_after_it_is_lost(
    redis_url: str,
) -> None:
    """Replica g1 freezes (SIGSTOP, a paused VM: its sockets stay open) while its stream
    read is blocked in Redis (the bus blocks 1 s per read). With heartbeat=0.1 it is lost
    after 0.3 s, and a checks its pending list then, once. A job a sends after that, while
    g1's read is still blocked, is handed to g1 by Redis, and stays in g1's pending list:
    nothing checks again, the live replicas (g2, g3) never see it, a waits for ever."""
    ns = namespace_of(redis_url)
    url = redis_url.replace("heartbeat=0.2", "heartbeat=0.1")
    stream = f"{ns}:worker:echo"
    with anyio.fail_after(15):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        frozen = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, frozen, runners(url, "a") as (a,):
            for name in ("g1", "g2", "g3"):
                await _beat(client, ns, name, ["echo"], interval=0.1)
            await client.xgroup_create(stream, "workers", id="$", mkstream=True)
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"g1", "g2", "g3"})
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def keep_alive() -> None:  # g2 and g3 heartbeat on; g1 is frozen
                    while True:
                        for name in ("g2", "g3"):
                            await _beat(client, ns, name, ["echo"], interval=0.1)
                        await anyio.sleep(0.05)

                tg.start_soon(keep_alive)
                blocked: list[Any] = []

                async def g1_read() -> None:  # g1's last read, blocked when it froze
                    blocked.append(await _take_entry(frozen, stream, "g1/g1-1", 1000))

                tg.start_soon(g1_read)
                await eventually(lambda: "g1" not in bus_of(a)._peers, 2.0, "g1 lost")

                async def ask() -> None:
                    results.append(await run_job(a, "echo"))

                tg.start_soon(ask)
                await eventually(lambda: bool(blocked), 2.0)
                assert blocked[0], "the frozen read got nothing (timing)"
                # A live replica now reads: the entry is in g1's pending list, not for it.
                assert await _take_entry(client, stream, "g2/g2-1", 500) == []
                with anyio.move_on_after(3):
                    while not results:
                        await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
            assert results, "a's job, taken by a lost runner's blocked read, never ended"


# --------------------------------------------------------------------------- crashes


async def test_a_worker_with_a_long_name_does_not_crash_the_runner(redis_url: str) -> None:
    """Worker names are any non-empty string to the framework; the heartbeat model caps
    them at 256 characters and ``Heartbeat(...)`` is built in the heartbeat loop, where a
    ValidationError is not a connection error: it escapes the session and the bus's task
    group, and takes the whole runner down (here: the runner's context raises)."""
    with anyio.fail_after(10):
        crashed: list[BaseException] = []
        try:
            async with runners(redis_url, "a", "b") as (a, b):
                await b.add_worker(Echo("echo"))
                await a.registry.wait_ready("echo")
                await b.add_worker(Echo("x" * 300))
                await anyio.sleep(1.0)
                assert (await run_job(a, "echo", timeout=3))[0] is JobStatus.COMPLETED
        except BaseException as exc:
            crashed.append(exc)
        assert not crashed, f"the runner crashed: {crashed[0]!r}"


async def test_a_job_request_to_a_runner_address_from_redis_does_not_crash_it(
    redis_url: str,
) -> None:
    """Anything read from Redis is untrusted. A ``msg`` envelope on a's channel holding a
    job *request* whose target is runner a itself (not one of its workers), with the job
    id of a job a has open (ids travel in clear on the channels), reaches a's own inbox;
    its receive loop hands it to the requester, whose ``_apply`` looks the request type
    up in the event table: KeyError, and runner a crashes."""
    ns = namespace_of(redis_url)
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        crashed: list[BaseException] = []
        async with client:
            try:
                async with runners(redis_url, "a", "b") as (a, b):
                    echo = Echo("echo")
                    await b.add_worker(echo)
                    await a.registry.wait_ready("echo")
                    async with anyio.create_task_group() as tg:
                        job_id = await a.request_job("echo", name="slow", payload={"seconds": 2})
                        await echo.started.wait()
                        forged = JobRequestMessage.build(source="x", target="a", job_id=job_id)
                        await client.publish(
                            f"{ns}:runner:a", RoutedEncoder("x").encode(forged, "")
                        )
                        await anyio.sleep(0.5)
                        tg.cancel_scope.cancel()
                    assert (await run_job(a, "echo", timeout=3))[0] is JobStatus.COMPLETED
            except BaseException as exc:
                crashed.append(exc)
        assert not crashed, f"runner a crashed: {crashed[0]!r}"


# --------------------------------------------------------------------------- memory


async def test_a_response_dropped_while_disconnected_is_forgotten(own_redis_server: Any) -> None:
    """b's worker answers while b is disconnected from Redis: the response is dropped (a
    ended the job ERROR on the outage already), but ``_send_reply`` returns before it
    deletes the job's ``_served`` entry, so b keeps it for ever (one per job answered
    during an outage)."""
    url = f"{own_redis_server.url}?heartbeat=0.2"
    with anyio.fail_after(20):
        async with runners(url, "a", "b") as (a, b):
            gate = Gate("gate")
            await b.add_worker(gate)
            await a.registry.wait_ready("gate")
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    results.append(await run_job(a, "gate"))

                tg.start_soon(ask)
                await gate.running.wait()
                assert len(bus_of(b)._served) == 1
                await anyio.to_thread.run_sync(own_redis_server.stop)
                await eventually(lambda: not bus_of(b)._connected, 5.0, "b disconnected")
                gate.release.set()  # answered while b is offline
            assert results[0][0] is JobStatus.ERROR
            await anyio.to_thread.run_sync(own_redis_server.start)
            await eventually(lambda: bus_of(b)._connected, 8.0, "b reconnected")
            await anyio.sleep(0.3)
            assert bus_of(b)._served == {}, "b still holds the answered job in _served"


# --------------------------------------------------------------------------- bad input


async def test_a_non_request_in_a_worker_stream_is_not_left_pending(redis_url: str) -> None:
    """A worker's stream holds job requests only. A well-formed envelope of another type
    there (a response, a cancel) is acted on as if it came on a channel, and its entry is
    never acknowledged nor deleted: it stays in b's pending list (and the stream) for
    ever, where garbage is acknowledged and deleted."""
    ns = namespace_of(redis_url)
    stream = f"{ns}:worker:echo"
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            stray = JobResponseMessage.build(
                source="echo", target="nobody", job_id="j1", status=JobStatus.COMPLETED
            )
            await client.xadd(stream, {b"m": RoutedEncoder("x").encode(stray, stream), b"j": b"j1"})
            await anyio.sleep(1.5)
            pending = (await client.xpending(stream, "workers"))["pending"]
            assert pending == 0 and await client.xlen(stream) == 0, (
                f"{pending} entry(ies) left pending in {stream}"
            )


async def test_a_deleted_worker_stream_does_not_fail_the_jobs_in_flight(redis_url: str) -> None:
    """The key of a worker's stream is deleted (an operator's cleanup, an eviction) while
    b's stream read is blocked on it. Redis 7 ends that read with "UNBLOCKED the stream key
    no longer exists", which the reader does not expect (it handles NOGROUP only): b's
    whole session breaks, and a's unrelated job running on b ends ERROR ("runner b lost
    (it restarted or reconnected to Redis)")."""
    ns = namespace_of(redis_url)
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await b.add_worker(Echo("other"))
            await a.registry.wait_ready("echo")
            await anyio.sleep(1.2)  # b's stream read now blocks on both streams
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    results.append(await run_job(a, "echo", name="slow", payload={"seconds": 1.5}))

                tg.start_soon(ask)
                await echo.started.wait()
                await client.delete(f"{ns}:worker:other")
            assert results == [(JobStatus.COMPLETED, {"slept": True})], results


async def test_a_stream_key_of_the_wrong_type_does_not_cut_the_runner_off(
    redis_url: str,
) -> None:
    """One key of the wrong type where a worker's stream belongs (``SET <ns>:worker:other
    x``) disconnects runner b from Redis for good: its read fails (WRONGTYPE), the session
    breaks, and every reconnection fails in ``_open`` (``ensure_group`` raises WRONGTYPE,
    a ResponseError, so "connection lost"). All of b's workers become unreachable, not
    just the one whose stream is bad."""
    ns = namespace_of(redis_url)
    with anyio.fail_after(15):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await b.add_worker(Echo("other"))
            await a.registry.wait_ready("echo")
            await a.registry.wait_ready("other")
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(f"{ns}:worker:other")
                pipe.set(f"{ns}:worker:other", "x")
                await pipe.execute()
            await anyio.sleep(3)
            assert bus_of(b)._connected, "b cannot reconnect"
            status, response = await run_job(a, "echo", timeout=3)
            assert status is JobStatus.COMPLETED, response


async def test_a_heartbeat_over_the_size_limit_is_not_sent_to_be_dropped(redis_url: str) -> None:
    """Heartbeats list every worker of their runner and are never checked against the
    size limit when sent. With ``max_message_size=1024`` (allowed) and 40 workers of
    30-character names, each of b's heartbeats is ~1.4 kB: every other runner drops it as
    oversized, so b's workers never appear there (and b, never heard, could never be told
    apart from a lost runner). Nothing on b's side says so."""
    url = redis_url + "&max_message_size=1024"
    with anyio.fail_after(10):
        async with runners(url, "a", "b") as (a, b):
            for i in range(40):
                await b.add_worker(Echo(f"worker-with-a-longish-name-{i:03d}"))
            await anyio.sleep(1.0)
            seen = [n for n in a.registry.remote_workers if n.startswith("worker-")]
            assert len(seen) == 40, (
                f"a sees {len(seen)} of b's 40 workers; a dropped "
                f"{bus_of(a).dropped_messages} message(s)"
            )
