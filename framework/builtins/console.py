"""Built-in plugin ``console``: events as JSON lines on stderr.

Enabled by ``framework -v`` or ``[publishers.console] enabled = true``. Nothing is
registered otherwise, so a run without it builds no events at all.

Each event is one JSON object (``time``, ``node``, ``event``, and ``job``, ``content``,
``data``, ``error`` when it has them), so ``2> events.jsonl`` can be read by a program.
Text deltas (an LLM's tokens) are gathered: one line per line of text, or per run of
deltas from one node, with ``"deltas": N``.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from framework.hookspecs import hookimpl

if TYPE_CHECKING:
    from framework.events import EventModel

MAX_GATHERED = 4096
"""Characters of text deltas gathered before they are written without waiting for a newline."""


def event_record(event: EventModel) -> dict[str, Any]:
    """The JSON object of one event's line."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
    record: dict[str, Any] = {
        "time": f"{clock}.{int(event.timestamp * 1000) % 1000:03d}",
        "node": event.node_name,
        "event": f"{event.event.value}/{event.event_type.value}",
    }
    if event.thread_id:
        record["job"] = event.thread_id
    if event.content:
        record["content"] = event.content
    if event.data:
        record["data"] = event.data
    if event.is_error:
        record["error"] = True
    return record


def format_event(event: EventModel) -> str:
    """One event as one JSON line (without the newline)."""
    import json  # here, not at the top: `framework --help` loads this plugin

    return json.dumps(event_record(event), default=str, ensure_ascii=False)


class ConsolePublisher:
    """Writes each event as one JSON line to a text stream (stderr by default), gathering
    text deltas into lines."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._gathered: dict[str, Any] | None = None
        self._gathered_key: tuple[Any, ...] | None = None

    def _write(self, record: dict[str, Any]) -> None:
        import json

        stream = self.stream or sys.stderr
        stream.write(json.dumps(record, default=str, ensure_ascii=False) + "\n")
        stream.flush()

    def _flush(self) -> None:
        gathered, self._gathered, self._gathered_key = self._gathered, None, None
        if gathered is not None and gathered["content"]:
            self._write(gathered)

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        """Write the event's line, or gather it when it is a text delta."""
        if not (event.delta and event.delta_type == "text"):
            self._flush()
            self._write(event_record(event))
            return
        key = (event.node_name, event.thread_id, event.event, event.event_type)
        if self._gathered is not None and key != self._gathered_key:
            self._flush()
        if self._gathered is None:
            self._gathered = {**event_record(event), "content": "", "deltas": 0}
            self._gathered.pop("data", None)
            self._gathered_key = key
        gathered = self._gathered
        gathered["content"] += event.content
        gathered["deltas"] += 1
        while "\n" in gathered["content"]:
            line, rest = gathered["content"].split("\n", 1)
            self._write({**gathered, "content": line + "\n"})
            gathered["content"], gathered["deltas"] = rest, 1 if rest else 0
        if len(gathered["content"]) >= MAX_GATHERED:
            self._flush()


@hookimpl
def configure_runner(runner: Any, config: Any) -> None:
    """Add a ``ConsolePublisher`` when ``-v`` or the configuration enables it."""
    if config.publishers.console.enabled:
        runner.add_plugin(ConsolePublisher(), name="console-publisher")
