"""Built-in plugin ``jsonl``: each event as one JSON line appended to a file.

Enabled by ``[publishers.jsonl] path = "events.jsonl"`` in the run configuration.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from framework.hookspecs import hookimpl

if TYPE_CHECKING:
    from framework.events import EventModel


class JsonlPublisher:
    """Appends ``event.model_dump_json()`` lines to ``path``, flushing each one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO | None = None

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        """Append the event; close the file after the runner's END event."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(event.model_dump_json() + "\n")
        self._file.flush()
        if event.event == "graph_execution" and event.event_type == "end":
            self._file.close()
            self._file = None


@hookimpl
def configure_runner(runner: Any, config: Any) -> None:
    """Add a ``JsonlPublisher`` when the configuration names a file."""
    path = config.publishers.jsonl.path
    if path is not None:
        runner.add_plugin(JsonlPublisher(Path(path)), name="jsonl-publisher")
