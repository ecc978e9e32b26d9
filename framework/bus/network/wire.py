"""The wire envelope: what travels between runners, as JSON envelopes of known kinds only,
size-limited. Every network bus carries these bytes as they are (signed, with a secret).

Four kinds:

- ``msg``: one bus message (``framework.bus.Message``: a job request, a response, a
  cancel...) and the runner that sent it (``origin``), which is where replies go. The bus
  sends it to the runner that hosts its target (or to a queue that the target's replicas
  share).
- ``hb``: a runner's heartbeat, to every runner: its name, its session (a new
  ``instance`` after each restart or reconnection), its interval, its message size limit
  and the full list of its ready workers (an announcement is a heartbeat sent early).
- ``desc``: one worker's description (``BaseWorker.describe()``), from the runner that
  hosts it: to every runner when the worker is announced, and to a runner that has just
  joined. Heartbeats stay small: they name the workers, and each description travels once
  per announcement and newcomer.
- ``bye``: a runner ending: its workers leave every registry at once.

Everything received is untrusted: it is checked against the size limit before it is
parsed, then validated into these models and nothing else (never pickle, never a class
named by the data). A failure is a ``WireError`` whose text says why. Sending is held to
the same rules: a message that JSON cannot carry, or a job request that a reader would
refuse, is a ``WireError`` when it is encoded, so its requester hears of it at once.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, from_json

from framework.bus.messages import BusMessage, JobRequestMessage, Message, decode_message
from framework.bus.network.signing import Signer
from framework.types import JobDescription

NAME_LIMIT = 256
"""The longest runner or worker name an envelope carries."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_LIMIT)]


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
    """Seconds between its heartbeats (a reader counts at most ``peers.LIVENESS_MAX`` of
    silence)."""
    misses: int = Field(ge=1, le=1000)
    workers: list[Name] = Field(max_length=10_000)
    max_message_size: int = Field(default=1024 * 1024, ge=1024)
    """The biggest message this runner reads: senders refuse bigger ones up front."""
    hello: bool = False


class Described(_Envelope):
    """Worker ``worker`` of runner ``runner`` (session ``instance``) answers ``jobs``."""

    kind: Literal["desc"] = "desc"
    runner: Name
    instance: Name
    worker: Name
    jobs: list[JobDescription] = Field(default_factory=list, max_length=10_000)


class Bye(_Envelope):
    """Runner ``runner`` is ending."""

    kind: Literal["bye"] = "bye"
    runner: Name
    instance: Name


Envelope = Annotated[Routed | Heartbeat | Described | Bye, Field(discriminator="kind")]


def claimed_sender(envelope: Routed | Heartbeat | Described | Bye) -> str:
    """The runner ``envelope`` says it comes from (``origin`` or ``runner``): with signed
    messages, it must be the signature's sender, or the envelope is dropped."""
    if isinstance(envelope, Routed):
        return envelope.origin
    return envelope.runner


class WireError(ValueError):
    """Data that is not a valid envelope (received), or a message that cannot travel (sent);
    the text says why."""


class _RequestHead(BaseModel):
    """What a job request must hold to be answered: read from one that failed to decode."""

    type: Literal["job_request"]
    source: Name
    target: Name
    job_id: Annotated[str, StringConstraints(max_length=1024)]


class _RoutedHead(BaseModel):
    kind: Literal["msg"]
    origin: Name
    message: _RequestHead


class _ResponseHead(BaseModel):
    """What a job response must hold to end its job: read from one that failed to decode."""

    type: Literal["job_response"]
    source: Name
    target: Name
    job_id: Annotated[str, StringConstraints(max_length=1024)]


class _RoutedResponseHead(BaseModel):
    kind: Literal["msg"]
    origin: Name
    message: _ResponseHead


_DEPTH_SAFE = 190
"""Fewer ``{`` and ``[`` than this in a message, and its nesting cannot reach the readers'
JSON parser's limit (it refuses about 200 levels, envelope included)."""
_LONG_NUMBER = 4300
"""The fewest digits of an integer the readers' parser refuses (Python's int-str limit)."""
_DIGIT_MAP = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_DIGIT_RUN = b"0" * _LONG_NUMBER


def unreadable(data: bytes) -> str | None:
    """Why the reading runners' JSON parser would refuse ``data``, which the encoder wrote
    (nesting too deep, an integer too long), or None. Most messages are cleared by counting
    brackets and looking for a long run of digits; the others are parsed once, by the same
    parser the readers use, so a sender never puts on the wire what no reader can take."""
    if data.count(b"{") + data.count(b"[") < _DEPTH_SAFE and (
        len(data) < _LONG_NUMBER or _DIGIT_RUN not in data.translate(_DIGIT_MAP)
    ):
        return None
    try:
        from_json(data)
    except ValueError as exc:
        return str(exc)
    return None


def _lenient(raw: bytes) -> object:
    """``raw`` parsed by the standard library, which takes deeper nesting and any integer
    (kept as text): only to read the head of a message the strict parser refused."""
    try:
        return json.loads(raw, parse_int=str, parse_float=str, parse_constant=str)
    except (ValueError, RecursionError):
        return None


def response_head(raw: bytes) -> tuple[str, str, str, str] | None:
    """``(origin, job id, worker, requester)`` of a ``msg`` envelope that holds a job
    response but failed to ``decode``, so that the job can still end at its requester; None
    when ``raw`` is no such thing. Call it on data within the size limit."""
    try:
        head = _RoutedResponseHead.model_validate(_lenient(raw))
    except ValidationError:
        return None
    response = head.message
    return head.origin, response.job_id, response.source, response.target


@functools.cache
def _adapter() -> TypeAdapter[Envelope]:
    return TypeAdapter(Envelope)


def _reason(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the message"
    return f"{exc.error_count()} error(s); first: {where}: {first['msg']}"


def decode_envelope(raw: bytes, limit: int) -> Routed | Heartbeat | Described | Bye:
    """Validate ``raw`` into an envelope.

    Raises:
        WireError: over ``limit`` bytes, not JSON, of an unknown kind or message type, or
            with a missing or mistyped field.
    """
    if len(raw) > limit:
        raise WireError(f"{len(raw)} bytes, over the {limit}-byte limit (max_message_size)")
    try:
        envelope: Routed | Heartbeat | Described | Bye = _adapter().validate_json(raw)
    except ValidationError as exc:
        raise WireError(f"not a valid envelope ({_reason(exc)})") from None
    return envelope


def request_head(raw: bytes) -> tuple[str, str, str, str] | None:
    """``(origin, job id, requester, worker)`` of a ``msg`` envelope that holds a job request
    but failed to ``decode`` (a header the reader refuses, say), so that its requester can
    be answered; None when ``raw`` is no such thing. Call it on data within the size limit.
    """
    try:
        head = _RoutedHead.model_validate(_lenient(raw))
    except ValidationError:
        return None
    request = head.message
    return head.origin, request.job_id, request.source, request.target


class RoutedEncoder:
    """Encodes messages sent by one runner: the envelope's prefix is built once.

    Args:
        origin: the sending runner's name.
        signer: with a bus secret, the runner's ``Signer``: every envelope is returned
            signed (its ``sender`` must be ``origin``).
    """

    def __init__(self, origin: str, signer: Signer | None = None) -> None:
        if signer is not None and signer.sender != origin:
            raise ValueError(f"the signer signs as {signer.sender!r}, not as the origin {origin!r}")
        self._prefix = b'{"kind":"msg","origin":' + json.dumps(origin).encode() + b',"message":'
        self._sign = signer.sign if signer is not None else None

    def encode(self, message: BusMessage, destination: str) -> bytes:
        """The ``msg`` envelope of ``message``, as bytes (signed for ``destination``, the
        channel or stream the bus sends it to, with a signer).

        A job request is held to its fields' types too (``headers`` values are str): one
        built without validation, say with a header an ``add_request_headers`` impl added,
        would otherwise be dropped by the runner that reads it, and its requester would
        wait for an answer that never comes.

        Raises:
            WireError: the message holds a value that JSON cannot carry, a job request that
                the reading runner would refuse (the text names the field), or JSON that the
                reading runner's parser refuses (nested too deep, an integer too long).
        """
        try:
            if type(message) is JobRequestMessage:
                body = message.model_dump_json(warnings="error")
            else:
                body = message.model_dump_json()
        except PydanticSerializationError as exc:
            raise WireError(_unsendable(message, exc)) from None
        data = self._prefix + body.encode() + b"}"
        refused = unreadable(data)
        if refused is not None:
            raise WireError(f"a {message.type} that the reading runner cannot parse ({refused})")
        sign = self._sign
        return data if sign is None else sign(data, destination)


def _unsendable(message: BusMessage, exc: PydanticSerializationError) -> str:
    """Why ``message`` cannot travel: what a reader's validation would say, when the
    message serializes at all."""
    try:
        raw = message.model_dump_json(warnings=False)
        decode_message(raw)
    except PydanticSerializationError as error:
        return f"a {message.type} that JSON cannot carry ({error})"
    except ValidationError as error:
        return f"a {message.type} that the reading runner would refuse ({_reason(error)})"
    return f"a {message.type} that does not fit its fields ({exc})"


def encode_envelope(envelope: Heartbeat | Described | Bye) -> bytes:
    """A heartbeat, a description or a bye, as bytes.

    Raises:
        WireError: it holds a value that JSON cannot carry (a description whose schema
            holds an arbitrary object, say).
    """
    try:
        return envelope.model_dump_json().encode()
    except PydanticSerializationError as exc:
        raise WireError(f"a {envelope.kind} that JSON cannot carry ({exc})") from None


def encode_description(described: Described, limit: int) -> tuple[bytes, str]:
    """``described`` as bytes, and "" when it fits ``limit``; else the same worker
    described as answering no jobs, and why (its size, or a value JSON cannot carry).
    Readers would drop the whole description: an empty one keeps the worker usable."""
    try:
        raw = encode_envelope(described)
    except WireError as exc:
        problem = f"is {exc}"
    else:
        if len(raw) <= limit:
            return raw, ""
        problem = f"takes {len(raw)} bytes, over the {limit}-byte limit (max_message_size)"
    return encode_envelope(described.model_copy(update={"jobs": []})), problem
