"""``publish_event`` plugins the tests share: a sync and an async recorder.

The sync one is ``framework.testing.MemoryPublisher`` itself; the async one awaits a
checkpoint before keeping each event, as an ``async def`` publisher that does I/O would.
"""

from __future__ import annotations

import anyio.lowlevel

from framework import EventModel, hookimpl
from framework.testing import MemoryPublisher


class Recorder(MemoryPublisher):
    """A sync ``publish_event`` plugin keeping every event (its plugin name: the class's)."""


class AsyncRecorder:
    """An ``async def`` ``publish_event`` plugin keeping every event."""

    def __init__(self) -> None:
        self.events: list[EventModel] = []

    @hookimpl
    async def publish_event(self, event: EventModel) -> None:
        """Keep the event, after a scheduling point."""
        await anyio.lowlevel.checkpoint()
        self.events.append(event)
