"""Token authentication for every path but ``/v1/health``, mounted apps included (but for
the prefixes a plugin registered as public).

Clients send ``Authorization: Bearer TOKEN``. A browser opens ``/?token=TOKEN`` once: the
answer sets an HttpOnly, SameSite=Strict cookie and sends it to ``/`` without the token in
the address bar; the dashboard's requests then carry the cookie. The cookie holds a value
derived from the token (an HMAC), not the token itself, so the browser's store never has
it. Everything is compared in constant time. A browser asking for a page without the
cookie gets a short HTML page saying how to sign in.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "framework_token"
OPEN_PATHS = frozenset({"/v1/health"})


class TokenAuth:
    """ASGI middleware: answer 401 unless the request carries the token.

    ``public`` prefixes (a plugin's ``register(prefix, app, public=True)``) and the paths
    under them need no token.
    """

    def __init__(self, app: ASGIApp, token: str, public: frozenset[str] = frozenset()) -> None:
        self.app = app
        self._public = tuple(public)
        self._token = token.encode()
        self._session = hmac.new(self._token, b"framework dashboard cookie", "sha256").hexdigest()

    def _open(self, path: str) -> bool:
        return path in OPEN_PATHS or any(
            path == prefix or path.startswith(prefix + "/") for prefix in self._public
        )

    def _valid(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self._token)

    def _valid_cookie(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            (presented or "").encode(), self._session.encode()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._open(scope["path"]):
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
        if scheme.lower() == "bearer":
            allowed = self._valid(credentials.strip())
        else:
            allowed = self._valid_cookie(_cookie(headers.get("cookie", "")))
        if allowed:
            await self.app(scope, receive, send)
            return
        wants_page = "text/html" in headers.get("accept", "")
        await _unauthorized(scope["path"], bool(authorization), wants_page)(scope, receive, send)

    def _login(self, token: str) -> Response:
        if not self._valid(token):
            return _unauthorized("/", True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, self._session, httponly=True, samesite="strict", path="/")
        return response


def _cookie(header: str) -> str | None:
    for part in header.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


_SIGN_IN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in: agent-plugin-framework</title>
</head><body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto">
<h1>This runner needs a token</h1>
<p>Open this page once as <code>/?token=TOKEN</code>, with the runner's token (its
<code>[http] token</code> or <code>FRAMEWORK_HTTP_TOKEN</code>). The browser then keeps a
cookie for it, and the address bar drops the token.</p>
</body></html>
"""


def _unauthorized(path: str, presented: bool, wants_page: bool = False) -> Response:
    if wants_page and path == "/":
        return HTMLResponse(_SIGN_IN, status_code=401, headers={"WWW-Authenticate": "Bearer"})
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
