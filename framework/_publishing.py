"""Delivering events to the ``publish_event`` impls without ever delaying a job.

Each impl gets its own bounded buffer. Emitting an event only puts it into those buffers (no
scheduling point, no wait on the job path); when an impl's buffer is full, that impl loses
the event and the loss is counted. An ``async def`` impl is awaited by a task of its own on
the event loop. A plain function runs in a daemon thread of its own, which takes everything
buffered at once and calls the impl on each event in order: a sync impl that is slow or
blocks (a ``time.sleep``, a write to a full pipe, opening a FIFO nobody reads) holds up only
its thread, never the event loop. A slow, stuck or failing publisher therefore costs only
its own events, and a stuck thread is abandoned when the runner ends.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup

from framework._hooks import HookImpl
from framework.events import EventModel

logger = logging.getLogger("framework.events")

_LINGER = 0.001
"""Seconds a publisher thread pauses after a batch, so that under load the events gather
into batches instead of waking the thread (and taking the GIL from the loop) one by one."""


@dataclass(slots=True)
class PublisherStats:
    """Delivery figures of one publisher (one ``publish_event`` impl), by plugin name."""

    delivered: int = 0
    dropped: int = 0
    failed: int = 0


class _Publisher(ABC):
    """One impl, its counters, and the failure policy both kinds of delivery share."""

    def __init__(self, impl: HookImpl, buffer_size: int) -> None:
        self.impl = impl
        self.buffer_size = buffer_size
        self.stats = PublisherStats()
        self.outstanding = 0
        """Events accepted into the buffer and not yet handled (delivered or failed)."""
        self.abandoned = False
        """Given up on: what was undelivered is counted as dropped, nothing is counted since."""

    @abstractmethod
    def offer(self, event: EventModel) -> None:
        """Take ``event`` into the buffer, or count it dropped when the buffer is full."""

    @abstractmethod
    def start(self, task_group: TaskGroup) -> None:
        """Start delivering."""

    @abstractmethod
    def stop_taking(self) -> None:
        """Take no more events; deliver those already buffered."""

    def give_up(self) -> None:
        """Count what is still undelivered as dropped, and deliver nothing more."""
        self.abandoned = True
        self.stats.dropped += self.outstanding
        self.outstanding = 0

    def log_failure(self, first: bool) -> None:
        """Log a raising call (call it in the ``except`` block): the first with its traceback."""
        if first:
            logger.exception(
                "plugin %r: publish_event raised; counting its failures from now on "
                "(see WorkerRunner.event_stats())",
                self.impl.plugin_name,
            )
        else:
            logger.debug("plugin %r: publish_event raised again", self.impl.plugin_name)


class _LoopPublisher(_Publisher):
    """An ``async def`` impl, awaited on the event loop by a task of its own."""

    def __init__(self, impl: HookImpl, buffer_size: int) -> None:
        super().__init__(impl, buffer_size)
        self.send, self.receive = anyio.create_memory_object_stream[EventModel](buffer_size)

    def offer(self, event: EventModel) -> None:
        try:
            self.send.send_nowait(event)
            self.outstanding += 1
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.stats.dropped += 1

    def start(self, task_group: TaskGroup) -> None:
        task_group.start_soon(self._deliver_all, name=f"publisher {self.impl.plugin_name}")

    def stop_taking(self) -> None:
        self.send.close()

    async def _deliver_all(self) -> None:
        kwargs: dict[str, Any] = {}
        async with self.receive:
            async for event in self.receive:
                kwargs["event"] = event
                try:
                    await self.impl.call(kwargs)
                except Exception:
                    if self.abandoned:
                        return
                    self.outstanding -= 1
                    self.stats.failed += 1
                    self.log_failure(self.stats.failed == 1)
                else:
                    if self.abandoned:
                        return
                    self.outstanding -= 1
                    self.stats.delivered += 1


class _ThreadPublisher(_Publisher):
    """A plain-function impl, called in a daemon thread of its own, never on the event loop.

    The loop and the thread share the buffer and the counters under one lock, held only for
    a few list and integer operations on either side (never while the impl runs or a line is
    logged), so the loop never waits on the impl. Once the publisher has given up on its
    thread, the thread touches neither again.
    """

    def __init__(self, impl: HookImpl, buffer_size: int) -> None:
        super().__init__(impl, buffer_size)
        self._buffer: list[EventModel] = []
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._taking = True
        self._idle = False
        """The thread is waiting for events: the next offer must wake it."""

    def offer(self, event: EventModel) -> None:
        with self._lock:
            if not self._taking or self.outstanding >= self.buffer_size:
                self.stats.dropped += 1
                return
            self._buffer.append(event)
            self.outstanding += 1
            if self._idle:
                self._idle = False
                self._ready.notify()

    def start(self, task_group: TaskGroup) -> None:
        name = f"publisher {self.impl.plugin_name}"
        threading.Thread(target=self._deliver_all, name=name, daemon=True).start()

    def stop_taking(self) -> None:
        with self._lock:
            self._taking = False
            self._ready.notify()

    def give_up(self) -> None:
        with self._lock:
            self._buffer.clear()
            super().give_up()
            self._ready.notify()

    def _deliver_all(self) -> None:
        """The thread: take everything buffered, deliver it in order; end once drained."""
        while True:
            with self._lock:
                while not self._buffer and self._taking and not self.abandoned:
                    self._idle = True
                    self._ready.wait()
                if not self._buffer or self.abandoned:
                    return
                batch, self._buffer = self._buffer, []
            if not self._deliver(batch):
                return
            time.sleep(_LINGER)

    def _deliver(self, batch: list[EventModel]) -> bool:
        """Call the impl on each event of ``batch``; False once the publisher gave up."""
        kwargs: dict[str, Any] = {}
        for event in batch:
            kwargs["event"] = event
            try:
                result = self.impl.call(kwargs)
                if inspect.isawaitable(result):
                    _discard(result)
                    raise TypeError(
                        f"plugin {self.impl.plugin_name!r}: publish_event is a plain function "
                        "that returned an awaitable; declare it 'async def'"
                    )
            except Exception:
                with self._lock:
                    if self.abandoned:
                        return False
                    self.outstanding -= 1
                    self.stats.failed += 1
                    first = self.stats.failed == 1
                self.log_failure(first)
            else:
                with self._lock:
                    if self.abandoned:
                        return False
                    self.outstanding -= 1
                    self.stats.delivered += 1
        return True


def _discard(awaitable: object) -> None:
    """Close a coroutine nobody will await, so Python does not warn about it."""
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


class EventPublisher:
    """Fan-out of events to every ``publish_event`` impl, each through its own buffer."""

    def __init__(self, impls: tuple[HookImpl, ...], buffer_size: int) -> None:
        self._publishers: list[_Publisher] = [
            _LoopPublisher(impl, buffer_size)
            if inspect.iscoroutinefunction(impl.function)
            else _ThreadPublisher(impl, buffer_size)
            for impl in impls
        ]
        self._listeners: list[Callable[[EventModel], None]] = []

    @property
    def enabled(self) -> bool:
        """False when no impl and no listener exists: callers then skip building events
        altogether."""
        return bool(self._publishers or self._listeners)

    def listen(self, listener: Callable[[EventModel], None]) -> Callable[[], None]:
        """Call ``listener(event)`` inline for every event from now on; returns the
        function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def start(self, task_group: TaskGroup) -> None:
        """Start delivering: a task in ``task_group`` per async impl, a thread per sync one."""
        for publisher in self._publishers:
            publisher.start(task_group)

    def publish(self, event: EventModel) -> None:
        """Offer ``event`` to every publisher and listener; never blocks."""
        for publisher in self._publishers:
            publisher.offer(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("event listener %r failed; it is removed", listener)
                self._listeners.remove(listener)
                break  # the list changed; the remaining listeners get the next event

    async def close(self, drain_timeout: float) -> None:
        """Stop taking events and give the publishers ``drain_timeout`` seconds to catch up.

        Events still undelivered after that are counted as dropped, and a thread still busy
        with a sync impl is abandoned (it is a daemon thread: it does not keep the process
        alive). The caller then cancels the delivery tasks of the async impls.
        """
        for publisher in self._publishers:
            publisher.stop_taking()
        with anyio.move_on_after(drain_timeout):
            while any(p.outstanding for p in self._publishers):
                await anyio.sleep(0.005)
        for publisher in self._publishers:
            publisher.give_up()

    def stats(self) -> dict[str, PublisherStats]:
        """Figures per publisher, keyed by plugin name."""
        return {p.impl.plugin_name: p.stats for p in self._publishers}
