"""One model call over HTTP: the client, the request, the reply's server-sent events, and
every failure as an ``OpenAIBackendError`` whose message says what to do.

A failure before anything was streamed is marked ``retryable`` when waiting may help (HTTP
408, 409, 429, 5xx; a refused or dropped connection; an empty body; an error event first;
not a timeout, which would only make the wait longer): ``OpenAIBackend.stream`` then tries
again. The key is scrubbed from every message, and request ids are quoted so that a
provider's support can find the call.
"""

from __future__ import annotations

import json
import logging
import os
import re
import ssl
import time
import urllib.request
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import httpx

from agent_plugin_openai import __version__, _errors
from agent_plugin_openai._errors import QUOTE_LIMIT, RETRY_STATUSES, OpenAIBackendError
from agent_plugin_openai._options import OpenAIOptions
from framework.llm.backend import Chunk

logger = logging.getLogger("agent_plugin_openai")
http_log = logging.getLogger("agent_plugin_openai.http")
"""The HTTP debug log: each request and answer at DEBUG (never the key)."""

LOG_VARIABLE = "OPENAI_LOG"
"""``OPENAI_LOG=debug`` (as for the official SDK) turns the HTTP debug log on, for users of
``framework run`` who configure no logging."""

_OWN_EVENTS = ('"object":"chat.completion', '"type":"response.')
"""What an event of the chat completions or Responses API holds, even when broken."""

MAX_RETRY_AFTER = 60.0
"""The longest wait (seconds) a server may ask for; a longer one fails the call at once."""


class Parser(Protocol):
    """What one API (chat completions, Responses) makes of a reply, one attempt at a time."""

    name: str
    """What the API's events are called, for messages ("chat completion")."""
    last: str
    """The event that ends a reply, for messages ("[DONE]")."""
    seen: bool
    """A protocol event came (the reply is of this API)."""
    finished: bool
    """The reply's terminal event came (a finish reason, ``response.completed``)."""

    def event(self, data: str) -> list[Chunk]:
        """The chunks of one streamed event's data."""
        ...

    def whole(self, text: str) -> list[Chunk]:
        """The chunks of a reply that came whole (a JSON body)."""
        ...

    def end(self) -> list[Chunk]:
        """The chunks that close the reply (``Finish``, ``Usage``)."""
        ...


class Call:
    """One ``stream()`` call: the options made into a URL, headers and a client, and the
    messages for each way it can fail."""

    def __init__(self, opts: OpenAIOptions, path: str) -> None:
        self.opts = opts
        self.url = opts.url(path)
        self.where = re.sub(r"//[^/@]*@", "//", opts.root)  # no user:password@
        self._key = opts.key

    # ----------------------------------------------------------------- messages

    def error(self, message: str, **details: Any) -> OpenAIBackendError:
        request_id = details.get("request_id")
        if request_id:
            message += f" [request id {request_id}]"
        return OpenAIBackendError(self.scrub(message), **details)

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
        if len(text) > QUOTE_LIMIT:
            text = text[:QUOTE_LIMIT] + "..."
        return self.scrub(text)

    def malformed(self, data: str, what: str) -> OpenAIBackendError:
        quoted = f": {self.quote(data)!r}" if data else ""
        compact = data.replace(" ", "")
        if any(mark in compact for mark in _OWN_EVENTS):
            # The API's own event, broken: the server speaks the protocol, badly this once.
            hint = "try again, or check the server's logs"
        else:
            hint = "is base_url an OpenAI-compatible API?"
        return self.error(
            f"the server at {self.where} sent a malformed reply ({what}){quoted}; {hint}"
        )

    def reported(
        self, error: Any, first: bool, outer: dict[str, Any] | None = None
    ) -> OpenAIBackendError:
        """An error the server sent in a 200 reply (an error event, a JSON error body; the
        ``outer`` object holds it); retryable when it came first and does not blame the
        request."""
        message = _errors.error_message(error, outer)
        where = "at the start of" if first else "in the middle of"
        return self.error(
            f"the server at {self.where} reported an error {where} the reply: "
            f"{self.quote(message)}",
            retryable=first and not _errors.blames_request(error),
        )

    # ----------------------------------------------------------------- the client

    def headers(self, stream: bool) -> dict[str, str]:
        opts = self.opts
        headers = {
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": f"agent-plugin-openai/{__version__}",
        }
        if self._key:
            if not self._key.isascii() or not self._key.isprintable():
                raise self.error(
                    "the API key holds characters an HTTP header cannot carry: check "
                    f"{opts.key_source}"
                )
            if opts.azure_endpoint:
                headers["api-key"] = self._key
            else:
                headers["Authorization"] = f"Bearer {self._key}"
        if opts.organization:
            headers["OpenAI-Organization"] = opts.organization
        if opts.project:
            headers["OpenAI-Project"] = opts.project
        headers.update(opts.headers)
        return headers

    def client(self, ssl_context: ssl.SSLContext) -> httpx.AsyncClient:
        opts = self.opts
        timeout = httpx.Timeout(opts.timeout, connect=opts.connect_timeout)
        return httpx.AsyncClient(timeout=timeout, verify=ssl_context, proxy=opts.proxy)

    def proxy_for_url(self) -> str | None:
        """The proxy the request goes through, if any (the option, else the environment's
        for this URL, as httpx picks it)."""
        if self.opts.proxy:
            return self.opts.proxy
        url = httpx.URL(self.url)
        if urllib.request.proxy_bypass_environment(url.host):  # type: ignore[attr-defined]
            return None
        proxies = urllib.request.getproxies_environment()
        return proxies.get(url.scheme) or proxies.get("all")

    # ----------------------------------------------------------------- the request

    async def send(
        self, client: httpx.AsyncClient, body: dict[str, Any], stream: bool
    ) -> httpx.Response:
        """Send the request; return the response once the server accepts it (2xx).

        Raises:
            OpenAIBackendError: the connection failed or the server refused the request
                (``retryable`` when waiting may help).
        """
        opts, where = self.opts, self.where
        request = client.build_request("POST", self.url, json=body, headers=self.headers(stream))
        started = time.monotonic()
        if os.environ.get(LOG_VARIABLE, "").strip().lower() == "debug":
            http_log.setLevel(logging.DEBUG)
        if http_log.isEnabledFor(logging.DEBUG):
            http_log.debug("POST %s %s", self.scrub(self.url), self.scrub(json.dumps(body)))
        try:
            response = await client.send(request, stream=True)
        except httpx.ConnectTimeout:
            raise self.error(
                f"cannot connect to {self.via()}{where} within {opts.connect_timeout:g} s: is "
                "the server running, and is base_url right?"
            ) from None
        except (httpx.ConnectError, httpx.ProxyError) as exc:
            proxy = self.proxy_for_url()
            why = _errors.reason(exc)
            if proxy is not None:
                shown = self.scrub(_errors.no_password(proxy))
                message = (
                    f"cannot reach {where} through the proxy {shown}: is the proxy running, "
                    f"and is it right? ({why}; the proxy comes from the proxy option or "
                    "HTTPS_PROXY / HTTP_PROXY / ALL_PROXY; NO_PROXY skips it)"
                )
            else:
                message = f"cannot connect to {where}: is the server running? ({why})"
            raise self.error(message, retryable=True) from None
        except httpx.TimeoutException:
            raise self.error(
                f"{where} did not answer within {opts.timeout:g} s: raise [llm] options "
                "timeout, or check the server"
            ) from None
        except httpx.TransportError as exc:
            raise self.error(
                f"the connection to {where} failed before it answered: {_errors.reason(exc)}",
                retryable=True,
            ) from None
        request_id = _errors.request_id(response)
        http_log.debug(
            "%s answered HTTP %d in %.3f s%s",
            where,
            response.status_code,
            time.monotonic() - started,
            f" (request id {request_id})" if request_id else "",
        )
        if response.is_success:
            return response
        try:
            await response.aread()
        except httpx.HTTPError:
            pass  # the body only adds detail to the message
        finally:
            await response.aclose()
        raise self.status_error(response)

    def via(self) -> str:
        proxy = self.proxy_for_url()
        return "" if proxy is None else f"the proxy {_errors.no_password(proxy)} on the way to "

    def status_error(self, response: httpx.Response) -> OpenAIBackendError:
        """The error for a refused request: retryable or not, and its final message."""
        status = response.status_code
        request_id = _errors.request_id(response)
        wait = _errors.retry_after(response.headers)
        should = response.headers.get("x-should-retry", "").lower()
        retryable = (status in RETRY_STATUSES or status >= 500) and not _errors.out_of_quota(
            response
        )
        if should in ("true", "false"):
            retryable = should == "true"
        if retryable and wait is not None and wait > MAX_RETRY_AFTER:
            detail = _errors.detail(response)
            said = f": {self.quote(detail)}" if detail else ""
            return self.error(
                f"{self.where} answered HTTP {status}{said} and asks to wait {wait:.0f} s "
                "before trying again: try again later",
                status=status,
                request_id=request_id,
            )

        def final(attempts: int) -> OpenAIBackendError:
            return self.error(
                self.status_message(response, attempts), status=status, request_id=request_id
            )

        return OpenAIBackendError(
            self.scrub(f"{self.where} answered HTTP {status}"),
            status=status,
            request_id=request_id,
            retryable=retryable,
            retry_after=wait,
            final=final,
            filtered=_errors.content_filtered(response),
        )

    def status_message(self, response: httpx.Response, attempts: int) -> str:
        status, where, opts = response.status_code, self.where, self.opts
        model = opts.model
        detail = _errors.detail(response)
        said = f": {self.quote(detail)}" if detail else ""
        tries = f" on all {attempts} attempts" if attempts > 1 else ""
        if status == 401:  # the body is left out: servers quote (part of) the key there
            variable = opts.variable
            fix = f"set {variable} or [llm] options api_key"
            if self._key and "api_key" in opts.model_fields_set:
                # Setting the variable would change nothing: the option wins over it.
                hint = "the key came from [llm] options api_key"
                fix = f"check api_key there (it is used instead of {variable})"
            elif self._key:
                hint = f"the key came from {variable}"
                fix = f"check {variable}, or set [llm] options api_key"
            elif "api_key" in opts.model_fields_set:
                hint = 'none was sent: [llm] options api_key is ""'
                fix = f"set api_key, or leave it out to use {variable}"
            else:
                hint = f"none was sent: {variable} is not set"
            return f"the server at {where} refused the API key (HTTP 401; {hint}): {fix}"
        if status == 403:
            return (
                f"the server at {where} refused access to model {model!r} (HTTP 403{said}): "
                "check that the API key may use this model"
            )
        if status == 404:
            return (
                f"model {model!r} not found at {where} (HTTP 404{said}): check the model name "
                f"(the server lists its models at {where}/models) and that base_url includes "
                "the API prefix (usually /v1)"
            )
        if status == 429 and _errors.out_of_quota(response):
            return (
                f"the account has no quota left at {where} (HTTP 429{said}): check its plan "
                "and billing"
            )
        if status == 429:
            return (
                f"{where} is rate limiting (HTTP 429{said}) and still was after {attempts} "
                "attempts: try again later, or raise [llm] options max_retries"
            )
        if status >= 500 or status in RETRY_STATUSES:
            return (
                f"the server at {where} failed (HTTP {status}{said}){tries}: try again later, "
                "or check the server's logs"
            )
        if 300 <= status < 400:
            location = response.headers.get("location", "")
            return (
                f"the server at {where} redirects the request (HTTP {status}) to "
                f"{self.quote(location) or 'another address'}: set base_url to that address"
            )
        return (
            f"the server at {where} rejected the request for model {model!r} "
            f"(HTTP {status}{said}): check [llm] options and the messages"
        )

    # ----------------------------------------------------------------- the reply

    async def read(self, response: httpx.Response, parser: Parser) -> AsyncGenerator[Chunk, None]:
        """The reply's chunks, from its server-sent events (or a whole JSON body)."""
        where, timeout = self.where, self.opts.timeout
        done = False
        got_data = False
        try:
            if "json" in response.headers.get("content-type", ""):
                await response.aread()
                if not response.text.strip():
                    raise self.empty(response)
                for chunk in parser.whole(response.text):
                    yield chunk
                done = True
            else:
                events = _EventReader()
                async for line in response.aiter_lines():
                    got_data = got_data or bool(line.strip())
                    data = events.feed(line)
                    if data is None:
                        continue
                    if data.strip() == "[DONE]":
                        done = True
                        break
                    for chunk in parser.event(data):
                        yield chunk
                if not done:
                    data = events.feed("")  # an event the server did not end with a blank line
                    if data is not None and data.strip() == "[DONE]":
                        done = True
                    elif data is not None:
                        try:
                            parsed = parser.event(data)
                        except OpenAIBackendError:
                            # The stream stopped inside an event: it was cut, not malformed.
                            raise self.error(
                                f"the reply from {where} was cut off in the middle of an event: "
                                "try again",
                                retryable=True,
                            ) from None
                        for chunk in parsed:
                            yield chunk
                if not got_data:
                    raise self.empty(response)
                if not parser.seen and not parser.finished:
                    raise self.malformed(
                        "", f"no {parser.name} event at all (an SSE stream of something else)"
                    )
        except httpx.TimeoutException:
            raise self.error(
                f"the reply from {where} stalled: nothing came for {timeout:g} s; try again, "
                "or raise [llm] options timeout"
            ) from None
        except httpx.TransportError as exc:
            raise self.error(
                f"the reply from {where} was cut off before it was complete "
                f"({_errors.reason(exc)}): try again",
                retryable=True,
            ) from None
        if not (done or parser.finished):
            raise self.error(
                f"the reply from {where} was cut off before it was complete (the stream "
                f"ended without {parser.last}): try again",
                retryable=True,
            )
        for chunk in parser.end():
            yield chunk

    def empty(self, response: httpx.Response) -> OpenAIBackendError:
        return self.error(
            f"the server at {self.where} answered HTTP {response.status_code} with an empty "
            "body: try again, or check the server",
            retryable=True,
            request_id=_errors.request_id(response),
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


__all__ = ["Call", "OpenAIBackendError", "Parser"]
