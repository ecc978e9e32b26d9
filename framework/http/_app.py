"""The Starlette application: the ``/v1`` endpoints, ``/metrics``, ``/openapi.json``, the
dashboard at ``/`` with its files under ``/static``, and the apps plugins mount with
``register_routes`` (each behind ``[http] max_body``); token authentication and CORS around
all of it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from framework.http._api import Api
from framework.http._auth import TokenAuth
from framework.http._errors import ApiError, error_response
from framework.http._guard import BrowserGuard
from framework.http._limit import BodyLimit

STATIC = Path(__file__).parent / "static"
logger = logging.getLogger("framework.http")


async def _dashboard(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(
            404, f"no such path: {request.url.path} (GET /openapi.json lists them)"
        )
    if exc.status_code == 405:
        return error_response(
            405, f"{request.method} is not allowed on {request.url.path}", headers=exc.headers
        )
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


async def _crash(request: Request, exc: Exception) -> Response:
    logger.error(
        "%s %s failed",
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    return error_response(
        500, f"the runner failed to answer: {type(exc).__name__}: {exc} (its log has the traceback)"
    )


class PluginMount(Mount):
    """A plugin's app under its prefix. The prefix itself, without a trailing slash
    (``/a2a``, ``/.well-known/agent-card.json``), reaches the app as its root ``/`` instead
    of answering a redirect to ``prefix/``, which a client that POSTs, or that does not
    follow redirects, would not take."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        root, path = scope.get("root_path", ""), scope.get("path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["type"] in ("http", "websocket") and path == self.path:
            path = scope["path"] + "/"
            match, child = super().matches({**scope, "path": path})
            if match is Match.FULL:
                child["path"] = path
            return match, child
        return super().matches(scope)


def build_app(api: Api, mounts: dict[str, Any], public: frozenset[str] = frozenset()) -> Starlette:
    """The whole application; ``mounts`` maps a prefix to a plugin's ASGI app (its request
    bodies held to ``[http] max_body``), ``public`` lists the prefixes that need no token."""
    routes: list[BaseRoute] = [
        Route("/v1/health", api.health, methods=["GET"]),
        Route("/v1/workers", api.workers, methods=["GET"]),
        Route("/v1/plugins", api.plugins_info, methods=["GET"]),
        Route("/v1/jobs", api.submit_job, methods=["POST"]),
        Route("/v1/jobs/{job_id}", api.get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}", api.cancel_job, methods=["DELETE"]),
        Route("/v1/jobs/{job_id}/events", api.follow_job, methods=["GET"]),
        Route("/v1/job-groups", api.submit_group, methods=["POST"]),
        Route("/v1/events", api.events, methods=["GET"]),
        Route("/metrics", api.metrics_text, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        Route("/", _dashboard, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC, check_dir=False), name="static"),
    ]
    limit = api.settings.max_body
    routes.extend(
        PluginMount(prefix, app=BodyLimit(app, limit)) for prefix, app in sorted(mounts.items())
    )
    middleware = []
    if api.settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(api.settings.cors_origins),
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
                expose_headers=["Location"],
            )
        )
    middleware.append(
        Middleware(BrowserGuard, loopback=api.settings.loopback, origins=api.settings.cors_origins)
    )
    if api.settings.token is not None:
        middleware.append(Middleware(TokenAuth, token=api.settings.token, public=public))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _crash},
    )
