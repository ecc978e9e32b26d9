"""The built-in ``offline`` LLM backend: deterministic, network-free, and enough to exercise
the whole tool loop.

What it answers, given the conversation (the documented forms):

- The last message is a tool result: it reports every result of that turn,
  ``"<tool> returned <result>."`` (several tools: one sentence each).
- The last user message holds one or more ``use TOOL {json arguments}`` parts (the JSON is
  optional; parts may be joined by ``and`` or new lines): it calls those tools, all in one
  turn, if they are offered; an unknown tool name gets a reply that lists the tools.
- Otherwise: ``You said: <the last user message>``.

It streams its reply word by word (a word and the space before it per delta), splits each
tool call's arguments across two deltas, and ends with a ``Usage`` counting words. With
``tokens=N`` in its options it ignores the conversation and emits exactly ``N`` tokens as
fast as it can (for benchmarks); ``delay`` sleeps between deltas (for demos).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
from pydantic import BaseModel, ConfigDict, Field

from framework.llm.backend import Chunk, TextDelta, ToolCallDelta, Usage

_USE = re.compile(r"\buse\s+([A-Za-z0-9_-]+)\s*(\{.*?\})?(?=\s*(?:\band\b|\n|$|\buse\b))", re.S)


class OfflineOptions(BaseModel):
    """Settings of the offline backend."""

    model_config = ConfigDict(extra="forbid")

    delay: float = Field(default=0.0, ge=0, description="seconds to sleep between deltas")
    tokens: int | None = Field(default=None, ge=0, description="emit exactly this many tokens")


class OfflineBackend:
    """Deterministic replies and tool calls, no network (see the module docstring)."""

    name = "offline"
    options_model = OfflineOptions

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], options: Any
    ) -> AsyncIterator[Chunk]:
        """Yield the reply for ``messages`` (text deltas, tool-call deltas, usage)."""
        opts = (
            options
            if isinstance(options, OfflineOptions)
            else OfflineOptions.model_validate(options or {})
        )
        prompt = sum(len(str(m.get("content") or "").split()) for m in messages)
        if opts.tokens is not None:
            for index in range(opts.tokens):
                yield TextDelta(" tok" if index else "tok")
            yield Usage(prompt, opts.tokens)
            return
        offered = [t["function"]["name"] for t in tools if t.get("type") == "function"]
        calls = _tool_calls(messages)
        if calls:
            unknown = [name for name, _ in calls if name not in offered]
            if unknown:
                text = (
                    f"I have no tool named {unknown[0]}; my tools are: "
                    f"{', '.join(offered) or 'none'}."
                )
            else:
                for index, (name, arguments) in enumerate(calls):
                    half = len(arguments) // 2
                    yield ToolCallDelta(
                        index, id=f"call_{index}", name=name, arguments=arguments[:half]
                    )
                    yield ToolCallDelta(index, arguments=arguments[half:])
                yield Usage(prompt, len(calls))
                return
        else:
            text = _reply(messages)
        words = text.split(" ")
        for index, word in enumerate(words):
            if opts.delay:
                await anyio.sleep(opts.delay)
            yield TextDelta(word if index == 0 else " " + word)
        yield Usage(prompt, len(words))


def _tool_calls(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The ``use TOOL {json}`` parts of the last message, when it is the user's."""
    if not messages or messages[-1].get("role") != "user":
        return []
    content = str(messages[-1].get("content") or "")
    calls = []
    for name, raw in _USE.findall(content):
        arguments = raw or "{}"
        try:
            json.loads(arguments)
        except json.JSONDecodeError:
            arguments = json.dumps({"text": raw})
        calls.append((name, arguments))
    return calls


def _reply(messages: list[dict[str, Any]]) -> str:
    results = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        results.append(message)
    if results:
        names = _call_names(messages)
        parts = [
            f"{names.get(str(m.get('tool_call_id')), 'the tool')} returned {m.get('content')}."
            for m in reversed(results)
        ]
        return " ".join(parts)
    for message in reversed(messages):
        if message.get("role") == "user":
            return f"You said: {message.get('content') or ''}"
    return 'Hello! Say something, or ask me to use a tool: use NAME {"arg": "value"}.'


def _call_names(messages: list[dict[str, Any]]) -> dict[str, str]:
    names = {}
    for message in messages:
        for call in message.get("tool_calls") or ():
            names[str(call.get("id"))] = str(call.get("function", {}).get("name"))
    return names
