"""What an LLM worker tells plugins about its model calls and tool calls.

``ModelCall`` goes to the ``on_model_call`` hook once a call to the model has ended (one per
round of a run); ``ToolCall`` goes to ``on_tool_call_started`` before a tool runs and to
``on_tool_call_completed`` after, in the tool's own task. They are built only when a plugin
implements one of those hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class ModelCall:
    """One call to the model: what was asked, what came back, how long it took.

    Attributes:
        backend: the LLM backend's registered name (``"openai"``, ``"offline"``).
        model: the model asked for, when the backend's options name one (``options.model``).
        round: the round of the run, from 1 (a round that ends in tool calls leads to another).
        job_id: the job the run answers ("" for a run started by an activation).
        messages: the conversation sent, oldest first (a copy: chat message dicts).
        started_at, ended_at: wall-clock times (``time.time()``) of the call.
        message: the assistant message that came back (``None`` when the call failed).
        finish_reason: why the reply ended (``"stop"``, ``"tool_calls"``, ``"length"``...).
        input_tokens, output_tokens: the token counts the backend reported (``None`` when
            it reported none).
        error: ``"ExceptionType: message"`` when the call raised, else ``None``.
    """

    backend: str
    model: str | None
    round: int
    job_id: str
    messages: list[dict[str, Any]]
    started_at: float
    ended_at: float
    message: dict[str, Any] | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    error: str | None = None


@dataclass(slots=True)
class ToolCall:
    """One tool call the model asked for.

    Attributes:
        name: the tool's name.
        id: the call's id (the model's, else one the worker made).
        arguments: the arguments as the model sent them (a JSON text).
        job_id: the job the run answers ("" for a run started by an activation).
        result: what goes back to the model (a JSON text), set when it has run.
        error: ``"ExceptionType: message"`` when the tool raised (or was cancelled), else
            ``None``; the model then gets the error as the result.
    """

    name: str
    id: str
    arguments: str
    job_id: str
    result: str | None = None
    error: str | None = None


__all__ = ["ModelCall", "ToolCall"]
