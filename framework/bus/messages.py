"""The messages a bus carries: pydantic models discriminated by their ``type`` field.

Every message has a ``source`` (the sender's address: a worker's or a runner's name) and a
``target`` (the address it is delivered to). Control messages (``control = True``) overtake
queued data on the way to a worker, so that a cancel or an end is never stuck behind a
backlog of requests.

Messages built by our own code on the in-process bus are made with ``build``, which skips
validation; messages from a network are untrusted and decoded with ``decode_message``,
which validates them into the known types only.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic_core import PydanticUndefined

from framework.types import JobStatus

_new_object = object.__new__
_set_attribute = object.__setattr__


class BusMessage(BaseModel):
    """Base of every bus message."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    control: ClassVar[bool] = False
    """Whether the message overtakes queued data on its way to a worker."""
    _defaults: ClassVar[dict[str, Any]] = {}
    _factories: ClassVar[tuple[tuple[str, Any], ...]] = ()

    type: str
    source: str
    target: str

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._defaults = {
            name: field.default
            for name, field in cls.model_fields.items()
            if field.default is not PydanticUndefined
        }
        cls._factories = tuple(
            (name, field.default_factory)
            for name, field in cls.model_fields.items()
            if field.default_factory is not None
        )

    @classmethod
    def build(cls, **fields: Any) -> Self:
        """Make a message from trusted values, without validation.

        The job path is hot: validating a message costs more than the rest of a local hop,
        and ``model_construct`` is slower still, so this sets the model's state directly.
        Use it only for values our own code produced; anything from outside goes through
        ``decode_message``.
        """
        values = {**cls._defaults, **fields}
        if cls._factories:
            for name, factory in cls._factories:
                if name not in fields:
                    values[name] = factory()
        message = _new_object(cls)
        _set_attribute(message, "__dict__", values)
        _set_attribute(message, "__pydantic_fields_set__", set(fields))
        _set_attribute(message, "__pydantic_extra__", None)
        _set_attribute(message, "__pydantic_private__", None)
        return message


class JobRequestMessage(BusMessage):
    """A request for one job; members of a group share the ``job_id``."""

    type: Literal["job_request"] = "job_request"
    job_id: str
    name: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    """Context the requester sends along (``job.headers``): trace context, tenant ids..."""
    attempt: int = Field(default=1, ge=1)
    """Which run of the job this is (``job.attempt``): 1, or more when a network bus runs
    a durable job again after the runner running it was lost."""


class JobResponseMessage(BusMessage):
    """The terminal response of a job: exactly one per request."""

    type: Literal["job_response"] = "job_response"
    job_id: str
    status: JobStatus
    response: dict[str, Any] = Field(default_factory=dict)


OUTCOME_UNKNOWN = "unknown"
"""``response["outcome"]`` of a job that ended ERROR without knowing whether it ran."""


def unknown_outcome(reason: str) -> dict[str, Any]:
    """The ``response`` of a job ended ERROR because its worker, or the link to it, was lost
    after the request had left: the job may have run, in part or in full, or not at all.
    The requester and the network buses say it alike, so a caller can tell it from an
    ERROR that is known to have run nothing: ``{"error": "<reason>: the job may or may not
    have run", "outcome": "unknown"}``."""
    return {"error": f"{reason}: the job may or may not have run", "outcome": OUTCOME_UNKNOWN}


class JobUpdateMessage(BusMessage):
    """A progress update sent by a handler with ``job.update(...)``."""

    type: Literal["job_update"] = "job_update"
    job_id: str
    data: dict[str, Any] = Field(default_factory=dict)


class JobStreamStartMessage(BusMessage):
    """A streaming handler started streaming."""

    type: Literal["job_stream_start"] = "job_stream_start"
    job_id: str


class JobStreamDataMessage(BusMessage):
    """One item yielded by a streaming handler."""

    type: Literal["job_stream_data"] = "job_stream_data"
    job_id: str
    data: Any = None


class JobStreamEndMessage(BusMessage):
    """A streaming handler finished streaming."""

    type: Literal["job_stream_end"] = "job_stream_end"
    job_id: str


class JobUpdateRequestMessage(BusMessage):
    """A requester asks the worker running a job for a progress update."""

    type: Literal["job_update_request"] = "job_update_request"
    job_id: str


class WorkerLostMessage(BusMessage):
    """Tells a requester that a worker it waits on is gone: its open jobs there end ERROR."""

    type: Literal["worker_lost"] = "worker_lost"
    worker_name: str
    reason: str = ""


class JobCancelMessage(BusMessage):
    """Cancel a job (or this worker's part of a group)."""

    control: ClassVar[bool] = True
    type: Literal["job_cancel"] = "job_cancel"
    job_id: str
    reason: str = ""


class ActivateMessage(BusMessage):
    """Activate the target worker, with its activation arguments as a dict."""

    control: ClassVar[bool] = True
    type: Literal["activate"] = "activate"
    args: dict[str, Any] | None = None


class DeactivateMessage(BusMessage):
    """Deactivate the target worker."""

    control: ClassVar[bool] = True
    type: Literal["deactivate"] = "deactivate"


class EndMessage(BusMessage):
    """End the target worker gracefully (its children first, running jobs get a grace period)."""

    control: ClassVar[bool] = True
    type: Literal["end"] = "end"
    reason: str = ""
    grace_period: float | None = None


class CancelMessage(BusMessage):
    """Stop the target worker now, cancelling its running jobs."""

    control: ClassVar[bool] = True
    type: Literal["cancel"] = "cancel"
    reason: str = ""


Message = Annotated[
    JobRequestMessage
    | JobResponseMessage
    | JobUpdateMessage
    | JobStreamStartMessage
    | JobStreamDataMessage
    | JobStreamEndMessage
    | JobUpdateRequestMessage
    | WorkerLostMessage
    | JobCancelMessage
    | ActivateMessage
    | DeactivateMessage
    | EndMessage
    | CancelMessage,
    Field(discriminator="type"),
]
"""Any known message, discriminated by ``type``."""


@functools.cache
def _message_adapter() -> TypeAdapter[Message]:
    # Built on first use: building every schema at import would slow every start-up.
    return TypeAdapter(Message)


def decode_message(raw: str | bytes) -> BusMessage:
    """Validate JSON from outside into one of the known message types.

    Raises:
        pydantic.ValidationError: the text is not JSON, has an unknown ``type``, or a field
            is missing or of the wrong type.
    """
    message: BusMessage = _message_adapter().validate_json(raw)
    return message


def encode_message(message: BusMessage) -> bytes:
    """The JSON form of a message, as a network bus sends it."""
    return message.model_dump_json().encode()
