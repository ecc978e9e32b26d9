"""The HTTP API's ``[http] max_body`` for the task endpoints.

The HTTP API refuses a body over ``max_body`` on its own paths; a mounted app reads its
bodies itself, and the a2a-sdk reads any size into memory. So the task endpoints answer a
larger body 413 before the SDK sees it, as the API's own paths do: by its
``Content-Length``, or, for a chunked body, once what has arrived passes the limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _too_large(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    from starlette.responses import JSONResponse

    reason = f"the body is larger than {limit} bytes ([http] max_body)"
    await JSONResponse({"error": reason, "detail": None}, status_code=413)(scope, receive, send)


async def limit_body(app: ASGIApp, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve ``app``, refusing a request body over ``limit`` bytes with 413."""
    declared = dict(scope.get("headers") or []).get(b"content-length")
    if declared is not None:
        # The server delivers no more than the declared length.
        if not declared.isdigit() or int(declared) <= limit:
            await app(scope, receive, send)
        else:
            await _too_large(limit, scope, receive, send)
        return
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client left
            return
        body += message.get("body", b"")
        more = bool(message.get("more_body", False))
        if len(body) > limit:
            await _too_large(limit, scope, receive, send)
            return
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": bytes(body), "more_body": False}

    await app(scope, replay, send)
