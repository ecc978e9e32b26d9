"""``Subscriber``: the channels of one session, read straight off their connection.

Every message a runner receives on a channel (requests, replies, heartbeats) comes through
one subscribed connection. redis-py's ``PubSub.get_message`` takes each message through
its health check, its retry wrapper, its push-notification handlers (a logger looked up
for every message) and a dict of its own: a large share of the receiving side of a job's
round trip. Here the connection is redis-py's own (its URL, TLS, credentials and
protocol), but once ``SUBSCRIBE`` is sent, its bytes are parsed by hiredis as they come,
and every message in one read is handed to the bus before the next read.

redis-py keeps the connection's stream reader private (``_reader``, as ``PublishLine``
uses ``_writer``); without it, or without hiredis, messages are read through the
connection's ``read_response`` instead: slower, the same messages.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError, InvalidResponse, ResponseError

hiredis: Any
try:  # a dependency of the plugin (redis[hiredis])
    import hiredis
except ImportError:  # pragma: no cover - exercised by a test that hides it
    hiredis = None

if TYPE_CHECKING:
    import redis.asyncio as aioredis

READ_SIZE = 65536
"""Bytes asked of the socket per read (redis-py's own default)."""
_MORE = object()
"""What the parser returns when it needs more bytes (``False`` is a RESP3 value)."""

Deliver = Callable[[bytes, bytes], None]
"""``deliver(channel, data)``: called for every message, in the order Redis sent them."""
Pause = Callable[[], bool]
"""``pause()``: after a message, whether to let the other tasks run before the next one."""


class Subscriber:
    """One connection of ``client``'s pool, subscribed to the channels of a session.

    ``open(channels)`` connects and subscribes; ``run(deliver, pause)``, called once, reads
    until the connection breaks or the task is cancelled; ``close()`` ends it.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None
        self._stream: asyncio.StreamReader | None = None
        self._parser: Any = None

    async def open(self, channels: list[str]) -> None:
        """Connect (a new connection, with the client's settings) and send ``SUBSCRIBE``;
        messages published once Redis has taken it are read by ``run``."""
        connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        self._connection = connection
        await connection.connect()
        await connection.send_command("SUBSCRIBE", *channels, check_health=False)
        stream = getattr(connection, "_reader", None)
        if hiredis is not None and _is_stream_reader(stream):
            self._stream = stream
            # Errors as redis-py raises them: bytes that are no RESP end the session
            # (``InvalidResponse`` is a ``RedisError``), and a refusal is returned.
            self._parser = hiredis.Reader(
                protocolError=InvalidResponse, replyError=ResponseError, notEnoughData=_MORE
            )

    async def run(self, deliver: Deliver, pause: Pause) -> None:
        """Hand every message to ``deliver(channel, data)``; after one, when ``pause()``
        says so, the other tasks run before the next one is handed over (a job the message
        started, say). Subscription confirmations are skipped.

        Raises:
            ConnectionError, OSError: the connection closed or broke.
            InvalidResponse: what came is not Redis's protocol.
            ResponseError: Redis refused a subscription (an ACL, say).
        """
        if self._stream is None:
            await self._run_through_redis_py(deliver, pause)
            return
        stream = self._stream
        feed, gets = self._parser.feed, self._parser.gets
        while True:
            data = await stream.read(READ_SIZE)
            if not data:
                raise ConnectionError("Redis closed the subscribed connection")
            feed(data)
            while (item := gets()) is not _MORE:
                await _handle(item, deliver, pause)

    async def _run_through_redis_py(self, deliver: Deliver, pause: Pause) -> None:
        connection = self._connection
        while True:
            item = await connection.read_response(
                disable_decoding=True, timeout=math.inf, push_request=True
            )
            await _handle(item, deliver, pause)

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        connection, self._connection = self._connection, None
        self._stream = self._parser = None
        if connection is not None:
            await connection.disconnect(nowait=True)


async def _handle(item: Any, deliver: Deliver, pause: Pause) -> None:
    """One reply off the connection: a message is delivered, a refusal raised, anything
    else (a subscription's confirmation) skipped."""
    if isinstance(item, list) and len(item) == 3 and item[0] == b"message":
        channel, data = item[1], item[2]
        if isinstance(channel, bytes) and isinstance(data, bytes):
            deliver(channel, data)
            if pause():
                await asyncio.sleep(0)
    elif isinstance(item, ResponseError):  # an error reply: the parser returns it
        raise item


def _is_stream_reader(stream: object) -> bool:
    return isinstance(stream, asyncio.StreamReader)
