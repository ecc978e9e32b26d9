"""Delivering events to the ``publish_event`` impls without ever delaying a job.

Each impl gets its own bounded buffer and its own task. Emitting an event only puts it into
those buffers (``send_nowait``: no scheduling point on the job path); when an impl's buffer
is full, that impl loses the event and the loss is counted. A slow, stuck or failing
publisher therefore costs only its own events.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from framework._hooks import HookImpl
from framework.events import EventModel

logger = logging.getLogger("framework.events")


@dataclass(slots=True)
class PublisherStats:
    """Delivery figures of one publisher (one ``publish_event`` impl), by plugin name."""

    delivered: int = 0
    dropped: int = 0
    failed: int = 0


class _Publisher:
    """One impl, its buffer and its counters."""

    def __init__(self, impl: HookImpl, buffer_size: int) -> None:
        self.impl = impl
        self.stats = PublisherStats()
        send, receive = anyio.create_memory_object_stream[EventModel](buffer_size)
        self.send: MemoryObjectSendStream[EventModel] = send
        self.receive: MemoryObjectReceiveStream[EventModel] = receive
        self.is_async = inspect.iscoroutinefunction(impl.function)
        self.outstanding = 0
        """Events accepted into the buffer and not yet handled (delivered or failed)."""

    def offer(self, event: EventModel) -> None:
        try:
            self.send.send_nowait(event)
            self.outstanding += 1
        except anyio.WouldBlock:
            self.stats.dropped += 1
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.stats.dropped += 1

    async def deliver_all(self) -> None:
        kwargs: dict[str, object] = {}
        async with self.receive:
            async for event in self.receive:
                kwargs["event"] = event
                try:
                    result = self.impl.call(kwargs)
                    if self.is_async or inspect.isawaitable(result):
                        await result
                except Exception:
                    self.stats.failed += 1
                    if self.stats.failed == 1:
                        logger.exception(
                            "plugin %r: publish_event raised; counting its failures from now "
                            "on (see WorkerRunner.event_stats())",
                            self.impl.plugin_name,
                        )
                    else:
                        logger.debug("plugin %r: publish_event raised again", self.impl.plugin_name)
                else:
                    self.stats.delivered += 1
                finally:
                    self.outstanding -= 1


class EventPublisher:
    """Fan-out of events to every ``publish_event`` impl, each through its own buffer."""

    def __init__(self, impls: tuple[HookImpl, ...], buffer_size: int) -> None:
        self._publishers = [_Publisher(impl, buffer_size) for impl in impls]
        self.enabled = bool(self._publishers)
        """False when no impl exists: callers then skip building events altogether."""

    def start(self, task_group: TaskGroup) -> None:
        """Start one delivery task per publisher in ``task_group``."""
        for publisher in self._publishers:
            task_group.start_soon(
                publisher.deliver_all, name=f"publisher {publisher.impl.plugin_name}"
            )

    def publish(self, event: EventModel) -> None:
        """Offer ``event`` to every publisher; never blocks."""
        for publisher in self._publishers:
            publisher.offer(event)

    async def close(self, drain_timeout: float) -> None:
        """Stop taking events and give the publishers ``drain_timeout`` seconds to catch up.

        Events still buffered after that are counted as dropped; the caller then cancels the
        delivery tasks.
        """
        for publisher in self._publishers:
            publisher.send.close()
        with anyio.move_on_after(drain_timeout):
            while any(p.outstanding for p in self._publishers):
                await anyio.sleep(0.005)
        for publisher in self._publishers:
            publisher.stats.dropped += publisher.outstanding

    def stats(self) -> dict[str, PublisherStats]:
        """Figures per publisher, keyed by plugin name."""
        return {p.impl.plugin_name: p.stats for p in self._publishers}
