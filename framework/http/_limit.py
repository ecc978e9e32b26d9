"""``[http] max_body`` for the apps plugins mount (``register_routes``).

The API's own paths read their bodies within ``max_body``; a mounted app reads its bodies
itself, and many (the a2a-sdk's, for one) read any size into memory. So the HTTP service
puts every mounted app behind ``BodyLimit``, and no plugin has to do it again: a request
whose ``Content-Length`` is over the limit is answered 413 before the app is called; a
chunked one is counted as the app reads it, and once what arrived passes the limit the
client is answered 413 and the app is told the client left (``http.disconnect``). The
body is passed on as it arrives, not gathered first, so an app may still stream a large
request within the limit.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framework.http._errors import error_response

logger = logging.getLogger("framework.http")


def too_large(limit: int) -> str:
    """The error of a body over ``limit`` bytes, as the API's own paths say it."""
    return f"the body is larger than {limit} bytes ([http] max_body)"


class BodyLimit:
    """ASGI: ``app``, with request bodies over ``limit`` bytes answered 413."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        declared = _content_length(scope)
        if declared is not None:
            # The server delivers no more than the declared length.
            if declared > limit:
                await error_response(413, too_large(limit))(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        received = 0
        refused = False
        started = False

        async def counted() -> Message:
            nonlocal received, refused, started
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        started = True
                        await error_response(413, too_large(limit))(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the client has its 413; what the app says after is dropped
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except Exception as exc:
            if not refused:
                raise
            # The app failed on the disconnect it was told of: the client has its answer.
            logger.debug("the app at %s stopped on a body over max_body: %r", scope["path"], exc)


def _content_length(scope: Scope) -> int | None:
    """The request's ``Content-Length`` as a number; None when it has none (chunked) or
    one that is not a number (the server refuses those)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
