"""``PublishLine``: many senders' PUBLISH commands pipelined on one connection, each sender
getting its own reply or error, against a real redis-server."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis._publish_line import HIGH_WATER, PublishLine
from conftest import RedisServer, channel_limited_user
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def running_line(url: str) -> AsyncIterator[tuple[PublishLine, aioredis.Redis]]:
    """A ``PublishLine`` on ``url`` (and its client), open and run until the block ends,
    then closed."""
    client = aioredis.Redis.from_url(url)
    line = PublishLine(client)
    await line.open()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(line.run)
            yield line, client
            tg.cancel_scope.cancel()
    finally:
        await line.close()
        await client.aclose()


@contextlib.contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """Redis reads and answers nothing inside the block (SIGSTOP, then SIGCONT)."""
    process = server.process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(process.pid, signal.SIGCONT)


async def _received(pubsub: aioredis.client.PubSub, count: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < count:
        item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        if item is not None and item["type"] == "message":
            got.append(item["data"])
    return got


async def test_concurrent_senders_each_get_their_reply_and_keep_their_order(
    redis_server: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(redis_server.url)
    pubsub = client.pubsub()
    await pubsub.subscribe("line-order")
    line = PublishLine(client)
    await line.open()
    replies: dict[int, list[int]] = {}
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(line.run)

                async def sender(number: int) -> None:
                    replies[number] = [
                        await line.publish("line-order", f"{number}:{i}".encode())
                        for i in range(20)
                    ]

                async with anyio.create_task_group() as senders:
                    for number in range(50):
                        senders.start_soon(sender, number)
                got = await _received(pubsub, 50 * 20)
                tg.cancel_scope.cancel()
    finally:
        await line.close()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    # Every PUBLISH was answered with its own subscriber count (one subscriber)...
    assert replies == {number: [1] * 20 for number in range(50)}
    # ...and each sender's messages arrived in the order it sent them.
    for number in range(50):
        mine = [int(m.split(b":")[1]) for m in got if m.split(b":")[0] == str(number).encode()]
        assert mine == list(range(20))


async def test_a_refused_command_fails_only_its_own_sender(redis_server: RedisServer) -> None:
    outcomes: dict[str, object] = {}
    async with channel_limited_user(redis_server, "allowed-*") as url:
        client = aioredis.Redis.from_url(url)
        line = PublishLine(client)
        await line.open()
        try:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(line.run)

                    async def send(channel: str) -> None:
                        try:
                            outcomes[channel] = await line.publish(channel, b"x")
                        except ResponseError as exc:
                            outcomes[channel] = exc

                    async with anyio.create_task_group() as senders:
                        for channel in ("allowed-1", "denied", "allowed-2"):
                            senders.start_soon(send, channel)
                    # The line goes on after the refusal.
                    outcomes["after"] = await line.publish("allowed-3", b"x")
                    tg.cancel_scope.cancel()
        finally:
            await line.close()
            await client.aclose()
    assert outcomes["allowed-1"] == 0 and outcomes["allowed-2"] == 0
    assert outcomes["after"] == 0
    assert isinstance(outcomes["denied"], ResponseError)
    assert "no permissions" in str(outcomes["denied"])


async def test_a_broken_connection_fails_every_waiting_sender_and_never_reconnects(
    own_redis_server: RedisServer,
) -> None:
    client = aioredis.Redis.from_url(own_redis_server.url)
    line = PublishLine(client)
    await line.open()
    process = own_redis_server.process
    assert process is not None
    errors: list[BaseException] = []
    reader_error: list[BaseException] = []
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    try:
                        await line.run()
                    except RedisConnectionError as exc:
                        reader_error.append(exc)

                tg.start_soon(read)
                os.kill(process.pid, signal.SIGSTOP)  # the commands go out, no reply comes

                async def send(number: int) -> None:
                    try:
                        await line.publish("c", str(number).encode())
                    except RedisConnectionError as exc:
                        errors.append(exc)

                for number in range(5):
                    tg.start_soon(send, number)
                await anyio.sleep(0.2)
                assert not errors  # still waiting for their replies
                os.kill(process.pid, signal.SIGKILL)  # the socket closes
                process.wait(5)
    finally:
        own_redis_server.process = None
        await line.close()
        await client.aclose()
    assert len(errors) == 5
    assert reader_error, "the reader must raise, so that the bus's session ends"
    with pytest.raises(RedisConnectionError, match="broke"):
        await line.publish("c", b"after")


async def test_senders_cancelled_while_waiting_leave_the_replies_in_step(
    own_redis_server: RedisServer,
) -> None:
    """Senders cancelled before their replies came: each later sender still gets its own
    reply (subscriber counts that differ by channel show a reply handed to the wrong one)."""
    client = aioredis.Redis.from_url(own_redis_server.url)
    pubsub = client.pubsub()
    await pubsub.subscribe("watched")
    line = PublishLine(client)
    await line.open()
    process = own_redis_server.process
    assert process is not None
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(line.run)
                os.kill(process.pid, signal.SIGSTOP)
                try:
                    async with anyio.create_task_group() as doomed:
                        for number in range(5):
                            doomed.start_soon(line.publish, "watched", str(number).encode())
                        await anyio.sleep(0.2)
                        doomed.cancel_scope.cancel()
                finally:
                    os.kill(process.pid, signal.SIGCONT)
                replies = [
                    await line.publish(channel, b"x")
                    for channel in ("watched", "nobody", "watched", "nobody")
                ]
                tg.cancel_scope.cancel()
    finally:
        await line.close()
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    assert replies == [1, 0, 1, 0]


async def test_a_posting_sender_goes_on_before_redis_answers_and_hears_of_a_refusal(
    redis_server: RedisServer,
) -> None:
    """``post()`` returns once the command is on its way, not when Redis answers; a command
    Redis refuses reaches the sender's callback (and only that one's), and the line goes on."""
    refused: dict[str, list[ResponseError]] = {"allowed-post": [], "denied-post": []}
    admin = aioredis.Redis.from_url(redis_server.url)
    async with channel_limited_user(redis_server, "allowed-*") as url:
        client = aioredis.Redis.from_url(url)
        pubsub = admin.pubsub()
        await pubsub.subscribe("allowed-post")
        line = PublishLine(client)
        await line.open()
        try:
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(line.run)
                    for channel in ("allowed-post", "denied-post", "allowed-post"):
                        # No reply can have come: post() never yields to the loop here.
                        await line.post(channel, channel.encode(), refused[channel].append)
                    assert refused == {"allowed-post": [], "denied-post": []}
                    assert await _received(pubsub, 2) == [b"allowed-post", b"allowed-post"]
                    assert await line.publish("allowed-post", b"after") == 1
                    tg.cancel_scope.cancel()
        finally:
            await line.close()
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()
    await admin.aclose()
    assert refused["allowed-post"] == []
    assert len(refused["denied-post"]) == 1
    assert "no permissions" in str(refused["denied-post"][0])


async def test_posting_waits_for_redis_once_too_many_commands_are_unanswered(
    own_redis_server: RedisServer,
) -> None:
    """A producer posting faster than Redis answers is slowed down: past ``HIGH_WATER``
    unanswered commands, ``post()`` waits for room."""
    posted = 0
    with anyio.fail_after(10):
        async with (
            running_line(own_redis_server.url) as (line, _),
            anyio.create_task_group() as tg,
        ):

            async def producer() -> None:
                nonlocal posted
                for _ in range(HIGH_WATER + 10):
                    await line.post("c", b"x")
                    posted += 1

            with paused(own_redis_server):
                tg.start_soon(producer)
                await anyio.sleep(0.3)
                assert posted == HIGH_WATER  # the next one waits for its reply
            with anyio.fail_after(5):
                while posted < HIGH_WATER + 10:
                    await anyio.sleep(0.01)


async def test_redis_py_still_lets_an_idle_line_write_from_the_sender(
    redis_server: RedisServer,
) -> None:
    """The line writes a command from its sender when nothing waits to be written, through
    the connection's stream writer, which redis-py keeps private: if a redis-py release
    drops it, every command takes the writer task (a turn of the event loop more per
    message) and this test says so."""
    with anyio.fail_after(10):
        async with running_line(redis_server.url) as (line, _):
            assert line._transport is not None, "redis-py's connection no longer has _writer"
            await line.post("c", b"x")
            assert not line._outbox  # written at once, not left for the writer task
            assert await line.publish("c", b"y") == 0


async def test_call_sends_any_command_and_each_caller_gets_its_own_reply(
    redis_server: RedisServer,
) -> None:
    """``call`` sends any command on the line, pipelined with the posts: 100 callers at
    once each get their own reply (an ``XADD`` its entry id), in order with the posts, and
    a refusal goes to its caller only."""
    stream = f"line-call-{os.getpid()}"
    replies: dict[int, bytes] = {}
    with anyio.fail_after(10):
        async with running_line(redis_server.url) as (line, client):

            async def caller(number: int) -> None:
                await line.post("nobody", b"x")
                replies[number] = await line.call(
                    "XADD", stream, f"{number + 1}-0", b"m", str(number).encode()
                )

            async with anyio.create_task_group() as callers:
                for number in range(100):
                    callers.start_soon(caller, number)
            with pytest.raises(ResponseError, match="WRONGTYPE"):
                await line.call("LPUSH", stream, b"x")
            assert await line.call("XLEN", stream) == 100
            await client.delete(stream)
    assert replies == {number: f"{number + 1}-0".encode() for number in range(100)}


async def test_a_caller_waits_for_room_before_its_command_is_queued(
    own_redis_server: RedisServer,
) -> None:
    """Past ``HIGH_WATER`` unanswered commands, ``call`` waits before it queues its command
    (so many big requests at once cannot pile up in memory, and a caller cancelled
    meanwhile leaves nothing behind); once Redis answers, it goes on and gets its reply."""
    reply: list[object] = []
    with anyio.fail_after(10):
        async with (
            running_line(own_redis_server.url) as (line, _),
            anyio.create_task_group() as tg,
        ):

            async def caller() -> None:
                reply.append(await line.call("PING"))

            with paused(own_redis_server):
                for _ in range(HIGH_WATER + 1):
                    tg.start_soon(line.post, "c", b"x")
                await anyio.sleep(0.1)
                tg.start_soon(caller)
                await anyio.sleep(0.3)
                assert len(line._waiting) == HIGH_WATER + 1  # the call is not queued
            with anyio.fail_after(5):
                while not reply:
                    await anyio.sleep(0.01)
    assert reply == [b"PONG"]
