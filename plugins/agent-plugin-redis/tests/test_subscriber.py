"""``Subscriber``: a session's channels read straight off their connection, against a real
redis-server, through hiredis and through redis-py's ``read_response`` with its own parser
(as without hiredis), on both of Redis's protocols."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis import _subscriber as subscriber_module
from agent_plugin_redis._settings import CONNECTION_ERRORS
from agent_plugin_redis._subscriber import Subscriber
from conftest import RedisServer, channel_limited_user
from redis._parsers import _AsyncRESP3Parser
from redis.asyncio.connection import Connection as RedisPyConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from test_bus import Echo, run_job, runners

from framework import JobStatus

pytestmark = pytest.mark.anyio

PATHS = ["hiredis", "redis-py"]
PROTOCOLS = [2, 3]


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How the subscriber parses: hiredis (the plugin's dependency) or, with hiredis
    hidden, redis-py's ``read_response``."""
    if request.param == "redis-py":
        monkeypatch.setattr(subscriber_module, "hiredis", None)
    return str(request.param)


@contextlib.asynccontextmanager
async def _subscribed(url: str, *channels: str, path: str = "hiredis") -> AsyncIterator[Subscriber]:
    """A subscriber of ``channels``; on the "redis-py" path its client parses with
    redis-py's pure-Python parser, as an install without hiredis does."""
    if path == "redis-py":
        client = aioredis.Redis.from_url(url, parser_class=_AsyncRESP3Parser)
    else:
        client = aioredis.Redis.from_url(url)
    subscriber = Subscriber(client)
    try:
        await subscriber.open(list(channels))
        # The path asked for is the one taken (a redis-py release without the private
        # stream reader and writer would silently take the slower one).
        assert (subscriber._receiver is not None) is (path == "hiredis")
        yield subscriber
    finally:
        await subscriber.close()
        await client.aclose()


async def _wait_subscribed(admin: aioredis.Redis, channel: str, count: int = 1) -> None:
    with anyio.fail_after(5):
        while dict(await admin.pubsub_numsub(channel)).get(channel.encode(), 0) < count:
            await anyio.sleep(0.01)


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_every_message_arrives_in_order_with_its_channel(
    redis_server: RedisServer, path: str, protocol: int
) -> None:
    """Messages on two channels, published one by one, in one pipelined burst (many in one
    read) and bigger than one read, reach ``deliver`` in the order Redis sent them, each
    with its channel and its bytes as they were (any byte value); confirmations are not
    delivered."""
    url = f"{redis_server.url}?protocol={protocol}"
    admin = aioredis.Redis.from_url(redis_server.url)
    got: list[tuple[bytes, bytes]] = []
    sent: list[tuple[bytes, bytes]] = []
    try:
        with anyio.fail_after(10):
            async with (
                _subscribed(url, "sub-a", "sub-b", path=path) as subscriber,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(subscriber.run, lambda c, d: got.append((c, d)), lambda: False)
                await _wait_subscribed(admin, "sub-b")
                for i in range(20):
                    channel = f"sub-{'ab'[i % 2]}"
                    data = bytes([i]) + b"\r\n\x00" + b"x" * (i * 100)
                    await admin.publish(channel, data)
                    sent.append((channel.encode(), data))
                async with admin.pipeline(transaction=False) as pipe:
                    for i in range(500):
                        pipe.publish("sub-a", b"burst %d" % i)
                        sent.append((b"sub-a", b"burst %d" % i))
                    await pipe.execute()
                for size in (65536 - 10, 65536 + 10, 3 * 65536):  # over one read
                    data = bytes(range(256)) * (size // 256)
                    await admin.publish("sub-b", data)
                    sent.append((b"sub-b", data))
                while len(got) < len(sent):
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    finally:
        await admin.aclose()
    assert got == sent


async def test_a_closed_connection_ends_the_run_with_a_connection_error(
    redis_server: RedisServer, path: str
) -> None:
    """Redis closing the subscribed connection (``CLIENT KILL``) ends ``run`` with a
    ``ConnectionError``, which ends the bus's session (it reconnects), not a silent
    reader that hears nothing any more."""
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        with anyio.fail_after(10):
            async with _subscribed(redis_server.url, "sub-kill", path=path) as subscriber:
                await _wait_subscribed(admin, "sub-kill")
                await admin.client_kill_filter(_type="pubsub", skipme=True)
                with pytest.raises(RedisConnectionError):
                    await subscriber.run(lambda c, d: None, lambda: False)
    finally:
        await admin.aclose()


async def test_a_refused_subscription_is_raised(redis_server: RedisServer, path: str) -> None:
    """A user that may not use a channel: Redis refuses the SUBSCRIBE, and ``run`` raises
    its error (the bus's session then ends and retries, saying why), instead of reading a
    connection that will never carry a message."""
    with anyio.fail_after(10):
        async with (
            channel_limited_user(redis_server, "allowed") as url,
            _subscribed(url, "forbidden", path=path) as subscriber,
        ):
            with pytest.raises(ResponseError, match="no permissions"):
                await subscriber.run(lambda c, d: None, lambda: False)


async def test_bytes_that_are_no_redis_protocol_end_the_session(path: str) -> None:
    """A server that sends garbage after the subscription's confirmation (a broken proxy,
    say): ``run`` raises a redis-py error, which ends the bus's session (it reconnects),
    instead of an exception the session does not know, which would end the runner."""

    async def fake_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if b"SUBSCRIBE" in data:
                writer.write(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n?garbage\r\n")
            else:  # the handshake's commands (CLIENT SETINFO...)
                writer.write(b"+OK\r\n" * data.count(b"*"))
            await writer.drain()

    server = await asyncio.start_server(fake_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with anyio.fail_after(10):
            url = f"redis://127.0.0.1:{port}/0?protocol=2"
            async with _subscribed(url, "x", path=path) as subscriber:
                with pytest.raises(CONNECTION_ERRORS):
                    await subscriber.run(lambda c, d: None, lambda: False)
    finally:
        server.close()


@pytest.mark.parametrize("pause", [True, False])
async def test_pause_lets_what_a_message_woke_run_before_the_next_one(
    redis_server: RedisServer, pause: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read by redis-py (one message per call): when ``pause()`` says so, a task a message
    woke runs before the next message is delivered (a job's reply goes out before the
    reader reads on); otherwise messages that came together are all delivered first
    (under load, a turn's replies go out in one write). (Read by the subscriber's own
    protocol, every message of a read is delivered in the read's callback, and what they
    woke runs before the next read.)"""
    monkeypatch.setattr(subscriber_module, "hiredis", None)
    admin = aioredis.Redis.from_url(redis_server.url)
    events: list[str] = []
    loop = asyncio.get_running_loop()

    def deliver(channel: bytes, data: bytes) -> None:
        events.append(data.decode())
        loop.call_soon(events.append, f"woken by {data.decode()}")

    pauses: Callable[[], bool] = lambda: pause  # noqa: E731
    try:
        with anyio.fail_after(10):
            async with (
                _subscribed(redis_server.url, "sub-pause", path="redis-py") as subscriber,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(subscriber.run, deliver, pauses)
                await _wait_subscribed(admin, "sub-pause")
                async with admin.pipeline(transaction=False) as pipe:
                    pipe.publish("sub-pause", b"1")
                    pipe.publish("sub-pause", b"2")
                    await pipe.execute()
                while len(events) < 4:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    finally:
        await admin.aclose()
    if pause:
        assert events == ["1", "woken by 1", "2", "woken by 2"]
    else:
        assert events == ["1", "2", "woken by 1", "woken by 2"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_runners_exchange_jobs_and_heartbeats_either_way(
    redis_server: RedisServer, path: str, protocol: int
) -> None:
    """Two runners whose subscribers parse with hiredis, or without it, on either protocol:
    they see each other's workers (heartbeats on the broadcast channel) and run jobs both
    ways (requests and replies on their own channels)."""
    url = f"{redis_server.url}?namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2&protocol={protocol}"
    with anyio.fail_after(20):
        async with runners(url, "a", "b") as (a, b):
            await a.add_worker(Echo("echo-a"))
            await b.add_worker(Echo("echo-b"))
            await a.registry.wait_ready("echo-b")
            await b.registry.wait_ready("echo-a")
            for n in range(20):
                status, response = await run_job(a, "echo-b", payload={"n": n})
                assert (status, response) == (
                    JobStatus.COMPLETED,
                    {"payload": {"n": n}, "runner": "b", "requester": "a"},
                )
                status, response = await run_job(b, "echo-a", payload={"n": n})
                assert (status, response) == (
                    JobStatus.COMPLETED,
                    {"payload": {"n": n}, "runner": "a", "requester": "b"},
                )


def test_runners_work_under_plain_asyncio_run(redis_server: RedisServer) -> None:
    """A host that runs its runners with ``asyncio.run`` (pytest-asyncio, uvicorn,
    Jupyter), not ``anyio.run``: messages delivered from the read callback still start
    what they start through anyio (a job with an idempotency key, which the bus follows
    with a task of its own), and the runners keep working. Bounded by ``wait_for``: this
    test must not run under anyio's pytest plugin, which would mark the context."""
    url = f"{redis_server.url}?namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2&idempotency_ttl=60"

    async def scenario() -> list[tuple[JobStatus | None, object]]:
        outcomes = []
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo-b"))
            await a.registry.wait_ready("echo-b")
            for n in range(3):
                headers = {"idempotency-key": f"key-{n % 2}"}
                outcomes.append(await run_job(a, "echo-b", payload={"n": n}, headers=headers))
        return outcomes

    outcomes = asyncio.run(asyncio.wait_for(scenario(), 20))
    expected = {"runner": "b", "requester": "a"}
    assert outcomes == [
        (JobStatus.COMPLETED, {"payload": {"n": 0}, **expected}),
        (JobStatus.COMPLETED, {"payload": {"n": 1}, **expected}),
        (JobStatus.COMPLETED, {"payload": {"n": 0}, **expected}),  # key-0 answered again
    ]


async def test_what_came_before_the_takeover_is_delivered_in_order(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages that redis-py's stream reader took in before the subscriber took the
    socket over (more than its buffer holds, so it had paused reading) are delivered
    first, in order, then the ones that come after."""
    admin = aioredis.Redis.from_url(redis_server.url)
    big = [bytes([i]) * 100_000 for i in range(4)]
    send_command = RedisPyConnection.send_command

    async def subscribe_then_wait(self: RedisPyConnection, *args: object, **kw: object) -> None:
        await send_command(self, *args, **kw)
        if args[:1] != ("SUBSCRIBE",):
            return
        await _wait_subscribed(admin, "sub-early")
        for data in big:
            await admin.publish("sub-early", data)
        while self._writer.transport.is_reading():  # type: ignore[union-attr]
            await anyio.sleep(0.01)  # until its buffer is full and it stopped reading

    monkeypatch.setattr(RedisPyConnection, "send_command", subscribe_then_wait)
    got: list[bytes] = []
    try:
        with anyio.fail_after(10):
            async with (
                _subscribed(redis_server.url, "sub-early") as subscriber,
                anyio.create_task_group() as tg,
            ):
                monkeypatch.undo()
                tg.start_soon(subscriber.run, lambda c, d: got.append(d), lambda: False)
                await admin.publish("sub-early", b"after")
                while len(got) < 5:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    finally:
        await admin.aclose()
    assert got == [*big, b"after"]


async def test_messages_before_the_server_closed_are_delivered_then_the_end_raised(
    path: str,
) -> None:
    """A server that sends three messages and closes the connection before ``run``
    starts: the three are delivered, then ``run`` raises ``ConnectionError``."""

    async def fake_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if b"SUBSCRIBE" in data:
                writer.write(b"*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n")
                for i in range(3):
                    writer.write(b"*3\r\n$7\r\nmessage\r\n$1\r\nx\r\n$2\r\nm%d\r\n" % i)
                await writer.drain()
                writer.close()
                return
            writer.write(b"+OK\r\n" * data.count(b"*"))  # the handshake's commands
            await writer.drain()

    server = await asyncio.start_server(fake_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    got: list[bytes] = []
    try:
        with anyio.fail_after(10):
            url = f"redis://127.0.0.1:{port}/0?protocol=2"
            async with _subscribed(url, "x", path=path) as subscriber:
                await anyio.sleep(0.3)  # the messages and the end have come
                with pytest.raises(CONNECTION_ERRORS):
                    await subscriber.run(lambda c, d: got.append(d), lambda: False)
    finally:
        server.close()
    assert got == [b"m0", b"m1", b"m2"]
