"""OpenAI's Responses API (``POST .../responses``): the conversation in chat format made into
``input`` items, and the reply (streamed ``response.*`` events, or one ``response``) made
into chunks.

The worker keeps the conversation, so every call sends all of it (``store: false``: the
server keeps nothing). Tool calls are ``function_call`` items and their results
``function_call_output`` items; ``response.incomplete`` gives the finish reason ``length``
(``max_output_tokens``) or ``content_filter``.
"""

from __future__ import annotations

import json
from typing import Any

from agent_plugin_openai._chat import json_schema, tool_choice, usage
from agent_plugin_openai._http import Call
from agent_plugin_openai._options import OpenAIOptions
from framework.llm.backend import Chunk, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage

PATH = "/responses"

_TEXT_FIELDS = {"output_text": "text", "refusal": "refusal"}
"""A message's content parts that are the answer's text, and the field holding it (a
refusal, structured output the model declines to give, is the answer too)."""
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


def _content(content: Any, role: str) -> Any:
    """Chat message content as Responses content: a string stays; parts are renamed."""
    if not isinstance(content, list):
        return "" if content is None else content
    kind = "output_text" if role == "assistant" else "input_text"
    parts: list[Any] = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append({"type": kind, "text": part.get("text", "")})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append({"type": "input_image", "image_url": url})
        else:
            parts.append(part)
    return parts


def items(messages: list[dict[str, Any]], opts: OpenAIOptions) -> list[dict[str, Any]]:
    """The conversation as Responses ``input`` items."""
    found: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "tool":
            output = message.get("content")
            found.append(
                {
                    "type": "function_call_output",
                    "call_id": message.get("tool_call_id", ""),
                    "output": output if isinstance(output, str) else json.dumps(output),
                }
            )
            continue
        if role == "system":
            role = opts.system_role
        content = message.get("content")
        if content or role != "assistant":
            found.append({"role": role, "content": _content(content, str(role))})
        for tool_call in message.get("tool_calls") or ():
            function = tool_call.get("function") or {}
            found.append(
                {
                    "type": "function_call",
                    "call_id": tool_call.get("id", ""),
                    "name": function.get("name", ""),
                    "arguments": function.get("arguments") or "{}",
                }
            )
    return found


def body(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], opts: OpenAIOptions
) -> dict[str, Any]:
    """The request body: the conversation as items, the tools and the options set."""
    request: dict[str, Any] = {
        "model": opts.body_model,
        "input": items(messages, opts),
        "store": False,
    }
    if opts.stream:
        request["stream"] = True
    if tools:
        request["tools"] = [{"type": "function", **tool["function"]} for tool in tools]
        if opts.tool_choice is not None:
            request["tool_choice"] = tool_choice(opts.tool_choice, messages, chat=False)
        if opts.parallel_tool_calls is not None:
            request["parallel_tool_calls"] = opts.parallel_tool_calls
    for name in ("temperature", "top_p"):
        value = getattr(opts, name)
        if value is not None:
            request[name] = value
    limit = opts.max_tokens or opts.max_completion_tokens
    if limit is not None:
        request["max_output_tokens"] = limit
    if opts.reasoning_effort is not None:
        request["reasoning"] = {"effort": opts.reasoning_effort}
    if opts.response_format is not None:
        value = opts.response_format
        if value in ("text", "json_object"):
            text_format: dict[str, Any] = {"type": value}
        elif isinstance(value, dict) and value.get("type") == "json_schema":
            text_format = {"type": "json_schema", **value.get("json_schema", {})}
        else:
            text_format = {"type": "json_schema", **json_schema(value)}
        request["text"] = {"format": text_format}
    request.update(opts.extra_body)
    return request


class ResponsesParser:
    """One attempt's reply: chunks as the ``response.*`` events come, then ``Finish`` and
    ``Usage`` from ``response.completed`` (or ``response.incomplete``)."""

    name = "Responses API"
    last = "response.completed"

    def __init__(self, call: Call) -> None:
        self.call = call
        self.seen = False
        self.finished = False
        self.produced = False
        self.finish: str | None = None
        self.usage: Usage | None = None
        self._calls: dict[int, bool] = {}
        """Output index of each function call, and whether its arguments came yet."""

    def event(self, data: str) -> list[Chunk]:
        call = self.call
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise call.malformed(data, "not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise call.malformed(data, "not a Responses API event")
        try:
            chunks = self.read(event)
        except (AttributeError, TypeError, ValueError):
            raise call.malformed(data, "not a Responses API event") from None
        self.produced = self.produced or bool(chunks)
        return chunks

    def read(self, event: dict[str, Any]) -> list[Chunk]:
        kind: str = event["type"]
        if kind == "error":
            raise self.call.reported(event, not self.produced)
        if not kind.startswith("response."):
            return []
        self.seen = True
        if kind in ("response.output_text.delta", "response.refusal.delta"):
            return [TextDelta(event["delta"])] if event.get("delta") else []
        if kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            return [ReasoningDelta(event["delta"])] if event.get("delta") else []
        if kind == "response.output_item.added":
            item = event.get("item") or {}
            if item.get("type") != "function_call":
                return []
            index = int(event.get("output_index", len(self._calls)))
            self._calls[index] = bool(item.get("arguments"))
            return [
                ToolCallDelta(
                    index,
                    id=item.get("call_id") or item.get("id") or None,
                    name=item.get("name") or None,
                    arguments=item.get("arguments") or "",
                )
            ]
        if kind == "response.function_call_arguments.delta":
            index = int(event.get("output_index", 0))
            self._calls[index] = True
            return [ToolCallDelta(index, arguments=event.get("delta") or "")]
        if kind in ("response.function_call_arguments.done", "response.output_item.done"):
            # The whole arguments again: taken only when none came before (a server that
            # sends no deltas), else the call would carry them twice.
            index = int(event.get("output_index", 0))
            item = event.get("item") or {}
            if kind == "response.output_item.done" and item.get("type") != "function_call":
                return []
            arguments = event.get("arguments") or item.get("arguments") or ""
            if not self._calls.get(index, True) and arguments:
                self._calls[index] = True
                return [ToolCallDelta(index, arguments=arguments)]
            return []
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            return self.close(event.get("response") or {})
        return []

    def close(self, response: dict[str, Any], streamed: bool = True) -> list[Chunk]:
        """The end of the reply: its status, finish reason and usage; and, when a stream
        carried nothing before it, the output it holds (a server that streams no deltas)."""
        if response.get("status") == "failed" or response.get("error"):
            raise self.call.reported(response.get("error") or response, not self.produced)
        chunks: list[Chunk] = []
        output = response.get("output")
        if streamed and not self.produced and isinstance(output, list):
            chunks = self.output(output)
        figures = response.get("usage")
        if isinstance(figures, dict) and figures:
            self.usage = usage(figures, "input_tokens", "output_tokens")
        if response.get("status") == "incomplete":
            reason = (response.get("incomplete_details") or {}).get("reason")
            self.finish = _INCOMPLETE.get(str(reason), str(reason or "length"))
        else:
            self.finish = "tool_calls" if self._calls else "stop"
        self.finished = True
        return chunks

    def whole(self, text: str) -> list[Chunk]:
        """The chunks of a ``response`` object that came whole (``stream = false``)."""
        call = self.call
        try:
            response = json.loads(text)
        except ValueError:
            raise call.malformed(text, "not JSON") from None
        if not isinstance(response, dict):
            raise call.malformed(text, "not a response")
        if response.get("error") and not response.get("output"):
            raise call.reported(response["error"], True, response)
        output = response.get("output")
        if not isinstance(output, list):
            raise call.malformed(text, "not a response: no output")
        self.seen = True
        try:
            chunks = self.output(output)
        except (AttributeError, TypeError):
            raise call.malformed(text, "not a response") from None
        self.close(response, streamed=False)
        return chunks

    def output(self, output: list[Any]) -> list[Chunk]:
        """The chunks of a response's ``output`` items: text, reasoning, function calls."""
        chunks: list[Chunk] = []
        for index, item in enumerate(output):
            kind = item.get("type")
            if kind == "message":
                for part in item.get("content") or ():
                    field = _TEXT_FIELDS.get(part.get("type"))
                    said = part.get(field) if field else None
                    if isinstance(said, str) and said:
                        chunks.append(TextDelta(said))
            elif kind == "reasoning":
                for part in [*(item.get("summary") or ()), *(item.get("content") or ())]:
                    if part.get("text"):
                        chunks.append(ReasoningDelta(part["text"]))
            elif kind == "function_call":
                self._calls[index] = True
                chunks.append(
                    ToolCallDelta(
                        index,
                        id=item.get("call_id") or item.get("id") or None,
                        name=item.get("name") or None,
                        arguments=item.get("arguments") or "",
                    )
                )
        return chunks

    def end(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        if self.finish is not None:
            chunks.append(Finish(self.finish))
        if self.usage is not None:
            chunks.append(self.usage)
        return chunks


__all__ = ["PATH", "ResponsesParser", "body", "items"]
