"""The waits of the job path: ``Wakeup`` for the one task that reads, ``Room`` for the
producers that must not outrun it.

Waiting through an anyio memory object stream or a fresh ``anyio.Event`` costs a
checkpoint, an Event and a task lookup per wait, a large share of a local round trip
(bench/roundtrip.py measures the round trip). On asyncio ``Wakeup`` waits on one bare future
instead; on any other backend it falls back to ``anyio.Event``. Cancellation works as
usual: anyio cancels the waiting task, which cancels the future.

``Room`` is the slow path of a bounded buffer and costs nothing while the buffer has room:
a producer checks ``FULL`` (an empty dict while nothing is full) after each item it sends.
"""

from __future__ import annotations

import asyncio
import sys
from types import FrameType
from typing import Any

import anyio


class Wakeup:
    """``await wait()`` until ``set()`` is called. One waiter at a time; reusable."""

    __slots__ = ("_waiter",)

    def __init__(self) -> None:
        self._waiter: Any = None

    async def wait(self) -> None:
        """Wait for the next ``set()`` (one that came before this call does not count)."""
        loop = asyncio._get_running_loop()
        if loop is not None:
            future = self._waiter = loop.create_future()
            try:
                await future
            finally:
                if self._waiter is future:
                    self._waiter = None
        else:  # another anyio backend (trio)
            event = self._waiter = anyio.Event()
            await event.wait()

    @property
    def waiting(self) -> bool:
        """Whether a task waits now and nothing has woken it yet: neither ``set()`` nor a
        cancellation (on asyncio, its future is cancelled before the task resumes)."""
        waiter = self._waiter
        if waiter is None:
            return False
        if isinstance(waiter, asyncio.Future):
            return not waiter.done()
        return not waiter.is_set()

    def set(self) -> None:
        """Wake the waiting task, if any."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiter.set()


FULL: dict[str, Room] = {}
"""The rooms that are full now, by key (a job id)."""


class Room:
    """Room in one bounded buffer, which any number of producers wait for.

    The buffer's owner calls ``fill()`` when the buffer reaches its bound: the room is then
    listed in ``FULL`` under its key, where a producer finds it and awaits ``wait()``. The
    owner calls ``free()`` when there is room again, when nobody will read the buffer any
    more, or when the buffer's job ended: every waiting producer goes on at once.
    """

    __slots__ = ("_freed", "key", "owner", "reader")

    def __init__(self, key: str, owner: str) -> None:
        self.key = key
        self.owner = owner
        """Whose buffer it is (a requester's address): a producer waits only for its own."""
        self.reader: FrameType | None = None
        """The frame of the code that reads the buffer, while the room is full: a producer
        called from that code (further down its stack) must not wait for itself."""
        self._freed: anyio.Event | None = None

    def fill(self, reader: FrameType | None) -> None:
        """The buffer is full: producers that find the room in ``FULL`` wait."""
        self.reader = reader
        FULL[self.key] = self

    def free(self) -> None:
        """The buffer has room (or will never be read again): release every producer."""
        self.reader = None
        if FULL.get(self.key) is self:
            del FULL[self.key]
        freed = self._freed
        if freed is not None:
            self._freed = None
            freed.set()

    async def wait(self) -> None:
        """Wait until ``free()`` is called; return at once when the room is not full, or
        when the caller is the reading code itself (its own frame is below ours)."""
        reader = self.reader
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame is reader:
                return
            frame = frame.f_back
        while FULL.get(self.key) is self:
            freed = self._freed
            if freed is None:
                freed = self._freed = anyio.Event()
            await freed.wait()
