"""The LLM backend protocol: what a backend plugin implements.

A backend is an object registered with ``register_llm_backends``: it has a ``name``, an
``options_model`` (a pydantic model of its settings: model name, URL, key, temperature...)
and ``stream(messages, tools, options)``, an async iterator of chunks: ``TextDelta`` as the
reply's text arrives, ``ToolCallDelta`` as tool calls arrive (a call may be split across
several deltas sharing an ``index``), and one ``Usage`` record, last.
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
class Usage:
    """Token counts of one model call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


Chunk = TextDelta | ToolCallDelta | Usage
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
