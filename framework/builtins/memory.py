"""Built-in plugin ``memory``: a publisher that keeps events in a list (for tests).

``framework.testing`` uses it; a run configured with ``[publishers.memory] enabled = true``
gets one too (``runner.plugin_manager.get_plugin("memory-publisher").events``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework.hookspecs import hookimpl

if TYPE_CHECKING:
    from framework.events import EventModel


class MemoryPublisher:
    """Collects every event it receives, in order."""

    def __init__(self) -> None:
        self.events: list[EventModel] = []

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        """Keep the event."""
        self.events.append(event)


@hookimpl
def configure_runner(runner: Any, config: Any) -> None:
    """Add a ``MemoryPublisher`` when the configuration enables it."""
    if config.publishers.memory.enabled:
        runner.add_plugin(MemoryPublisher(), name="memory-publisher")
