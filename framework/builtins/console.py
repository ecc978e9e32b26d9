"""Built-in plugin ``console``: events as human-readable lines on stderr.

Enabled by ``framework -v run`` or ``[publishers.console] enabled = true``. Nothing is
registered otherwise, so a run without it builds no events at all.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from framework.hookspecs import hookimpl

if TYPE_CHECKING:
    from framework.events import EventModel


def format_event(event: EventModel) -> str:
    """One line: time, node, what happened, and the event's content or data."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
    kind = f"{event.event.value}/{event.event_type.value}"
    thread = f" [{event.thread_id}]" if event.thread_id else ""
    detail = event.content or (str(event.data) if event.data else "")
    return f"{clock} {event.node_name}{thread} {kind}" + (f" {detail}" if detail else "")


class ConsolePublisher:
    """Writes each event as one line to a text stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        """Write the event's line."""
        stream = self.stream or sys.stderr
        stream.write(format_event(event) + "\n")
        stream.flush()


@hookimpl
def configure_runner(runner: Any, config: Any) -> None:
    """Add a ``ConsolePublisher`` when ``-v`` or the configuration enables it."""
    if config.publishers.console.enabled:
        runner.add_plugin(ConsolePublisher(), name="console-publisher")
