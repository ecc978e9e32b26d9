"""The LLM backend protocol: what a backend plugin implements.

A backend is an object registered with ``register_llm_backends``: it has a ``name``, an
``options_model`` (a pydantic model of its settings: model name, URL, key, temperature...)
and ``stream(messages, tools, options)``, an async iterator of chunks: ``TextDelta`` as the
reply's text arrives, ``ReasoningDelta`` as a reasoning model's thinking arrives,
``ToolCallDelta`` as tool calls arrive (a call may be split across several deltas sharing an
``index``), ``Finish`` with the reason the reply ended, and one ``Usage`` record, last.
``Finish`` and ``Usage`` are optional: without ``Finish`` the worker takes the reply as
complete, without ``Usage`` its token counts are unknown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call. Deltas with the same ``index`` belong to one call: the first
    carries ``id`` and ``name``, and the ``arguments`` pieces concatenate to a JSON object."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of a reasoning model's thinking, sent before (or beside) its answer. It is
    not part of the answer: the worker returns it apart and never sends it back."""

    text: str


FINISH_REASONS = ("stop", "length", "tool_calls", "content_filter")
"""The finish reasons the LLM worker acts on; a backend maps its server's words to these
(a reason outside them is kept in the response and otherwise treated as ``"stop"``)."""


@dataclass(frozen=True, slots=True)
class Finish:
    """Why the reply ended: ``"stop"`` (the model finished), ``"length"`` (cut by the token
    limit), ``"tool_calls"`` (it asks for tools), ``"content_filter"`` (the server's filter
    stopped it), or the server's own word. Yielded once, after the reply's deltas."""

    reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one model call; ``None`` where the server gave no figure.

    ``cached_tokens`` are the prompt tokens the server took from its cache (part of
    ``prompt_tokens``); ``reasoning_tokens`` are the completion tokens spent thinking (part
    of ``completion_tokens``).
    """

    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    @property
    def total_tokens(self) -> int | None:
        """Prompt and completion tokens together (``None`` when either is unknown)."""
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens


Chunk = TextDelta | ReasoningDelta | ToolCallDelta | Finish | Usage
"""What ``LLMBackend.stream`` yields."""


@runtime_checkable
class LLMBackend(Protocol):
    """An LLM backend, as ``register_llm_backends`` registers it."""

    name: str
    """The name workers choose it by (``backend="openai"``)."""
    options_model: type[BaseModel]
    """Its settings; ``LLMWorker(backend_options={...})`` and ``[llm] options`` are validated
    with it."""

    def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], options: Any
    ) -> AsyncIterator[Chunk]:
        """Run the model on ``messages`` (OpenAI chat format: ``role``, ``content``,
        ``tool_calls``, ``tool_call_id``), offering ``tools`` (OpenAI function-tool
        schemas), and yield the reply as it arrives.

        Raise an exception with a message that says what to do (wrong key, unknown model,
        server unreachable): the job ends ``ERROR`` with that message.
        """
        ...
