"""Runtime events: the immutable records every ``publish_event`` hookimpl receives.

The runner builds an ``EventModel`` for each happening (runner start and stop, worker
ready and failed, job request, update, stream chunk, response and cancellation) and hands
it to the publishers through a bounded buffer.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Event(StrEnum):
    """What part of the system the event is about."""

    GRAPH_EXECUTION = "graph_execution"
    NODE_EXECUTION = "node_execution"
    TOOL_EXECUTION = "tool_execution"
    STREAMING = "streaming"


class EventType(StrEnum):
    """What happened to it."""

    START = "start"
    PROGRESS = "progress"
    RESULT = "result"
    END = "end"
    UPDATE = "update"
    ERROR = "error"
    INTERRUPTED = "interrupted"


class ContentType(StrEnum):
    """What the event carries."""

    TEXT = "text"
    MESSAGE = "message"
    REASONING = "reasoning"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    DATA = "data"
    STATE = "state"
    UPDATE = "update"
    ERROR = "error"


def _new_run_id() -> str:
    return str(uuid.uuid4())


class EventModel(BaseModel):
    """One runtime event. Frozen: a publisher can keep it, share it, or queue it safely.

    Serialize with ``model_dump(mode="json")`` or ``model_dump_json()``: enums become their
    string values.
    """

    model_config = ConfigDict(frozen=True, use_enum_values=False, defer_build=True)

    event: Event
    event_type: EventType
    content: str = ""
    content_blocks: list[dict[str, Any]] | None = None
    delta: bool = False
    delta_type: Literal["text", "json", "binary"] | None = None
    block_index: int | None = None
    chunk_index: int | None = None
    byte_offset: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    content_type: list[ContentType] | None = None
    sequence_id: int = 0
    node_name: str = ""
    run_id: str = Field(default_factory=_new_run_id)
    thread_id: str | int = ""
    timestamp: float = Field(default_factory=time.time)
    is_error: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def default(
        cls,
        base_config: dict[str, Any],
        data: dict[str, Any] | str | None,
        content_type: ContentType | list[ContentType] | None,
        event: Event = Event.GRAPH_EXECUTION,
        event_type: EventType = EventType.START,
        node_name: str = "",
        extra: dict[str, Any] | None = None,
    ) -> EventModel:
        """Build an event from a base config and a payload.

        Args:
            base_config: shared fields for a run: ``thread_id``, ``run_id``, ``timestamp``
                and ``user`` (the user goes into ``metadata``). Missing keys take defaults.
            data: a dict goes to ``data``; a string goes to ``content``.
            content_type: one content type or a list of them.
            event: the event kind.
            event_type: what happened.
            node_name: the worker (or runner) the event is about.
            extra: any other fields to set (``sequence_id``, ``is_error``, ``metadata``...).
        """
        fields: dict[str, Any] = {"event": event, "event_type": event_type, "node_name": node_name}
        for key in ("thread_id", "run_id", "timestamp"):
            if base_config.get(key) is not None:
                fields[key] = base_config[key]
        if base_config.get("user") is not None:
            fields["metadata"] = {"user": base_config["user"]}
        if isinstance(data, str):
            fields["content"] = data
        elif data is not None:
            fields["data"] = data
        if content_type is not None:
            fields["content_type"] = (
                [content_type] if isinstance(content_type, ContentType) else list(content_type)
            )
        if extra:
            fields.update(extra)
        return cls(**fields)

    @classmethod
    def stream(
        cls,
        base_config: dict[str, Any],
        node_name: str = "",
        extra: dict[str, Any] | None = None,
    ) -> EventModel:
        """Build a streaming event (``STREAMING`` / ``PROGRESS``, ``delta=True``)."""
        fields: dict[str, Any] = {"delta": True, "delta_type": "text"}
        fields.update(extra or {})
        return cls.default(
            base_config,
            None,
            ContentType.TEXT,
            event=Event.STREAMING,
            event_type=EventType.PROGRESS,
            node_name=node_name,
            extra=fields,
        )
