"""Protection against web pages the user happens to visit.

A browser lets any page send a "simple" request to ``127.0.0.1`` (a form-like POST), and a
page on a domain that an attacker points at ``127.0.0.1`` (DNS rebinding) can even read the
answers. So:

- a request whose ``Host`` is not this machine's own name or address is refused when the
  API listens on loopback (a rebinding page sends its own domain);
- a request that changes something (any method but GET, HEAD and OPTIONS) and carries an
  ``Origin`` other than the API's own or one listed in ``[http] cors_origins`` is refused:
  browsers always send ``Origin`` with such requests, programs (curl, httpx, ``--url``)
  usually send none.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from framework.http._settings import is_loopback

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host: str) -> str:
    """The name or address in a ``Host`` header, without its port (and brackets)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class BrowserGuard:
    """ASGI middleware: refuse rebinding hosts and foreign origins (403)."""

    def __init__(self, app: ASGIApp, loopback: bool, origins: tuple[str, ...]) -> None:
        self.app = app
        self.loopback = loopback
        self.origins = frozenset(origin.rstrip("/") for origin in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if self.loopback and host and not is_loopback(host_name(host)):
            await _refuse(
                f"the Host header {host[:100]!r} is not this machine: the API listens on "
                "loopback and answers only requests addressed to it (127.0.0.1, localhost, "
                "[::1]), so that a web page cannot reach it through its own domain"
            )(scope, receive, send)
            return
        origin = headers.get("origin")
        if (
            origin is not None
            and scope["method"] not in SAFE_METHODS
            and origin.rstrip("/") not in self.origins
            and origin != f"{scope.get('scheme', 'http')}://{host}"
        ):
            await _refuse(
                f"a page from {origin[:100]!r} may not send requests to this runner; list "
                "that origin in [http] cors_origins if it should"
            )(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _refuse(error: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": None}, status_code=403)
