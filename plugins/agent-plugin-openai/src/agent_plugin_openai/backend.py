"""The ``openai`` LLM backend: the OpenAI chat completions protocol over HTTP, streamed.

One ``stream()`` call is one ``POST {base_url}/chat/completions`` with ``stream: true`` and
``stream_options: {"include_usage": true}``:

- before the reply starts, HTTP 429 and 5xx are retried, ``max_retries`` times, after the
  ``Retry-After`` the server sends, else after ``backoff * 2**retry`` seconds;
- the server-sent events are parsed as they arrive: content deltas become ``TextDelta``,
  tool-call deltas ``ToolCallDelta``, the usage chunk ``Usage`` (yielded last);
- every failure raises ``OpenAIBackendError`` with a message that says what to do; the LLM
  worker ends the job ``ERROR`` with it.

The API key never appears in a message, a log line or a repr: it is a ``SecretStr``, it goes
into the ``Authorization`` header only, and text quoted from the server is scrubbed of it.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import os
import re
import ssl
import time
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from agent_plugin_openai import __version__
from framework.llm.backend import Chunk, TextDelta, ToolCallDelta, Usage

logger = logging.getLogger("agent_plugin_openai")

API_KEY_VARIABLE = "OPENAI_API_KEY"
"""The environment variable the key comes from when the options give none."""
MAX_RETRY_AFTER = 60.0
"""The longest ``Retry-After`` (seconds) waited for; a longer one fails the call at once."""
_QUOTE_LIMIT = 300


def _key_from_environment() -> SecretStr:
    return SecretStr(os.environ.get(API_KEY_VARIABLE, "").strip())


class OpenAIOptions(BaseModel):
    """Settings of the ``openai`` backend (``[llm.options]``, or ``backend_options``)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(
        default="https://api.openai.com/v1",
        description="the server's API root, up to /v1 (default: OpenAI)",
    )
    model: str = Field(default="gpt-4o-mini", min_length=1, description="the model's name")
    api_key: SecretStr = Field(
        default_factory=_key_from_environment,
        description=f"the API key (default: ${API_KEY_VARIABLE}; empty: none is sent)",
    )
    timeout: float = Field(
        default=120.0,
        gt=0,
        description="seconds to wait to connect, and for each piece of the reply",
    )
    max_retries: int = Field(
        default=3, ge=0, description="retries on HTTP 429 and 5xx, before the reply starts"
    )
    backoff: float = Field(
        default=0.5,
        ge=0,
        description="seconds before the first retry, doubling (unless the server says)",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="sampling temperature (default: the server's)"
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value

    @field_validator("api_key")
    @classmethod
    def _strip_key(cls, value: SecretStr) -> SecretStr:
        # A key pasted from a file often ends with a newline.
        return SecretStr(value.get_secret_value().strip())


class OpenAIBackendError(RuntimeError):
    """A model call failed; the message says why and what to do.

    Attributes:
        status: the HTTP status that caused it, if any.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class OpenAIBackend:
    """The ``openai`` backend: any server speaking the OpenAI chat completions protocol."""

    name = "openai"
    options_model = OpenAIOptions

    def __init__(self) -> None:
        self._ssl: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return "OpenAIBackend()"

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
        call = _Call(opts)
        body: dict[str, Any] = {
            "model": opts.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            body["tools"] = tools
        if opts.temperature is not None:
            body["temperature"] = opts.temperature
        if self._ssl is None:  # made once: building one loads the CA certificates
            self._ssl = httpx.create_ssl_context()
        client = httpx.AsyncClient(timeout=httpx.Timeout(opts.timeout), verify=self._ssl)
        response: httpx.Response | None = None
        try:
            response = await call.open(client, body)
            async with contextlib.aclosing(call.read(response)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                if response is not None:
                    await response.aclose()
                await client.aclose()


class _Call:
    """One model call: the request with its retries, the reply's parsing, the messages."""

    def __init__(self, opts: OpenAIOptions) -> None:
        self.opts = opts
        self.url = f"{opts.base_url}/chat/completions"
        self.where = re.sub(r"//[^/@]*@", "//", opts.base_url)  # no user:password@
        self._key = opts.api_key.get_secret_value()
        self.usage = Usage()
        self.finished = False
        self.seen_completion = False

    def error(self, message: str, status: int | None = None) -> OpenAIBackendError:
        return OpenAIBackendError(self.scrub(message), status=status)

    def scrub(self, text: str) -> str:
        """``text`` without the API key, whole or masked (servers quote what they were sent,
        often as its first and last few characters: ``sk-SEC****7890``)."""
        if not self._key:
            return text
        text = text.replace(self._key, "***")
        key = self._key
        for piece in {key[:6], key[-4:]} if len(key) >= 12 else {key}:
            if len(piece) >= 4:
                text = re.sub(rf"\S*{re.escape(piece)}\S*", "***", text)
        return text

    def quote(self, text: str) -> str:
        text = " ".join(text.split())
        if len(text) > _QUOTE_LIMIT:
            text = text[:_QUOTE_LIMIT] + "..."
        return self.scrub(text)

    def headers(self) -> dict[str, str]:
        headers = {
            "Accept": "text/event-stream",
            "User-Agent": f"agent-plugin-openai/{__version__}",
        }
        if self._key:
            if not self._key.isascii() or not self._key.isprintable():
                raise self.error(
                    "the API key holds characters an HTTP header cannot carry: check "
                    f"{API_KEY_VARIABLE} or [llm] options api_key"
                )
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    # ----------------------------------------------------------------- the request

    async def open(self, client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
        """Send the request until the server accepts it (retrying 429 and 5xx); return the
        streaming response."""
        opts, where = self.opts, self.where
        headers = self.headers()
        for attempt in range(opts.max_retries + 1):
            request = client.build_request("POST", self.url, json=body, headers=headers)
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectTimeout:
                raise self.error(
                    f"cannot connect to {where} within {opts.timeout:g} s: is the server "
                    "running, and is base_url right?"
                ) from None
            except httpx.ConnectError as exc:
                raise self.error(
                    f"cannot connect to {where}: is the server running? ({_reason(exc)})"
                ) from None
            except httpx.TimeoutException:
                raise self.error(
                    f"{where} did not answer within {opts.timeout:g} s: raise [llm] options "
                    "timeout, or check the server"
                ) from None
            except httpx.TransportError as exc:
                raise self.error(
                    f"the connection to {where} failed before it answered: {_reason(exc)}"
                ) from None
            if response.is_success:
                return response
            try:
                await response.aread()
            except httpx.HTTPError:
                pass  # the body only adds detail to the message
            finally:
                await response.aclose()
            status = response.status_code
            if (status == 429 or status >= 500) and not _out_of_quota(response):
                wait = _retry_after(response.headers.get("retry-after"))
                if wait is not None and wait > MAX_RETRY_AFTER:
                    raise self.error(
                        f"{where} answered HTTP {status} and asks to wait {wait:.0f} s before "
                        "trying again: try again later",
                        status,
                    )
                if attempt < opts.max_retries:
                    if wait is None:
                        wait = opts.backoff * 2**attempt
                    logger.warning(
                        "LLM backend openai: %s answered HTTP %d; retry %d of %d in %.2f s",
                        where,
                        status,
                        attempt + 1,
                        opts.max_retries,
                        wait,
                    )
                    await anyio.sleep(wait)
                    continue
            raise self.status_error(response, attempt + 1)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def status_error(self, response: httpx.Response, attempts: int) -> OpenAIBackendError:
        """The error for a refused request, saying what to do."""
        status, where, model = response.status_code, self.where, self.opts.model
        detail = _detail(response)
        said = f": {self.quote(detail)}" if detail else ""
        if status == 401:  # the body is left out: servers quote (part of) the key there
            hint = "" if self._key else f" (none was sent: {API_KEY_VARIABLE} is not set)"
            message = (
                f"the server at {where} refused the API key (HTTP 401){hint}: set "
                f"{API_KEY_VARIABLE} or [llm] options api_key"
            )
        elif status == 403:
            message = (
                f"the server at {where} refused access to model {model!r} (HTTP 403): check "
                "that the API key may use this model"
            )
        elif status == 404:
            message = (
                f"model {model!r} not found at {where} (HTTP 404{said}): check the model name "
                f"(the server lists its models at {where}/models) and that base_url includes "
                "the API prefix (usually /v1)"
            )
        elif status == 429 and _out_of_quota(response):
            message = (
                f"the account has no quota left at {where} (HTTP 429{said}): check its plan "
                "and billing"
            )
        elif status == 429:
            message = (
                f"{where} is rate limiting (HTTP 429) and still was after {attempts} "
                "attempts: try again later, or raise [llm] options max_retries"
            )
        elif status >= 500:
            message = (
                f"the server at {where} failed (HTTP {status}{said}) on all {attempts} "
                "attempts: try again later, or check the server's logs"
            )
        elif 300 <= status < 400:
            location = response.headers.get("location", "")
            message = (
                f"the server at {where} redirects the request (HTTP {status}) to "
                f"{self.quote(location) or 'another address'}: set base_url to that address"
            )
        else:
            message = (
                f"the server at {where} rejected the request for model {model!r} "
                f"(HTTP {status}{said}): check [llm] options and the messages"
            )
        return self.error(message, status)

    # ----------------------------------------------------------------- the reply

    async def read(self, response: httpx.Response) -> AsyncGenerator[Chunk, None]:
        """The reply's chunks, from the server-sent events (or a whole JSON reply)."""
        where, timeout = self.where, self.opts.timeout
        done = False
        try:
            if "json" in response.headers.get("content-type", ""):
                # A server that ignored stream=true and answered all at once.
                await response.aread()
                for chunk in self.whole(response.text):
                    yield chunk
                done = True
            else:
                events = _EventReader()
                async for line in response.aiter_lines():
                    data = events.feed(line)
                    if data is None:
                        continue
                    if data.strip() == "[DONE]":
                        done = True
                        break
                    for chunk in self.chunks(data):
                        yield chunk
                else:
                    data = events.feed("")  # an event the server did not end with a blank line
                    if data is not None and data.strip() == "[DONE]":
                        done = True
                    elif data is not None:
                        try:
                            parsed = self.chunks(data)
                        except OpenAIBackendError:
                            # The stream stopped inside an event: it was cut, not malformed.
                            raise self.error(
                                f"the reply from {where} was cut off in the middle of an event: "
                                "try again"
                            ) from None
                        for chunk in parsed:
                            yield chunk
                if not self.seen_completion and not self.finished:
                    raise self.malformed(
                        "", "no chat completion event at all (an SSE stream of something else)"
                    )
        except httpx.TimeoutException:
            raise self.error(
                f"the reply from {where} stalled: nothing came for {timeout:g} s; try again, "
                "or raise [llm] options timeout"
            ) from None
        except httpx.TransportError as exc:
            raise self.error(
                f"the reply from {where} was cut off before it was complete "
                f"({_reason(exc)}): try again"
            ) from None
        if not (done or self.finished):
            raise self.error(
                f"the reply from {where} was cut off before it was complete (the stream "
                "ended without [DONE]): try again"
            )
        yield self.usage

    def chunks(self, data: str) -> list[Chunk]:
        """The chunks of one streamed event (a ``chat.completion.chunk``)."""
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            raise self.malformed(data, "not JSON") from None
        if not isinstance(event, dict):
            raise self.malformed(data, "not a JSON object")
        error = event.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            raise self.error(
                f"the server at {self.where} reported an error in the middle of the reply: "
                f"{self.quote(str(message))}"
            )
        try:
            return self.from_event(event, "delta")
        except (AttributeError, TypeError, ValueError):
            raise self.malformed(data, "not a chat completion chunk") from None

    def whole(self, text: str) -> list[Chunk]:
        """The chunks of a reply that came whole (a ``chat.completion``), then ``finished``."""
        try:
            event = json.loads(text)
        except ValueError:
            raise self.malformed(text, "not JSON") from None
        error = event.get("error") if isinstance(event, dict) else None
        if error:
            message = error.get("message") if isinstance(error, dict) else error
            raise self.error(
                f"the server at {self.where} reported an error: {self.quote(str(message))}"
            )
        if not isinstance(event, dict) or not isinstance(event.get("choices"), list):
            raise self.malformed(text, "not a chat completion")
        try:
            return self.from_event(event, "message")
        except (AttributeError, TypeError, ValueError):
            raise self.malformed(text, "not a chat completion") from None

    def from_event(self, event: dict[str, Any], key: str) -> list[Chunk]:
        """Text and tool-call deltas from ``event["choices"][0][key]``; notes the usage and
        whether the reply finished."""
        chunks: list[Chunk] = []
        if "choices" in event:
            self.seen_completion = True
        usage = event.get("usage")
        if usage:
            self.usage = Usage(
                int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
            )
        for choice in event.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one reply is asked for (n=1)
            delta = choice.get(key) or {}
            content = delta.get("content")
            if isinstance(content, str) and content:
                chunks.append(TextDelta(content))
            for position, call in enumerate(delta.get("tool_calls") or ()):
                function = call.get("function") or {}
                arguments = function.get("arguments") or ""
                if not isinstance(arguments, str):  # some servers send the object itself
                    arguments = json.dumps(arguments)
                chunks.append(
                    ToolCallDelta(
                        int(call.get("index", position)),
                        id=call.get("id") or None,
                        name=function.get("name") or None,
                        arguments=arguments,
                    )
                )
            if choice.get("finish_reason"):
                self.finished = True
        return chunks

    def malformed(self, data: str, what: str) -> OpenAIBackendError:
        quoted = f": {self.quote(data)!r}" if data else ""
        return self.error(
            f"the server at {self.where} sent a malformed reply ({what}){quoted}; "
            "is base_url an OpenAI-compatible API?"
        )


class _EventReader:
    """Server-sent events from lines: ``feed`` returns an event's data when the blank line
    that ends it arrives (``data:`` fields joined by new lines; other fields ignored)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if not line:
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data.clear()
            return data
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


def _reason(exc: BaseException) -> str:
    """Why a connection failed: the system's reason ("Connection refused") when the chain
    of causes holds one, else httpx's message."""
    cause: BaseException | None = exc
    for _ in range(10):  # the chain is short; a cycle must not loop forever
        if cause is None:
            break
        if isinstance(cause, OSError) and cause.errno is not None:
            # os.strerror: asyncio words a refusal "Connect call failed ('host', port)".
            return os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def _text(response: httpx.Response) -> str:
    """The body of an error response, when it could be read."""
    try:
        return response.text
    except httpx.ResponseNotRead:
        return ""


def _detail(response: httpx.Response) -> str:
    """What the server said about an error (its ``error.message``, or its text)."""
    text = _text(response)
    try:
        data = json.loads(text)
    except ValueError:
        return "" if text.lstrip().startswith("<") else text.strip()  # no HTML pages
    if isinstance(data, dict):
        error = data.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        for said in (message, data.get("detail"), data.get("message")):
            if said:
                return str(said)
    return text.strip()


def _out_of_quota(response: httpx.Response) -> bool:
    """OpenAI's 429 for an account without credit: waiting does not help."""
    return response.status_code == 429 and "insufficient_quota" in _text(response)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds, or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


__all__ = ["API_KEY_VARIABLE", "OpenAIBackend", "OpenAIBackendError", "OpenAIOptions"]
