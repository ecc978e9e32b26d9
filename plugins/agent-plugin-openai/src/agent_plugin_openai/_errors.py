"""What servers say when a call fails, read from their answers: ``OpenAIBackendError``,
the server's own explanation (``error.message`` in its many shapes), whether an error blames
the request, how long the server asks to wait (``retry-after-ms``, ``Retry-After``), the
request id, and why a connection failed.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

QUOTE_LIMIT = 300
"""At most this many characters of what a server said go into a message."""
RETRY_STATUSES = frozenset({408, 409, 429})
"""Statuses retried besides 5xx (as the official SDK does)."""
_REQUEST_ID_HEADERS = ("x-request-id", "apim-request-id", "request-id")
_CLIENT_ERROR_TYPES = ("invalid_request", "authentication", "permission", "not_found")


class OpenAIBackendError(RuntimeError):
    """A model call failed; the message says why and what to do.

    Attributes:
        status: the HTTP status that caused it, if any.
        request_id: the server's id of the request (``x-request-id``), if it sent one.
        retryable: waiting and trying again may help (and nothing was streamed yet).
        retry_after: seconds the server asked to wait, if it did.
        filtered: the server's content filter refused the request (it is no failure of
            the call: the reply's finish reason is ``content_filter``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        final: Callable[[int], OpenAIBackendError] | None = None,
        filtered: bool = False,
    ) -> None:
        super().__init__(message)
        self.filtered = filtered
        self.status = status
        self.request_id = request_id
        self.retryable = retryable
        self.retry_after = retry_after
        self._final = final

    def tagged(self, request_id: str | None) -> OpenAIBackendError:
        """This error with the server's request id at the end of its message (once)."""
        if request_id is None or self.request_id is not None:
            return self
        return OpenAIBackendError(
            f"{self} [request id {request_id}]",
            status=self.status,
            request_id=request_id,
            retryable=self.retryable,
            retry_after=self.retry_after,
            final=self._final,
        )

    def after(self, attempts: int) -> OpenAIBackendError:
        """The error to raise once ``attempts`` attempts all failed this way."""
        if self._final is not None:
            return self._final(attempts)
        if attempts > 1:
            error = OpenAIBackendError(
                f"{self} ({attempts} attempts)", status=self.status, request_id=self.request_id
            )
            return error
        return self


def reason(exc: BaseException) -> str:
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


def no_password(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//", url)


def request_id(response: httpx.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value: str = response.headers.get(name, "")
        if value:
            return value[:100]
    return None


def _text(response: httpx.Response) -> str:
    """The body of an error response, when it could be read."""
    try:
        return response.text
    except httpx.ResponseNotRead:
        return ""


def error_message(error: Any, outer: dict[str, Any] | None = None) -> str:
    """What an error object says: its ``message`` (with its type when that adds to it), or
    the string itself; ``{"error": "TypeError", "message": "..."}`` gives both."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail")
        kind = error.get("type") or error.get("code")
        if message and isinstance(kind, str) and kind[:1].isupper() and kind not in message:
            return f"{kind}: {message}"  # an exception's name, as Node servers send it
        if message:
            return str(message)
        return json.dumps(error)[:QUOTE_LIMIT]
    text = str(error)
    said = (outer or {}).get("message") or (outer or {}).get("detail")
    if said and str(said) != text:
        return f"{text}: {said}"
    return text


def blames_request(error: Any) -> bool:
    """Whether an error event says the request itself is wrong (retrying cannot help)."""
    if not isinstance(error, dict):
        return False
    kind = str(error.get("type") or "") + " " + str(error.get("code") or "")
    status = error.get("status") or error.get("status_code")
    if isinstance(status, int) and 400 <= status < 500 and status not in RETRY_STATUSES:
        return True
    return any(word in kind for word in _CLIENT_ERROR_TYPES)


def detail(response: httpx.Response) -> str:
    """What the server said about an error (its ``error.message``, or its text)."""
    text = _text(response)
    try:
        data = json.loads(text)
    except ValueError:
        return "" if text.lstrip().startswith("<") else text.strip()  # no HTML pages
    if isinstance(data, dict):
        error = data.get("error")
        if error:
            return error_message(error, data)
        for said in (data.get("detail"), data.get("message")):
            if said:
                return str(said)
    return text.strip()


def content_filtered(response: httpx.Response) -> bool:
    """Azure OpenAI's HTTP 400 for a prompt its content filter stopped
    (``error.code == "content_filter"``)."""
    if response.status_code != 400:
        return False
    try:
        error = json.loads(_text(response)).get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("code") == "content_filter"


def out_of_quota(response: httpx.Response) -> bool:
    """OpenAI's 429 for an account without credit: waiting does not help."""
    return response.status_code == 429 and "insufficient_quota" in _text(response)


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (milliseconds, as OpenAI and others send),
    else ``Retry-After`` (seconds, or an HTTP date)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
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


__all__ = [
    "QUOTE_LIMIT",
    "RETRY_STATUSES",
    "OpenAIBackendError",
    "blames_request",
    "content_filtered",
    "detail",
    "error_message",
    "no_password",
    "out_of_quota",
    "reason",
    "request_id",
    "retry_after",
]
