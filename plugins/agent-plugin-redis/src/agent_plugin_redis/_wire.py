"""What travels through Redis: JSON envelopes of known kinds only, size-limited.

Three kinds:

- ``msg``: one bus message (``framework.bus.Message``: a job request, a response, a
  cancel...) and the runner that sent it (``origin``), which is where replies go. It
  travels on the target runner's channel, or as an entry of a worker's stream.
- ``hb``: a runner's heartbeat on the broadcast channel: its name, its session (a new
  ``instance`` after each restart or reconnection), its interval, its message size limit
  and the full list of its ready workers (an announcement is a heartbeat sent early).
- ``bye``: a runner ending: its workers leave every registry at once.

Everything read from Redis is untrusted: it is checked against the size limit before it
is parsed, then validated into these models and nothing else (never pickle, never a class
named by the data). A failure is a ``WireError`` whose text says why.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from framework.bus.messages import BusMessage, Message

Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class Routed(_Envelope):
    """A bus message sent by runner ``origin``."""

    kind: Literal["msg"] = "msg"
    origin: Name
    message: Message


class Heartbeat(_Envelope):
    """Runner ``runner`` is alive and hosts ``workers``; ``hello`` asks for everyone's."""

    kind: Literal["hb"] = "hb"
    runner: Name
    instance: Name
    interval: float = Field(gt=0, le=3600)
    misses: int = Field(ge=1, le=1000)
    workers: list[Name] = Field(max_length=100_000)
    max_message_size: int = Field(default=1024 * 1024, ge=1024)
    """The biggest message this runner reads: senders refuse bigger ones up front."""
    hello: bool = False


class Bye(_Envelope):
    """Runner ``runner`` is ending."""

    kind: Literal["bye"] = "bye"
    runner: Name
    instance: Name


Envelope = Annotated[Routed | Heartbeat | Bye, Field(discriminator="kind")]


class WireError(ValueError):
    """Data from Redis that is not a valid envelope; the text says why."""


@functools.cache
def _adapter() -> TypeAdapter[Envelope]:
    return TypeAdapter(Envelope)


def decode(raw: bytes, limit: int) -> Routed | Heartbeat | Bye:
    """Validate ``raw`` into an envelope.

    Raises:
        WireError: over ``limit`` bytes, not JSON, of an unknown kind or message type, or
            with a missing or mistyped field.
    """
    if len(raw) > limit:
        raise WireError(f"{len(raw)} bytes, over the {limit}-byte limit (max_message_size)")
    try:
        envelope: Routed | Heartbeat | Bye = _adapter().validate_json(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the message"
        raise WireError(
            f"not a valid envelope ({exc.error_count()} error(s); first: {where}: {first['msg']})"
        ) from None
    return envelope


class RoutedEncoder:
    """Encodes messages sent by one runner: the envelope's prefix is built once."""

    def __init__(self, origin: str) -> None:
        self._prefix = b'{"kind":"msg","origin":' + json.dumps(origin).encode() + b',"message":'

    def encode(self, message: BusMessage) -> bytes:
        """The ``msg`` envelope of ``message``, as bytes."""
        return self._prefix + message.model_dump_json().encode() + b"}"


def encode(envelope: Heartbeat | Bye) -> bytes:
    """A heartbeat or a bye, as bytes."""
    return envelope.model_dump_json().encode()
