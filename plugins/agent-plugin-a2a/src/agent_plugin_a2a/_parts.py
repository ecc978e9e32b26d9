"""Between A2A message parts and job values, both ways.

- A value (a stream item, an update, a response) becomes one part: a string a text part,
  anything else a data part.
- A data part becomes its JSON value. Protocol buffers carry every JSON number as a double,
  so whole numbers come back as ``int`` (``3``, not ``3.0``), as they were sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from a2a.types import Part
from google.protobuf import json_format, struct_pb2

if TYPE_CHECKING:
    from collections.abc import Iterable

    from a2a.types import Message

_SAFE_INT = 2**53


def whole_numbers(value: Any) -> Any:
    """``value`` with every float that is a whole number (within 2**53) made an ``int``."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _SAFE_INT else value
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def data_part(value: Any) -> Part:
    """A data part holding ``value`` (any JSON value)."""
    return Part(data=json_format.ParseDict(value, struct_pb2.Value()))


def value_part(value: Any) -> Part:
    """A text part for a string, a data part for anything else."""
    return Part(text=value) if isinstance(value, str) else data_part(value)


def part_value(part: Part) -> Any:
    """What one part holds: a text part's string, a data part's JSON value, or for a file
    part the part as JSON (``{"url": ...}`` or ``{"raw": BASE64}``, with ``filename`` and
    ``mediaType`` when given)."""
    kind = part.WhichOneof("content")
    if kind == "text":
        return part.text
    if kind == "data":
        return whole_numbers(json_format.MessageToDict(part.data))
    found = json_format.MessageToDict(part)
    found.pop("metadata", None)
    return found


def texts(parts: Iterable[Part]) -> list[str]:
    """The text parts' strings."""
    return [part.text for part in parts if part.WhichOneof("content") == "text"]


def data_values(parts: Iterable[Part]) -> list[Any]:
    """The data parts' values."""
    return [part_value(part) for part in parts if part.WhichOneof("content") == "data"]


def message_text(message: Message) -> str:
    """A message's text parts, one per line."""
    return "\n".join(texts(message.parts))
