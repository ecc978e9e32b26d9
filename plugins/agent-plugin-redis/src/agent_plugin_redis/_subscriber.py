"""``Subscriber``: the channels of one session, read straight off their connection.

Every message a runner receives on a channel (requests, replies, heartbeats) comes through
one subscribed connection. redis-py's ``PubSub.get_message`` takes each message through
its health check, its retry wrapper, its push-notification handlers (a logger looked up
for every message) and a dict of its own, and a task woken by the stream reader: a large
share of the receiving side of a job's round trip. Here the connection is redis-py's own
(its URL, TLS, credentials and protocol), but once ``SUBSCRIBE`` is sent, the socket's
transport is handed to a protocol of this module: hiredis parses the bytes as the event
loop reads them, and each message goes to the bus at once, in the same callback. The
tasks a message wakes (the job it starts, the requester it answers) run before anything
more is read.

Delivering from a read callback means there is no current task while the bus handles a
message: it runs in a copy of the reading task's context, marked as asyncio for sniffio
(anyio asks it which library runs, and without a task it cannot tell), and nothing on
the delivery path may wait or enter a cancel scope (it never did: it only hands messages
over and starts tasks).

redis-py keeps the connection's stream reader and writer private (``_reader`` and
``_writer``, as ``PublishLine`` uses the writer); without them, or without hiredis,
messages are read through the connection's ``read_response`` instead: slower, the same
messages.
"""

from __future__ import annotations

import asyncio
import contextvars
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

_MORE = object()
"""What the parser returns when it needs more bytes (``False`` is a RESP3 value)."""

Deliver = Callable[[bytes, bytes], None]
"""``deliver(channel, data)``: called for every message, in the order Redis sent them."""
Pause = Callable[[], bool]
"""``pause()``: after a message read by redis-py, whether to let the other tasks run before
the next one."""


class Subscriber:
    """One connection of ``client``'s pool, subscribed to the channels of a session.

    ``open(channels)`` connects and subscribes; ``run(deliver, pause)``, called once,
    delivers until the connection breaks or the task is cancelled; ``close()`` ends it.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None
        self._receiver: _Receiver | None = None

    async def open(self, channels: list[str]) -> None:
        """Connect (a new connection, with the client's settings), send ``SUBSCRIBE`` and
        take the socket over; what comes from then on is kept until ``run``."""
        connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        self._connection = connection
        await connection.connect()
        await connection.send_command("SUBSCRIBE", *channels, check_health=False)
        if hiredis is not None:
            self._receiver = _Receiver.take_over(connection)

    async def run(self, deliver: Deliver, pause: Pause) -> None:
        """Hand every message to ``deliver(channel, data)``; subscription confirmations are
        skipped. ``pause()`` is asked after each message only when redis-py reads them.

        Raises:
            ConnectionError, OSError: the connection closed or broke.
            InvalidResponse: what came is not Redis's protocol.
            ResponseError: Redis refused a subscription (an ACL, say).
        """
        receiver = self._receiver
        if receiver is None:
            await self._run_through_redis_py(deliver, pause)
            return
        try:
            await receiver.deliver_to(deliver)
        finally:
            receiver.deliver = None  # cancelled: nothing more is handed over

    async def _run_through_redis_py(self, deliver: Deliver, pause: Pause) -> None:
        connection = self._connection
        while True:
            item = await connection.read_response(
                disable_decoding=True, timeout=math.inf, push_request=True
            )
            if _handled(item, deliver) and pause():
                await asyncio.sleep(0)

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        connection, self._connection = self._connection, None
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.close()
        if connection is not None:
            # ``nowait``: redis-py's stream protocol no longer hears of the socket once
            # the receiver took it over, so waiting for it to close would never end.
            await connection.disconnect(nowait=True)


class _Receiver(asyncio.Protocol):
    """The subscribed socket's protocol once ``take_over`` has run: parses what the event
    loop reads and delivers each message from the read callback itself."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        # Errors as redis-py raises them: bytes that are no RESP end the session
        # (``InvalidResponse`` is a ``RedisError``), and a refusal is returned.
        self._parser = hiredis.Reader(
            protocolError=InvalidResponse, replyError=ResponseError, notEnoughData=_MORE
        )
        self.deliver: Deliver | None = None
        self._context = contextvars.Context()  # the reading task's, from ``deliver_to``
        self._failed = False
        """A refusal, bytes that are no RESP, or an error of the bus: nothing more is
        delivered. (After an end of file, what came before it still is.)"""
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    def take_over(cls, connection: Any) -> _Receiver | None:
        """The receiver of ``connection``'s socket, with whatever redis-py's stream reader
        had read already; None (redis-py keeps reading) when its private reader and writer
        are not what this expects."""
        stream = getattr(connection, "_reader", None)
        writer = getattr(connection, "_writer", None)
        if not (
            isinstance(stream, asyncio.StreamReader)
            and isinstance(writer, asyncio.StreamWriter)
            and isinstance(getattr(stream, "_buffer", None), bytearray)
        ):
            return None
        transport = writer.transport
        if not isinstance(transport, asyncio.Transport):
            return None
        receiver = cls(transport)
        buffered: bytearray = getattr(stream, "_buffer")  # noqa: B009 - private, checked above
        if buffered:
            receiver._parser.feed(bytes(buffered))
            buffered.clear()
        transport.set_protocol(receiver)
        if stream.exception() is not None or stream.at_eof():
            receiver._end(ConnectionError("Redis closed the subscribed connection"))
        # (A closed connection is not reported to redis-py's stream protocol any more.)
        elif not transport.is_reading():  # paused by the stream reader's flow control
            transport.resume_reading()
        return receiver

    async def deliver_to(self, deliver: Deliver) -> None:
        """Deliver what came so far and everything after, until the connection ends."""
        self._context = _delivery_context()
        self.deliver = deliver
        self._context.run(self._drain)
        await asyncio.shield(self._ended)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        if self.deliver is not None:
            self._context.run(self._drain)

    def _drain(self) -> None:
        deliver, gets = self.deliver, self._parser.gets
        if deliver is None or self._failed:
            return
        try:
            while (item := gets()) is not _MORE:
                _handled(item, deliver)
        except Exception as exc:  # a refusal, bytes that are no RESP, or a bus bug
            self._failed = True
            self._end(exc)
            self._transport.close()

    def eof_received(self) -> bool:
        self._end(ConnectionError("Redis closed the subscribed connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionError("the subscribed connection was closed"))

    def _end(self, error: BaseException) -> None:
        if not self._ended.done():
            self._ended.set_exception(error)
            self._ended.exception()  # retrieved: nobody may be waiting any more

    def close(self) -> None:
        self.deliver = None
        self._end(ConnectionError("the subscriber was closed"))


def _delivery_context() -> contextvars.Context:
    """A copy of the current (reading) task's context, marked as asyncio for sniffio:
    anyio asks sniffio which library runs, and in a read callback there is no task that
    would tell it (``anyio.run`` marks its context, ``asyncio.run`` does not)."""
    context = contextvars.copy_context()
    try:
        import sniffio
    except ImportError:  # anyio then assumes asyncio by itself
        return context
    context.run(sniffio.current_async_library_cvar.set, "asyncio")
    return context


def _handled(item: Any, deliver: Deliver) -> bool:
    """One reply off the connection: a message is delivered (True), a refusal raised,
    anything else (a subscription's confirmation) skipped."""
    if isinstance(item, list) and len(item) == 3 and item[0] == b"message":
        channel, data = item[1], item[2]
        if isinstance(channel, bytes) and isinstance(data, bytes):
            deliver(channel, data)
            return True
    elif isinstance(item, ResponseError):  # an error reply: the parser returns it
        raise item
    return False
