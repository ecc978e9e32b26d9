"""Server-sent events: the wire format (https://html.spec.whatwg.org/#server-sent-events)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",  # ask a proxy in front not to hold events back
}
MEDIA_TYPE = "text/event-stream"
KEEPALIVE = b": keepalive\n\n"
"""A comment line: ignored by clients, it keeps proxies from closing an idle stream and
tells the server when a client has gone."""
KEEPALIVE_SECONDS = 15.0


def encode(event: str | None, data: str, event_id: int | None = None) -> bytes:
    """One SSE message. ``data`` is JSON text: it has no raw newlines, so it is one line."""
    parts = []
    if event_id is not None:
        parts.append(f"id: {event_id}\n")
    if event is not None:
        parts.append(f"event: {event}\n")
    parts.append(f"data: {data}\n\n")
    return "".join(parts).encode()


def last_event_id(value: str | None) -> int:
    """The ``Last-Event-ID`` header as a number (0, start from the beginning, when absent
    or not a non-negative integer)."""
    if value is None:
        return 0
    value = value.strip()
    return int(value) if value.isdigit() else 0


def parse(lines: Iterable[str]) -> Iterator[tuple[str, str, str | None]]:
    """The messages of an SSE stream, from its lines: ``(event, data, id)``; ``event`` is
    ``"message"`` when the server named none. Comments are skipped."""
    event, event_id = "message", None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data), event_id
            event, event_id = "message", None
            data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value
    if data:
        yield event, "\n".join(data), event_id
