"""``/mcp`` in the HTTP API: the runner's MCP server over streamable HTTP.

One ``McpRoute`` is registered per process (``register_routes``); the HTTP service runs its
ASGI lifespan for each runner it serves, with the runner in the lifespan's state. The
lifespan opens a task group and puts a ``_Serving`` for that runner in the state, which
every request to ``/mcp`` then finds in ``scope["state"]``. The MCP SDK is imported, and its
session manager started in that task group, on the first request: a runner no MCP client
talks to pays nothing for it. The session manager runs until the runner ends.

The SDK's own DNS-rebinding checks are off: the HTTP API's guard already refuses foreign
hosts and origins, and its token check comes before this app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from framework import WorkerRunner

RUNNER_KEY = "framework.runner"
"""Where the HTTP service puts the runner in a mounted app's lifespan state."""

STATE_KEY = "agent_plugin_mcp.serving"
"""Where the lifespan puts this runner's ``_Serving`` in the state."""


class McpRoute:
    """The ASGI app mounted at ``/mcp``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        serving = (scope.get("state") or {}).get(STATE_KEY)
        if not isinstance(serving, _Serving):
            from starlette.responses import JSONResponse

            response = JSONResponse(
                {
                    "error": "MCP is not served here: the runner is starting or ending (this "
                    "app serves within the HTTP API of framework run)",
                    "detail": None,
                },
                status_code=503,
            )
            await response(scope, receive, send)
            return
        await serving(scope, receive, send)


async def _lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol: serve the runner in the state from startup to
    shutdown."""
    await receive()  # lifespan.startup
    state = scope.get("state")
    runner = state.get(RUNNER_KEY) if isinstance(state, dict) else None
    if runner is None or state is None:
        await send(
            {
                "type": "lifespan.startup.failed",
                "message": f"no runner in the lifespan state ({RUNNER_KEY!r}): mount this app "
                "in the HTTP API of framework run",
            }
        )
        return
    async with anyio.create_task_group() as tg:
        state[STATE_KEY] = _Serving(runner, tg)
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        tg.cancel_scope.cancel()
    await send({"type": "lifespan.shutdown.complete"})


class _Serving:
    """MCP for one runner: the SDK's session manager, started on the first request."""

    def __init__(self, runner: WorkerRunner, tg: anyio.abc.TaskGroup) -> None:
        self.runner = runner
        self._tg = tg
        self._app: ASGIApp | None = None
        self._lock = anyio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app or await self._start()
        await app(scope, receive, send)

    async def _start(self) -> ASGIApp:
        async with self._lock:
            if self._app is None:
                from mcp.server.streamable_http_manager import (
                    StreamableHTTPASGIApp,
                    StreamableHTTPSessionManager,
                )

                from agent_plugin_mcp._server import build_server

                manager = StreamableHTTPSessionManager(app=build_server(self.runner))
                await self._tg.start(_run_manager, manager)
                self._app = StreamableHTTPASGIApp(manager)
            return self._app


async def _run_manager(
    manager: Any, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    async with manager.run():
        task_status.started()
        await anyio.sleep_forever()
