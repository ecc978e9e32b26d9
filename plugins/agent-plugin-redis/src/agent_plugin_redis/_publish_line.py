"""``PublishLine``: the commands on a job's path of one session, pipelined on one connection.

Every message the bus sends on a channel (requests to one runner, replies, cancels) is a
``PUBLISH``; a request to a worker's stream is an ``XADD`` and a durable job's response a
script (``call()``). Through redis-py's client, each one takes a connection from the pool, goes
through the retry wrapper and waits for its reply before the connection is free again: a
large share of a job's round trip in CPU, and under load hundreds of connections. Here
every sender queues its command on the same connection and awaits its own reply. A
command sent while the line is idle (no other command unanswered) goes to the socket at
once, from the sender; otherwise one writer task sends whatever was queued meanwhile in
one write (one system call for many jobs' messages under load). One reader task, always
reading, takes the replies in order (Redis answers a connection's commands in the order
it got them) and hands each to its sender. So a sender still learns whether Redis took
its message (an error reply is raised to it), messages from one runner keep their order,
many senders share one socket with no pool and no lock, and a sender that is cancelled
never leaves half a command on the wire.

A sender that needs no reply count posts instead (``post()``): its command is queued and
it goes on at once, without waiting a turn of the event loop for Redis's answer; a refusal
reaches it through a callback. It waits for room while more than ``HIGH_WATER`` commands
are unanswered or more than ``OUTBOX_BYTES`` wait to be written: a producer faster than
Redis slows down instead of queueing without bound.

The line belongs to one session with Redis (``agent_plugin_redis._session``): when its
connection breaks, every sender still waiting gets a ``ConnectionError``, the reader's
error ends the session, and the next session opens a new line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import ConnectionError, ResponseError

pack_command: Any
try:  # the C packer of hiredis (installed with the plugin), a tenth of redis-py's cost
    from hiredis import pack_command
except ImportError:  # pragma: no cover - hiredis is a dependency
    pack_command = None

_PING = b"*1\r\n$4\r\nPING\r\n"

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis.asyncio as aioredis

HIGH_WATER = 256
"""Commands unanswered (queued or written) beyond which ``post()`` waits for room."""
OUTBOX_BYTES = 1024 * 1024
"""Bytes of commands not yet written beyond which ``post()`` waits for room: with large
messages, what a producer may queue is bounded in memory too."""


class PublishLine:
    """One connection of ``client``'s pool, for the pipelined commands of a session.

    ``open()`` connects it, ``run()`` (for the whole session) writes the commands and hands
    out the replies, and ``publish()`` and ``post()`` may be called from any number of
    tasks meanwhile; ``call()`` sends any other command.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None
        self._waiting: deque[asyncio.Future[Any] | Callable[[ResponseError], None] | None] = deque()
        """One entry per command written or queued, in order, for its reply: the future of
        a sender that waits, or the refusal callback (or None) of one that posted."""
        self._outbox: list[bytes] = []
        """Commands queued for the writer's next write."""
        self._written: asyncio.Future[None] | None = None
        """Set when a command is queued while the writer waits for one."""
        self._outbox_bytes = 0
        """The size of ``_outbox``."""
        self._sent = 0
        """Commands sent or queued on this line so far."""
        self._answered = 0
        """Commands Redis has answered so far."""
        self._progress: asyncio.Future[None] | None = None
        """Set when ``flushed()`` waits and a reply comes."""
        self._room: asyncio.Future[None] | None = None
        """Set when a posting sender waits for room and the reader or writer made some."""
        self._transport: asyncio.WriteTransport | None = None
        """The connection's socket, written at once when nothing else waits for it."""
        self._closed: str | None = "the line to Redis is not open yet"

    async def open(self) -> None:
        """Connect (a new connection, with the client's URL, TLS and credentials)."""
        connection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        await connection.connect()
        self._connection = connection
        # redis-py keeps the connection's stream writer private (it has been ``_writer``
        # since its asyncio client came); without it every command takes the writer task.
        writer = getattr(connection, "_writer", None)
        if isinstance(writer, asyncio.StreamWriter):
            self._transport = writer.transport
        self._closed = None

    def _pack(self, *args: str | bytes | int | float | memoryview) -> bytes:
        if pack_command is not None:
            packed: bytes = pack_command(args)
            return packed
        return b"".join(self._connection.pack_command(*args))

    def _send(self, command: bytes) -> None:
        """Write ``command`` now if it is the only command unanswered (the line was idle)
        and the socket took everything so far; else queue it for the writer task, which
        sends whatever a turn of the event loop queued in one write and waits for room."""
        self._sent += 1
        transport = self._transport
        if (
            len(self._waiting) == 1
            and not self._outbox
            and transport is not None
            and not transport.get_write_buffer_size()
            and not transport.is_closing()
        ):
            transport.write(command)
            return
        self._outbox.append(command)
        self._outbox_bytes += len(command)
        _wake(self._written)

    @property
    def idle(self) -> bool:
        """No command is queued or unanswered."""
        return not self._waiting

    async def publish(self, channel: str, data: bytes) -> int:
        """``PUBLISH channel data``: how many subscribers got it.

        Raises:
            ConnectionError: the line is closed or broke before the reply came.
            ResponseError: Redis refused the command (out of memory, say).
        """
        reply: int = await self.call("PUBLISH", channel, data)
        return reply

    async def call(self, *args: str | bytes | int | float | memoryview) -> Any:
        """Any command (``XADD``, ``EVALSHA``...), pipelined with the others: Redis's
        reply, as the connection reads it (bytes, not decoded). While the line is over its
        bounds (see ``post``), the caller waits for room before its command is queued.

        Raises:
            ConnectionError: the line is closed or broke before the reply came.
            ResponseError: Redis refused the command.
        """
        if self._full():  # before queueing: a cancelled caller leaves nothing behind
            await self._room_made()
        if self._closed is not None:
            raise ConnectionError(self._closed)
        command = self._pack(*args)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._send(command)
        return await future

    async def post(
        self,
        channel: str,
        data: bytes,
        on_refused: Callable[[ResponseError], None] | None = None,
    ) -> None:
        """``PUBLISH channel data`` without waiting for Redis's reply. If Redis refuses
        the command, ``on_refused`` is called with its error, from the task reading the
        replies; a break of the line ends the session, which ends what was in flight
        through it. The command is queued at once; then, while more than ``HIGH_WATER``
        commands are unanswered or more than ``OUTBOX_BYTES`` wait to be written, the
        sender waits for room.

        Raises:
            ConnectionError: the line is closed, or broke while this sender waited.
        """
        if self._closed is not None:
            raise ConnectionError(self._closed)
        command = self._pack("PUBLISH", channel, data)
        self._waiting.append(on_refused)
        self._send(command)
        # Backpressure, once the command is queued: cancelling this wait loses nothing,
        # and a refusal still reaches ``on_refused``.
        await self._room_made()
        if self._closed is not None:
            raise ConnectionError(self._closed)

    def _full(self) -> bool:
        return len(self._waiting) > HIGH_WATER or self._outbox_bytes > OUTBOX_BYTES

    async def _room_made(self) -> None:
        """Return once no more than ``HIGH_WATER`` commands are unanswered and no more than
        ``OUTBOX_BYTES`` wait to be written, or the line is closed."""
        while self._full() and self._closed is None:
            room = self._room
            if room is None or room.done():
                room = self._room = asyncio.get_running_loop().create_future()
            await room

    async def flushed(self) -> None:
        """Return once every command sent before this call is answered, or the line is
        closed: what senders posted until now has then reached Redis."""
        target = self._sent
        while self._answered < target and self._closed is None:
            progress = self._progress
            if progress is None or progress.done():
                progress = self._progress = asyncio.get_running_loop().create_future()
            await progress

    def keep_alive(self) -> None:
        """Send a ``PING`` if no command is unanswered, so that a Redis ``timeout`` (idle
        clients) does not close an idle line; its reply, or refusal, is ignored."""
        if self._closed is None and not self._waiting:
            self._waiting.append(None)
            self._send(_PING)

    async def run(self) -> None:
        """Write the queued commands and hand out the replies until the connection breaks
        (raises ``ConnectionError``, which ends the session) or the task is cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write)
                await self._read()
        except BaseExceptionGroup as group:
            self._close(str(group))
            raise _first_leaf(group) from None
        except BaseException as exc:
            self._close(f"{type(exc).__name__}: {exc}")
            raise

    async def _write(self) -> None:
        connection = self._connection
        loop = asyncio.get_running_loop()
        while True:
            if not self._outbox:
                self._written = loop.create_future()
                await self._written
                continue
            batch, self._outbox, self._outbox_bytes = self._outbox, [], 0
            _wake(self._room)
            await connection.send_packed_command(batch, check_health=False)

    async def _read(self) -> None:
        connection = self._connection
        waiting = self._waiting
        while True:
            try:
                reply: Any = await connection.read_response(timeout=float("inf"))
                failed: ResponseError | None = None
            except ResponseError as exc:
                reply, failed = None, exc
            if not waiting:  # a reply nobody asked for: the stream is out of step
                raise ConnectionError("Redis sent a reply to no command on the publish line")
            waiter = waiting.popleft()
            self._answered += 1
            _wake(self._progress)
            if len(waiting) == HIGH_WATER:
                _wake(self._room)
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():  # (not a sender cancelled meanwhile)
                    if failed is not None:
                        waiter.set_exception(failed)
                    else:
                        waiter.set_result(reply)
            elif failed is not None and waiter is not None:
                waiter(failed)

    def _close(self, reason: str) -> None:
        """Fail every sender still waiting, and refuse new ones."""
        if self._closed is None:
            self._closed = f"the line to Redis broke ({reason})"
        self._outbox, self._outbox_bytes = [], 0
        self._transport = None
        _wake(self._room)
        _wake(self._progress)
        while self._waiting:
            waiter = self._waiting.popleft()
            if isinstance(waiter, asyncio.Future) and not waiter.done():
                waiter.set_exception(ConnectionError(self._closed))

    async def close(self) -> None:
        """Close the connection (idempotent); waiting senders get ``ConnectionError``."""
        self._close("closed")
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect(nowait=True)


def _wake(future: asyncio.Future[None] | None) -> None:
    """Wake whoever waits on ``future`` (a one-shot signal), if anyone does."""
    if future is not None and not future.done():
        future.set_result(None)


def _first_leaf(error: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
