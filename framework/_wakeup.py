"""A one-shot wake-up for a single waiting task: the primitive under the job path's waits.

Waiting through an anyio memory object stream or a fresh ``anyio.Event`` costs a
checkpoint, an Event and a task lookup per wait, a large share of a local round trip
(bench/roundtrip.py measures the round trip). On asyncio this waits on one bare future
instead; on any other backend it falls back to ``anyio.Event``. Cancellation works as
usual: anyio cancels the waiting task, which cancels the future.
"""

from __future__ import annotations

import asyncio
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
