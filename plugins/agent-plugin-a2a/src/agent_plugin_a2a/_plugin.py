"""The plugin object: its hookimpls mount the agent card and the task endpoints, attach
them to the runner, and add the configured remote agents as workers.

Importing this module is cheap (pluggy only): the a2a-sdk and the ASGI apps are built on
the first request, the remote agents' worker class when a remote is configured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from framework import hookimpl

if TYPE_CHECKING:
    from agent_plugin_a2a._server import TasksApp
    from agent_plugin_a2a._settings import A2ASettings
    from framework import WorkerRunner
    from framework.config import RunConfig
    from framework.registrars import RouteRegistrar

CARD_PATH = "/.well-known/agent-card.json"
PREFIX = "/a2a"
TOKEN_ENV = "FRAMEWORK_HTTP_TOKEN"


class NotServing(RuntimeError):
    """The plugin is not attached to a running runner."""


class A2APlugin:
    """A2A for one runner: the agent card at ``/.well-known/agent-card.json`` (public) and
    the task endpoints under ``/a2a`` in its HTTP API, and ``[plugins.a2a.remote.NAME]``
    agents as workers.

    The ``framework`` command uses the instance the entry point's module holds. In code:
    ``WorkerRunner(plugins=[A2APlugin({"name": "my-agent"}, bearer=True)])``.

    Args:
        settings: ``[plugins.a2a]`` as a mapping (or validated); ``configure_runner``
            replaces it with the run configuration's.
        bearer: whether the HTTP API needs a token, so the card asks for it;
            ``configure_runner`` reads it from ``[http] token`` / ``FRAMEWORK_HTTP_TOKEN``.

    The HTTP service holds the task endpoints' request bodies to ``[http] max_body``.
    """

    def __init__(
        self,
        settings: A2ASettings | Mapping[str, Any] | None = None,
        *,
        bearer: bool = False,
    ) -> None:
        self._settings_in = settings
        self._settings: A2ASettings | None = None
        self.bearer = bearer
        self._runner: WorkerRunner | None = None
        self._tasks: TasksApp | None = None

    @property
    def settings(self) -> A2ASettings:
        """The validated ``[plugins.a2a]``."""
        if self._settings is None:
            from agent_plugin_a2a._settings import A2ASettings

            given = self._settings_in
            self._settings = (
                given if isinstance(given, A2ASettings) else A2ASettings.from_config(given or {})
            )
        return self._settings

    @property
    def runner(self) -> WorkerRunner:
        """The runner the endpoints serve.

        Raises:
            NotServing: no runner is attached (it has not started, or it has ended).
        """
        if self._runner is None:
            raise NotServing("the runner is not serving A2A yet (it is starting or ending)")
        return self._runner

    def attach(self, runner: WorkerRunner) -> None:
        """Serve ``runner`` from now on."""
        if runner is not self._runner:
            self._runner = runner
            self._tasks = None

    # ----------------------------------------------------------------- hooks

    @hookimpl
    def register_routes(self, register: RouteRegistrar) -> None:
        """Mount the agent card (public: clients read it before they authenticate) and the
        task endpoints."""
        register(CARD_PATH, self.card_app, public=True)
        register(PREFIX, self.tasks_app)

    @hookimpl
    async def configure_runner(self, runner: WorkerRunner, config: RunConfig) -> None:
        """Read ``[plugins.a2a]``, serve ``runner``, and add the remote agents as workers.

        Raises:
            ConfigError: a bad ``[plugins.a2a]`` key, or a remote whose name is taken.
        """
        from agent_plugin_a2a._settings import A2ASettings, config_error

        self._settings = A2ASettings.from_config(config.plugins.get("a2a", {}))
        self.bearer = config.http.token is not None or bool(os.environ.get(TOKEN_ENV))
        self.attach(runner)
        if self._settings.remote:
            from agent_plugin_a2a._remote import RemoteAgent

            for name, remote in self._settings.remote.items():
                try:
                    await runner.add_worker(RemoteAgent(name, config=remote))
                except ValueError as exc:
                    raise config_error(f"remote.{name}", str(exc)) from None

    @hookimpl
    async def runner_service(self, runner: WorkerRunner) -> None:
        """Serve ``runner`` while it runs; when it ends, end the tasks still running."""
        import anyio

        self.attach(runner)
        try:
            await anyio.sleep_forever()
        finally:
            tasks, self._tasks = self._tasks, None
            if self._runner is runner:
                self._runner = None
            if tasks is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                    await tasks.aclose()

    # ----------------------------------------------------------------- ASGI apps

    async def card_app(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI: the agent card."""
        from starlette.requests import Request

        from agent_plugin_a2a._server import card_response

        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        try:
            response = await card_response(self, request)
        except NotServing as exc:
            response = _unavailable(str(exc))
        await response(scope, receive, send)

    async def tasks_app(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI: the task endpoints, built on the first request."""
        if scope["type"] != "http":
            return
        tasks = self._tasks
        if tasks is None:
            from agent_plugin_a2a._server import TasksApp

            try:
                tasks = self._tasks = TasksApp(self)
            except NotServing as exc:
                await _unavailable(str(exc))(scope, receive, send)
                return
        await tasks.app(scope, receive, send)


def _unavailable(reason: str) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": reason, "detail": None}, status_code=503)
