"""``PublishLine``: the PUBLISH commands of one session, pipelined on one connection.

Every message the bus sends on a channel (requests to one runner, replies, cancels) is a
``PUBLISH``. Through redis-py's client, each one takes a connection from the pool, goes
through the retry wrapper and waits for its reply before the connection is free again: a
large share of a job's round trip in CPU, and under load hundreds of connections. Here
every sender writes its command on the same connection at once and awaits its own reply;
one reader task takes the replies in order (Redis answers a connection's commands in the
order it got them) and hands each to its sender. So a sender still learns whether Redis
took its message (an error reply is raised to it), messages from one runner keep their
order, and many senders share one socket with no pool and no lock.

The line belongs to one session with Redis (``agent_plugin_redis._session``): when its
connection breaks, every sender still waiting gets a ``ConnectionError``, the reader's
error ends the session, and the next session opens a new line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from redis.exceptions import ConnectionError, ResponseError

if TYPE_CHECKING:
    import redis.asyncio as aioredis


class PublishLine:
    """One connection of ``client``'s pool, for the pipelined PUBLISH commands of a session.

    ``open()`` connects it, ``read_replies()`` (run for the whole session) hands out the
    replies, and ``publish()`` may be called from any number of tasks in between.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._more: asyncio.Future[None] | None = None
        """Set when a command is sent while the reader has nothing to read."""
        self._closed: str | None = "the line to Redis is not open yet"

    async def open(self) -> None:
        """Connect (a new connection, with the client's URL, TLS and credentials)."""
        connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        await connection.connect()
        self._connection = connection
        self._closed = None

    async def publish(self, channel: str, data: bytes) -> int:
        """``PUBLISH channel data``: how many subscribers got it.

        Raises:
            ConnectionError: the line is closed or broke before the reply came.
            ResponseError: Redis refused the command (out of memory, say).
        """
        connection = self._connection
        if self._closed is not None or not connection.is_connected:
            raise ConnectionError(self._closed or "the line to Redis is closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        # Queued before the write: the reply may be read before the write's drain returns.
        self._waiting.append(future)
        more = self._more
        if more is not None and not more.done():
            more.set_result(None)
        try:
            await connection.send_packed_command(
                connection.pack_command("PUBLISH", channel, data), check_health=False
            )
        except BaseException as exc:
            # A write that failed (or was cancelled half-way) leaves the connection unusable:
            # redis-py has closed it; every other sender still waiting is told.
            future.cancel()
            self._close(f"{type(exc).__name__}: {exc}")
            raise
        reply: int = await future
        return reply

    async def read_replies(self) -> None:
        """Hand each reply to its sender, in order, until the connection breaks (raises
        ``ConnectionError``, which ends the session) or the task is cancelled."""
        connection = self._connection
        waiting = self._waiting
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not waiting:
                    self._more = loop.create_future()
                    await self._more
                    continue
                try:
                    reply: Any = await connection.read_response(timeout=float("inf"))
                    failed: BaseException | None = None
                except ResponseError as exc:
                    reply, failed = None, exc
                if not waiting:  # a reply nobody asked for: the stream is out of step
                    raise ConnectionError("Redis sent a reply to no command on the publish line")
                future = waiting.popleft()
                if not future.done():
                    if failed is not None:
                        future.set_exception(failed)
                    else:
                        future.set_result(reply)
        except BaseException as exc:
            self._close(f"{type(exc).__name__}: {exc}")
            raise

    def _close(self, reason: str) -> None:
        """Fail every sender still waiting, and refuse new ones."""
        if self._closed is None:
            self._closed = f"the line to Redis broke ({reason})"
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(ConnectionError(self._closed))

    async def close(self) -> None:
        """Close the connection (idempotent); waiting senders get ``ConnectionError``."""
        self._close("closed")
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)
