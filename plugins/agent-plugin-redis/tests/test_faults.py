"""Faults and hostile input found by probing the Redis bus with real runners and a real
redis-server: each test fails on the code before its fix."""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis import bus as bus_module
from agent_plugin_redis._settings import MAX_MESSAGE_SIZE_CAP
from agent_plugin_redis.bus import RedisBus
from conftest import RedisServer, channel_limited_user
from redis.exceptions import ResponseError
from test_bus import (
    MAY_HAVE_RUN,
    Echo,
    bus_of,
    eventually,
    namespace_of,
    plain_url,
    run_job,
    runners,
)

from framework import JobStatus, WorkerRunner
from framework.bus.messages import JobRequestMessage, JobResponseMessage
from framework.bus.network import peers as _peers
from framework.bus.network.wire import Heartbeat, encode_envelope
from framework.config import ConfigError

pytestmark = pytest.mark.anyio


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


# --------------------------------------------------------------------------- log lines


async def test_control_characters_from_the_network_are_escaped_in_log_lines(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A newline in a JSON key of a request, or in a runner's or worker's name, would let
    whoever writes to Redis add lines of its own to every runner's log."""
    ns = namespace_of(redis_url)
    caplog.set_level(logging.INFO)
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            forged = "\nERROR framework: FORGED\x1b[2J"
            request = {
                "kind": "msg",
                "origin": "a",
                "message": {
                    "type": "job_request",
                    "source": "a",
                    "target": "echo",
                    "job_id": "j1",
                    "headers": {f"k{forged}": 1},
                },
            }
            await client.publish(f"{ns}:runner:b", json.dumps(request))
            await client.publish(
                f"{ns}:all",
                encode_envelope(
                    Heartbeat(
                        runner=f"ghost{forged}",
                        instance="i",
                        interval=0.05,
                        misses=1,
                        workers=[f"w{forged}"],
                    )
                ),
            )
            await eventually(lambda: bus_of(b).dropped_messages == 1, what="request dropped")
            await eventually(
                lambda: any("is gone" in line for line in _lines(caplog)), what="ghost lost"
            )
            assert (await run_job(a, "echo"))[0] is JobStatus.COMPLETED
    lines = _lines(caplog)
    assert any("k\\nERROR framework: FORGED\\x1b[2J" in line for line in lines), lines
    assert any("ghost\\nERROR" in line for line in lines), lines
    for line in lines:
        assert "\n" not in line and "\x1b" not in line, line


# --------------------------------------------------------------------------- message size


async def test_the_biggest_message_allowed_never_makes_redis_drop_a_runner(
    redis_url: str,
) -> None:
    """With ``max_message_size`` at its cap on both sides, a response just under it crosses
    a redis-server with its default output buffer limits, one over it ends ERROR for that
    job only, and neither runner's connection is dropped (same instance, same sessions)."""
    url = redis_url + f"&max_message_size={MAX_MESSAGE_SIZE_CAP}"
    with anyio.fail_after(30):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            instances = (bus_of(a)._instance, bus_of(b)._instance)
            under = MAX_MESSAGE_SIZE_CAP - 4096
            outcomes: dict[str, Any] = {}

            async def one(key: str, name: str, payload: dict[str, Any]) -> None:
                outcomes[key] = await run_job(a, "echo", name=name, payload=payload)

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "under", "big", {"size": under})
                tg.start_soon(one, "over", "big", {"size": MAX_MESSAGE_SIZE_CAP})
                tg.start_soon(one, "slow", "slow", {"seconds": 0.5})
            status, response = outcomes["under"]
            assert status is JobStatus.COMPLETED and response is not None
            assert len(response["blob"]) == under
            status, response = outcomes["over"]
            assert status is JobStatus.ERROR and response is not None
            assert f"over the bus's {MAX_MESSAGE_SIZE_CAP}-byte limit" in response["error"]
            assert outcomes["slow"][0] is JobStatus.COMPLETED
            assert (bus_of(a)._instance, bus_of(b)._instance) == instances


async def test_a_redis_that_drops_subscribers_sooner_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    """A Redis configured to disconnect pub/sub clients at 4 MB cannot carry 2 MiB
    messages safely: entering the runner says so, naming the setting and the limit."""
    server = RedisServer(
        tmp_path / "redis", None, "--client-output-buffer-limit", "pubsub", "4mb", "2mb", "60"
    )
    server.start()
    try:
        with anyio.fail_after(10):
            bus = RedisBus(f"{server.url}?max_message_size={2 * 1024 * 1024}")
            with pytest.raises(ConfigError) as caught:
                async with WorkerRunner("a", bus=bus):
                    pass
            text = str(caught.value)
            assert "max_message_size" in text and "client-output-buffer-limit" in text
            assert "at most 1048576" in text
            async with WorkerRunner("a", bus=RedisBus(f"{server.url}?max_message_size=1048576")):
                pass
    finally:
        server.stop()


# --------------------------------------------------------------------------- the peer table


async def test_forged_heartbeats_cannot_grow_the_peer_table_or_keep_a_phantom_alive(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Heartbeats forged by a raw client under many names, naming many workers, stop at the
    table's bounds; one claiming a 3600 s interval keeps its runner for ``LIVENESS_MAX`` at
    most, so a job sent to its worker ends ERROR instead of waiting for ever."""
    monkeypatch.setattr(_peers, "MAX_PEERS", 20)
    monkeypatch.setattr(_peers, "MAX_REMOTE_WORKERS", 500)
    monkeypatch.setattr(_peers, "LIVENESS_MAX", 1.5)
    ns = namespace_of(redis_url)
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    with anyio.fail_after(15):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            phantom = Heartbeat(
                runner="phantom", instance="p", interval=3600, misses=1000, workers=["ghost"]
            )
            await client.publish(f"{ns}:all", encode_envelope(phantom))
            for i in range(60):
                workers = [f"w{i}-{n}" for n in range(100)]
                beat = Heartbeat(
                    runner=f"forged-{i}", instance="i", interval=60, misses=1, workers=workers
                )
                await client.publish(f"{ns}:all", encode_envelope(beat))
            await eventually(lambda: len(bus_of(a)._peers) == 20, what="table full")
            await a.registry.wait_ready("ghost")
            await anyio.sleep(0.3)
            assert len(bus_of(a)._peers) == 20
            assert sum(len(bus_of(a)._peers.workers_of(r)) for r in bus_of(a)._peers.names()) <= 500
            assert len(a.registry.remote_workers) <= 501
            started = anyio.current_time()
            status, response = await run_job(a, "ghost")
            assert status is JobStatus.ERROR and response is not None
            assert "runner phantom lost" in response["error"]
            assert anyio.current_time() - started < 3
            assert (await run_job(a, "echo"))[0] is JobStatus.COMPLETED
    lines = _lines(caplog)
    assert any("other runners are tracked already" in line for line in lines), lines
    assert any("remote workers are tracked already" in line for line in lines), lines


# --------------------------------------------------------------------------- lost runners


async def test_a_plain_job_whose_runner_is_lost_ends_with_an_unknown_outcome(
    redis_url: str,
) -> None:
    """A job sent to a runner that goes silent, and one taken from a worker's stream by a
    replica that goes silent, both end ERROR saying they may or may not have run
    (``outcome == "unknown"``); a request refused before it left says nothing of the kind."""
    with anyio.fail_after(15):
        async with (
            runners(redis_url, "a") as (a,),
            runners(redis_url, "b") as (b,),
            runners(redis_url, "c") as (c,),
        ):
            direct, replica = Echo("direct"), Echo("shared")
            await b.add_worker(direct)
            await b.add_worker(replica)
            await c.add_worker(Echo("shared"))
            await a.registry.wait_ready("direct")
            await eventually(lambda: bus_of(a)._peers.hosts("shared") == {"b", "c"})
            results: dict[str, Any] = {}

            async def ask(key: str, worker: str) -> None:
                results[key] = await run_job(a, worker, name="slow")

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "direct", "direct")
                await direct.started.wait()
                sent = 0
                while not replica.slow_jobs:  # until one of the replicas' jobs lands on b
                    sent += 1
                    tg.start_soon(ask, f"shared-{sent}", "shared")
                    await anyio.sleep(0.05)
                assert bus_of(b)._tg is not None
                bus_of(b)._tg.cancel_scope.cancel()  # b falls silent, no bye
                await eventually(lambda: len(results) >= 2, 5.0, "b's jobs ended")
                tg.cancel_scope.cancel()  # (c's slow jobs would run 30 s)
            status, response = results["direct"]
            assert status is JobStatus.ERROR
            assert response == {"error": "runner b lost" + MAY_HAVE_RUN, "outcome": "unknown"}
            on_b = [r for k, r in results.items() if k != "direct" and r[0] is JobStatus.ERROR]
            assert on_b, results
            for _status, response in on_b:
                assert response == {"error": "runner b lost" + MAY_HAVE_RUN, "outcome": "unknown"}
            refused = await run_job(a, "shared", payload={"x": "y" * 2_000_000})
            assert refused[0] is JobStatus.ERROR and refused[1] is not None
            assert "outcome" not in refused[1] and "over the bus's" in refused[1]["error"]


async def test_a_request_redis_refuses_ends_error_saying_it_never_left(
    redis_server: RedisServer,
) -> None:
    """The requesting runner does not wait for Redis to take a request to one runner; when
    Redis refuses it (here an ACL that denies the worker's runner's channel), the job still
    ends ERROR at once, naming Redis's refusal, with no unknown outcome (it never left), and
    the runner's connection carries on."""
    ns = f"t{uuid.uuid4().hex[:12]}"
    async with channel_limited_user(redis_server, f"{ns}:all", f"{ns}:runner:a") as limited:
        with anyio.fail_after(15):
            async with (
                runners(f"{limited}?namespace={ns}&heartbeat=0.2", "a") as (a,),
                runners(f"{redis_server.url}?namespace={ns}&heartbeat=0.2", "b") as (b,),
            ):
                echo = Echo("echo")
                await b.add_worker(echo)
                await a.registry.wait_ready("echo")
                status, response = await run_job(a, "echo")
                assert status is JobStatus.ERROR and response is not None
                assert "outcome" not in response, response
                assert response["error"].startswith("could not send the job through Redis")
                assert "no permissions" in response["error"], response
                assert echo.seen == []
                assert bus_of(a)._connected
                status, response = await run_job(a, "echo")  # the same again: not stuck
                assert status is JobStatus.ERROR and "no permissions" in str(response)


# --------------------------------------------------------------------------- silent loss


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


UNPARSABLE = [_nested(199), _nested(254), {"n": 10**4300}, {"n": [1, -(10**5000)]}]
"""Values JSON can carry and the sender's encoder writes, but the readers' parser refuses
(the core's own checks stop them earlier on the usual paths: these are built by hand)."""


@pytest.mark.parametrize("via", ["direct", "stream"])
async def test_a_request_the_reader_cannot_parse_ends_error_at_once(
    redis_url: str, via: str
) -> None:
    """A request the reading runner's parser would refuse is not sent: its requester gets
    ERROR at once, saying why, instead of a request dropped on arrival and a requester left
    waiting (for ever, without a timeout)."""
    with anyio.fail_after(15):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            echo = Echo("echo")
            await b.add_worker(echo)
            if via == "stream":
                await c.add_worker(Echo("echo"))
                await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"})
            await a.registry.wait_ready("echo")
            inbox = bus_of(a).subscribe("asker")
            for i, payload in enumerate(UNPARSABLE):
                request = JobRequestMessage.build(
                    source="asker", target="echo", job_id=f"job-{i}", payload=payload
                )
                await bus_of(a).send(request)
                reply = await inbox.receive()
                assert isinstance(reply, JobResponseMessage)
                assert (reply.job_id, reply.status) == (f"job-{i}", JobStatus.ERROR)
                error = reply.response["error"]
                assert "a job_request that the reading runner cannot parse" in error, error
                assert "recursion limit" in error or "number out of range" in error, error
            bus_of(a).unsubscribe("asker")
            assert echo.seen == []
            assert (await run_job(a, "echo"))[0] is JobStatus.COMPLETED
            assert sum(bus_of(r).dropped_messages for r in (a, b, c)) == 0


async def test_a_response_the_reader_cannot_parse_becomes_an_error_response(
    redis_url: str,
) -> None:
    """A response the requester's parser would refuse is replaced by an ERROR response that
    says why: the requester gets exactly one terminal response."""
    with anyio.fail_after(15):
        async with runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            results: list[Any] = []
            for i, value in enumerate(UNPARSABLE, start=1):
                echo.started = anyio.Event()
                async with anyio.create_task_group() as tg:

                    async def ask() -> None:
                        results.append(await run_job(a, "echo", name="slow"))

                    tg.start_soon(ask)
                    await echo.started.wait()
                    forged = JobResponseMessage.build(
                        source="echo",
                        target="a",
                        job_id=echo.slow_jobs[-1],
                        status=JobStatus.COMPLETED,
                        response=value,
                    )
                    await bus_of(b).send(forged)  # as a worker past the core's checks would
                assert len(results) == i
                status, response = results[-1]
                assert status is JobStatus.ERROR and response is not None
                assert "a job_response that the reading runner cannot parse" in response["error"]
            assert bus_of(a).dropped_messages == 0


async def test_a_response_the_requester_cannot_parse_still_ends_its_job(
    redis_url: str,
) -> None:
    """A response written by another client (or another version) that this runner's parser
    refuses ends the job ERROR with the reason, rather than being dropped in silence."""
    ns = namespace_of(redis_url)
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            echo = Echo("echo")
            await b.add_worker(echo)
            await a.registry.wait_ready("echo")
            results: list[Any] = []
            async with anyio.create_task_group() as tg:

                async def ask() -> None:
                    results.append(await run_job(a, "echo", name="slow"))

                tg.start_soon(ask)
                await echo.started.wait()
                (job_id,) = echo.slow_jobs
                forged = (
                    '{"kind":"msg","origin":"b","message":{"type":"job_response","source":"echo",'
                    f'"target":"a","job_id":"{job_id}","status":"completed","response":'
                    + '{"a":' * 300
                    + "1"
                    + "}" * 300
                    + "}}"
                )
                await client.publish(f"{ns}:runner:a", forged)
            ((status, response),) = results
            assert status is JobStatus.ERROR and response is not None
            assert "could not read the job's response from b" in response["error"], response
            assert "recursion limit" in response["error"]


# --------------------------------------------------------------------------- stream groups


async def test_replicas_that_start_while_redis_is_out_of_memory_read_their_stream_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Replicas b and c start while a redis-server with a small ``maxmemory`` is full
    (filled, then its limit lowered under what it holds), so it refuses ``XGROUP CREATE``
    (OOM). Once memory is freed, they make their group and
    read their stream: a job to the replicated worker completes."""
    server = RedisServer(tmp_path / "redis", None, "--maxmemory", "8mb")
    server.start()
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    url = f"{server.url}?heartbeat=0.2"
    try:
        with anyio.fail_after(20):
            client = aioredis.Redis.from_url(server.url)
            async with client:
                fillers = [f"filler{i}" for i in range(6)]
                for key in fillers:
                    await client.set(key, b"x" * 500_000)
                await client.config_set("maxmemory", "2mb")  # 3 MB of fillers: past it now
                with pytest.raises(ResponseError, match="maxmemory"):
                    await client.xgroup_create("probe", "g", id="$", mkstream=True)
                async with runners(url, "a", "b", "c") as (a, b, c):
                    await b.add_worker(Echo("echo"))
                    await c.add_worker(Echo("echo"))
                    await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"})
                    await eventually(lambda: bus_of(b)._no_group == {"echo"}, what="b refused")
                    await client.delete(*fillers)
                    status, response = await run_job(a, "echo", payload={"n": 1}, timeout=5)
                    assert status is JobStatus.COMPLETED, response
                    assert response is not None and response["runner"] in ("b", "c")
                    for _ in range(5):
                        assert (await run_job(a, "echo", timeout=5))[0] is JobStatus.COMPLETED
                    # Each replica tries again every second: both read their stream by then.
                    await eventually(
                        lambda: bus_of(b)._no_group == bus_of(c)._no_group == set(),
                        what="both replicas made their group",
                    )
    finally:
        server.stop()
    lines = _lines(caplog)
    assert any("maxmemory" in line and "trying again every 1 s" in line for line in lines), lines
    assert any("is usable again: reading it" in line for line in lines), lines


# --------------------------------------------------------------------------- leftovers


async def test_connection_breaks_leave_nothing_in_the_streams(
    own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicated jobs in flight while Redis drops every runner's connection (CLIENT KILL,
    three times): once things settle, the worker's stream holds no entry, its pending list
    is empty, and no consumer of a gone session remains (a live one exists once it has
    taken an entry); every job got one answer."""
    monkeypatch.setattr(bus_module, "_SWEEP_EVERY", 0.3)
    url = f"{own_redis_server.url}?heartbeat=0.2"
    with anyio.fail_after(30):
        client = aioredis.Redis.from_url(own_redis_server.url)
        async with client, runners(url, "a", "b", "c") as (a, b, c):
            await b.add_worker(Echo("echo"))
            await c.add_worker(Echo("echo"))
            await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"})
            results: list[Any] = []

            async def ask() -> None:
                results.append(
                    await run_job(a, "echo", name="slow", payload={"seconds": 0.4}, timeout=10)
                )

            sent = 0
            for _ in range(3):
                async with anyio.create_task_group() as tg:
                    for _ in range(10):
                        sent += 1
                        tg.start_soon(ask)
                    await anyio.sleep(0.2)  # taken and running on b and c
                    await client.client_kill_filter(_type="pubsub", skipme=True)
                    await client.client_kill_filter(_type="normal", skipme=True)
                await eventually(lambda: "echo" in a.registry, 5.0, "back")
                await eventually(lambda: bus_of(a)._peers.hosts("echo") == {"b", "c"}, 5.0)
            assert len(results) == sent
            stream = f"{namespace_of(url)}:worker:echo"

            async def leftovers() -> tuple[int, int, set[str]]:
                pending: Any = await client.xpending(stream, "workers")
                consumers: Any = await client.xinfo_consumers(stream, "workers")
                names = {info["name"].decode() for info in consumers}
                return await client.xlen(stream), pending["pending"], names

            live = {
                f"b/{bus_of(b)._instance}",
                f"c/{bus_of(c)._instance}",
            }
            deadline = anyio.current_time() + 10
            while (found := await leftovers())[:2] != (0, 0) or not found[2] <= live:
                assert anyio.current_time() < deadline, found
                await anyio.sleep(0.1)
