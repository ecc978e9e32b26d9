"""Token authentication for every path but ``/v1/health``, mounted apps included.

Clients send ``Authorization: Bearer TOKEN``. A browser opens ``/?token=TOKEN`` once: the
answer sets an HttpOnly, SameSite=Strict cookie and sends it to ``/`` without the token in
the address bar; the dashboard's requests then carry the cookie. Tokens are compared in
constant time.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "framework_token"
OPEN_PATHS = frozenset({"/v1/health"})


class TokenAuth:
    """ASGI middleware: answer 401 unless the request carries the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _valid(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["path"] == "/" and scope.get("query_string"):
            query = parse_qs(scope["query_string"].decode("latin-1"))
            if "token" in query:
                await self._login(query["token"][0])(scope, receive, send)
                return
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        presented = credentials.strip() if scheme.lower() == "bearer" else None
        if presented is None:
            presented = _cookie(headers.get("cookie", ""))
        if self._valid(presented):
            await self.app(scope, receive, send)
            return
        await _unauthorized(scope["path"], bool(authorization))(scope, receive, send)

    def _login(self, token: str) -> Response:
        if not self._valid(token):
            return _unauthorized("/", True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


def _unauthorized(path: str, presented: bool) -> Response:
    reason = "the token is wrong" if presented else "this runner needs a token"
    fix = (
        "open /?token=TOKEN once in the browser"
        if path == "/"
        else "send Authorization: Bearer TOKEN (the runner's [http] token or FRAMEWORK_HTTP_TOKEN)"
    )
    return JSONResponse(
        {"error": f"{reason}: {fix}", "detail": None},
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )
