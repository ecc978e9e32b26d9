"""The ``openai`` LLM backend: the OpenAI chat completions protocol (or the Responses API)
over HTTP, streamed or not.

One ``stream()`` call is one model call: ``POST {base_url}/chat/completions`` (``api =
"chat"``) or ``POST {base_url}/responses`` (``api = "responses"``), with ``stream: true``
unless ``stream = false``:

- until the first chunk reaches the worker, a failure that waiting may cure (HTTP 408,
  409, 429, 5xx; a refused or dropped connection; an empty body; an error event first) is
  retried ``max_retries`` times, after the ``retry-after-ms`` or ``Retry-After`` the server
  sends, else after ``backoff * 2**retry`` seconds;
- the reply is parsed as it arrives: text becomes ``TextDelta``, a reasoning model's
  thinking ``ReasoningDelta``, tool calls ``ToolCallDelta``; then ``Finish`` (the finish
  reason) and ``Usage`` (when the server sent figures);
- every failure raises ``OpenAIBackendError`` with a message that says what to do; the LLM
  worker ends the job ``ERROR`` with it.

The API key never appears in a message, a log line or a repr: it is a ``SecretStr``, it goes
into the ``Authorization`` (or Azure's ``api-key``) header only, and text quoted from the
server is scrubbed of it.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import httpx

from agent_plugin_openai import _chat, _responses
from agent_plugin_openai._errors import request_id
from agent_plugin_openai._http import MAX_RETRY_AFTER, Call, OpenAIBackendError, Parser
from agent_plugin_openai._options import API_KEY_VARIABLE, OpenAIOptions
from framework.llm.backend import Chunk, Finish

logger = logging.getLogger("agent_plugin_openai")


class OpenAIBackend:
    """The ``openai`` backend: any server speaking the OpenAI chat completions protocol,
    OpenAI's Responses API, and Azure OpenAI."""

    name = "openai"
    options_model = OpenAIOptions

    def __init__(self) -> None:
        self._ssl: dict[str | None, ssl.SSLContext] = {}

    def __repr__(self) -> str:
        return "OpenAIBackend()"

    def _ssl_context(self, ca_bundle: str | None) -> ssl.SSLContext:
        # Made once per CA bundle: building one loads the certificates.
        context = self._ssl.get(ca_bundle)
        if context is None:
            context = (
                ssl.create_default_context(cafile=ca_bundle)
                if ca_bundle
                else httpx.create_ssl_context()
            )
            self._ssl[ca_bundle] = context
        return context

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], options: Any
    ) -> AsyncGenerator[Chunk, None]:
        """Yield the model's reply to ``messages`` as it arrives (see the module docstring).

        Raises:
            OpenAIBackendError: the server cannot be reached, refuses the call, or breaks
                off; the message says what to do.
        """
        opts = (
            options
            if isinstance(options, OpenAIOptions)
            else OpenAIOptions.model_validate(options or {})
        )
        api = _responses if opts.api == "responses" else _chat
        call = Call(opts, api.PATH)
        body = api.body(messages, tools, opts)
        client = call.client(self._ssl_context(opts.ca_bundle))
        attempt = 0
        try:
            while True:
                yielded = False
                try:
                    response = await call.send(client, body, opts.stream)
                    parser: Parser = (
                        _responses.ResponsesParser(call)
                        if opts.api == "responses"
                        else _chat.ChatParser(call)
                    )
                    try:
                        async with contextlib.aclosing(call.read(response, parser)) as chunks:
                            async for chunk in chunks:
                                yielded = True
                                yield chunk
                    except OpenAIBackendError as error:
                        raise error.tagged(request_id(response)) from None
                    finally:
                        with anyio.CancelScope(shield=True):
                            await response.aclose()
                    return
                except OpenAIBackendError as error:
                    if error.filtered:
                        # Azure's filter stopped the prompt: the reply's end, as when it
                        # stops a reply, so that the job fails saying so.
                        logger.warning("LLM backend openai: %s", error.after(1))
                        yield Finish("content_filter")
                        return
                    if not yielded and _refuses_stream_options(error, body):
                        # Older servers (Azure before api-version 2024-09-01-preview, some
                        # proxies) refuse the key that asks for usage: ask without it.
                        del body["stream_options"]
                        logger.warning(
                            "LLM backend openai: %s refuses stream_options; asking without "
                            "(the token counts will be unknown)",
                            call.where,
                        )
                        continue
                    if yielded or not error.retryable or attempt >= opts.max_retries:
                        raise error.after(attempt + 1) from None
                    wait = error.retry_after
                    if wait is None:
                        wait = opts.backoff * 2**attempt
                    attempt += 1
                    logger.warning(
                        "LLM backend openai: %s; retry %d of %d in %.2f s",
                        error,
                        attempt,
                        opts.max_retries,
                        wait,
                    )
                    await anyio.sleep(wait)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()


def _refuses_stream_options(error: OpenAIBackendError, body: dict[str, Any]) -> bool:
    """Whether the server refused the request (HTTP 400) over ``stream_options``."""
    return (
        error.status in (400, 422)
        and "stream_options" in body
        and "stream_options" in str(error.after(1))
    )


__all__ = [
    "API_KEY_VARIABLE",
    "MAX_RETRY_AFTER",
    "OpenAIBackend",
    "OpenAIBackendError",
    "OpenAIOptions",
]
