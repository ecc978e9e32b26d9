"""The chat completions API (``POST .../chat/completions``): the request body from the
options, and the reply (streamed ``chat.completion.chunk`` events, or one
``chat.completion``) made into chunks.

Servers differ in small ways, all understood: tool calls without ``index``, arguments sent
as an object, ``content: null`` (with a ``refusal`` instead, which is the answer's text),
reasoning as ``reasoning_content`` or ``reasoning``, no usage, finish reasons in other words
(``eos``, ``max_tokens``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from agent_plugin_openai._http import Call
from agent_plugin_openai._options import OpenAIOptions
from framework.llm.backend import Chunk, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage

PATH = "/chat/completions"

FINISH_WORDS = {
    "function_call": "tool_calls",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "max_output_tokens": "length",
}
"""Finish reasons other servers send, in OpenAI's words."""


def body(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], opts: OpenAIOptions
) -> dict[str, Any]:
    """The request body: the conversation, the tools and every option that is set."""
    request: dict[str, Any] = {"model": opts.model, "messages": with_system_role(messages, opts)}
    if opts.stream:
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
    if tools:
        request["tools"] = tools
        if opts.tool_choice is not None:
            request["tool_choice"] = tool_choice(opts.tool_choice, messages, chat=True)
        if opts.parallel_tool_calls is not None:
            request["parallel_tool_calls"] = opts.parallel_tool_calls
    for name in (
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "reasoning_effort",
    ):
        value = getattr(opts, name)
        if value is not None:
            request[name] = value
    if opts.response_format is not None:
        request["response_format"] = response_format(opts.response_format)
    request.update(opts.extra_body)
    return request


def with_system_role(messages: list[dict[str, Any]], opts: OpenAIOptions) -> list[dict[str, Any]]:
    """The messages, system ones in ``opts.system_role`` (``developer`` for reasoning
    models)."""
    if opts.system_role == "system":
        return messages
    return [{**m, "role": "developer"} if m.get("role") == "system" else m for m in messages]


def tool_choice(value: str, messages: list[dict[str, Any]], *, chat: bool) -> Any:
    """``auto``/``none``/``required`` as they are; a tool's name forces that tool. Once the
    tools have answered (the last message is a tool result), a forced choice is ``auto``:
    forced again, the model could never give its answer and the tool loop would not end."""
    if value not in ("auto", "none") and messages and messages[-1].get("role") == "tool":
        return "auto"
    if value in ("auto", "none", "required"):
        return value
    if chat:
        return {"type": "function", "function": {"name": value}}
    return {"type": "function", "name": value}


def json_schema(value: Any) -> dict[str, Any]:
    """The ``json_schema`` format of a pydantic model class or a JSON schema dict (one that
    is already ``{"name", "schema", ...}`` is kept)."""
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {"name": value.__name__, "schema": value.model_json_schema(), "strict": False}
    if "schema" in value and "name" in value:
        return dict(value)
    name = str(value.get("title") or "response")
    return {
        "name": "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64],
        "schema": value,
        "strict": False,
    }


def response_format(value: Any) -> dict[str, Any]:
    """The chat API's ``response_format``."""
    if value in ("text", "json_object"):
        return {"type": value}
    if isinstance(value, dict) and value.get("type") in ("text", "json_object", "json_schema"):
        return dict(value)
    return {"type": "json_schema", "json_schema": json_schema(value)}


def finish_word(reason: Any) -> str | None:
    """A server's finish reason in OpenAI's words (``None`` when it gave none)."""
    if not reason or not isinstance(reason, str):
        return None
    return FINISH_WORDS.get(reason, reason)


def count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage(
    figures: dict[str, Any], prompt: str = "prompt_tokens", completion: str = "completion_tokens"
) -> Usage:
    """A ``Usage`` from a server's usage object (``None`` for a figure it left out)."""
    prompt_details = figures.get(prompt.replace("_tokens", "_tokens_details")) or {}
    completion_details = figures.get(completion.replace("_tokens", "_tokens_details")) or {}
    return Usage(
        count(figures.get(prompt)),
        count(figures.get(completion)),
        count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None,
        count(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else None,
    )


class ChatParser:
    """One attempt's reply: chunks as they come, then ``Finish`` and ``Usage``."""

    name = "chat completion"
    last = "[DONE]"

    def __init__(self, call: Call) -> None:
        self.call = call
        self.seen = False
        self.finished = False
        self.produced = False
        self.finish: str | None = None
        self.usage: Usage | None = None

    def event(self, data: str) -> list[Chunk]:
        """The chunks of one streamed event (a ``chat.completion.chunk``)."""
        call = self.call
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise call.malformed(data, "not JSON") from None
        if not isinstance(event, dict):
            raise call.malformed(data, "not a JSON object")
        error = event.get("error")
        if error:
            raise call.reported(error, not self.produced, event)
        try:
            return self.read(event, "delta")
        except (AttributeError, TypeError, ValueError):
            raise call.malformed(data, "not a chat completion chunk") from None

    def whole(self, text: str) -> list[Chunk]:
        """The chunks of a reply that came whole (a ``chat.completion``)."""
        call = self.call
        try:
            event = json.loads(text)
        except ValueError:
            raise call.malformed(text, "not JSON") from None
        error = event.get("error") if isinstance(event, dict) else None
        if error:
            raise call.reported(error, True, event)
        if not isinstance(event, dict) or not isinstance(event.get("choices"), list):
            raise call.malformed(text, "not a chat completion")
        try:
            chunks = self.read(event, "message")
        except (AttributeError, TypeError, ValueError):
            raise call.malformed(text, "not a chat completion") from None
        self.finished = True
        return chunks

    def end(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        if self.finish is not None:
            chunks.append(Finish(self.finish))
        if self.usage is not None:
            chunks.append(self.usage)
        return chunks

    def read(self, event: dict[str, Any], key: str) -> list[Chunk]:
        """Text, reasoning and tool-call deltas from ``event["choices"][0][key]``; notes the
        usage and the finish reason."""
        chunks: list[Chunk] = []
        if "choices" in event:
            self.seen = True
        figures = event.get("usage")
        if isinstance(figures, dict) and figures:
            self.usage = usage(figures)
        for choice in event.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one reply is asked for (n=1)
            delta = choice.get(key) or {}
            for field in ("reasoning_content", "reasoning"):
                thinking = delta.get(field)
                if isinstance(thinking, str) and thinking:
                    chunks.append(ReasoningDelta(thinking))
                    break
            # A refusal (structured output the model declines to give) is the answer's text:
            # dropped, the job would complete with an empty answer.
            for field in ("content", "refusal"):
                said = delta.get(field)
                if isinstance(said, str) and said:
                    chunks.append(TextDelta(said))
            for position, tool_call in enumerate(delta.get("tool_calls") or ()):
                function = tool_call.get("function") or {}
                arguments = function.get("arguments") or ""
                if not isinstance(arguments, str):  # some servers send the object itself
                    arguments = json.dumps(arguments)
                chunks.append(
                    ToolCallDelta(
                        int(tool_call.get("index", position)),
                        id=tool_call.get("id") or None,
                        name=function.get("name") or None,
                        arguments=arguments,
                    )
                )
            reason = finish_word(choice.get("finish_reason"))
            if reason is not None:
                self.finish = reason
                self.finished = True
        self.produced = self.produced or bool(chunks)
        return chunks


__all__ = ["PATH", "ChatParser", "body"]
