"""The a2a-sdk server pieces, built for one plugin on its first request: the request
handler (which refuses a message for an unknown skill before any task exists), the task
store (the last ``history`` finished tasks), the JSON-RPC and HTTP+JSON routes, and the
agent card's answer."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.server.routes import (
    DefaultServerCallContextBuilder,
    create_jsonrpc_routes,
    create_rest_routes,
)
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCard, SendMessageRequest, Task, TaskState
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from agent_plugin_a2a._card import build_card
from agent_plugin_a2a._executor import JobExecutor, check
from agent_plugin_a2a._logs import quiet_client_errors

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from a2a.server.events import Event
    from a2a.types import Message

    from agent_plugin_a2a._plugin import A2APlugin

FINISHED = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)


def base_url(request: Request, configured: str | None) -> str:
    """The URL the card advertises the endpoints under: ``[plugins.a2a] url``, else the
    scheme and host the client used."""
    if configured:
        return configured
    host = request.headers.get("host") or "{}:{}".format(*(request.scope.get("server") or ("", "")))
    return f"{request.url.scheme}://{host}{request.scope.get('app_root_path', '')}"


class BoundedTaskStore(InMemoryTaskStore):
    """The in-memory task store, forgetting the oldest finished tasks past ``history``."""

    def __init__(self, history: int) -> None:
        super().__init__()
        self._history = history
        self._finished: OrderedDict[str, ServerCallContext] = OrderedDict()

    async def save(self, task: Task, context: ServerCallContext) -> None:
        """Save ``task``; once it has finished, forget the oldest beyond ``history``."""
        await super().save(task, context)
        if task.status.state in FINISHED and task.id not in self._finished:
            self._finished[task.id] = context
            while len(self._finished) > self._history:
                old, owner = self._finished.popitem(last=False)
                await self.delete(old, owner)


class _ContextBuilder(DefaultServerCallContextBuilder):
    """Adds the request's base URL to the call context (for the extended card)."""

    def __init__(self, plugin: A2APlugin) -> None:
        self._plugin = plugin

    def build(self, request: Request) -> ServerCallContext:
        context = super().build(request)
        context.state["base_url"] = base_url(request, self._plugin.settings.url)
        return context


class _Handler(DefaultRequestHandler):
    """a2a-sdk's handler, checking first that a message names a known skill and that its
    parts make a payload, so that a bad message is a JSON-RPC error and no task."""

    def __init__(self, plugin: A2APlugin, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._plugin = plugin

    def _check(self, params: SendMessageRequest) -> None:
        if params.HasField("message"):
            message: Message = params.message
            check(self._plugin.runner, message, json_format.MessageToDict(params.metadata))

    async def on_message_send(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> Message | Task:
        self._check(params)
        answer: Message | Task = await super().on_message_send(params, context)
        return answer

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        self._check(params)
        async for event in super().on_message_send_stream(params, context):
            yield event


class TasksApp:
    """The task endpoints under ``/a2a``: JSON-RPC at ``/a2a/jsonrpc``, HTTP+JSON under
    ``/a2a/rest``."""

    def __init__(self, plugin: A2APlugin) -> None:
        runner = plugin.runner
        settings = plugin.settings
        quiet_client_errors()
        card = build_card(runner, settings, "http://127.0.0.1", bearer=False, with_schemas=False)

        async def extended(card: AgentCard, context: ServerCallContext) -> AgentCard:
            return build_card(
                plugin.runner,
                plugin.settings,
                context.state.get("base_url", ""),
                bearer=plugin.bearer,
                with_schemas=True,
            )

        self.handler = _Handler(
            plugin,
            agent_executor=JobExecutor(plugin),
            task_store=BoundedTaskStore(settings.history),
            agent_card=card,
            extended_agent_card=card,
            extended_card_modifier=extended,
        )
        builder = _ContextBuilder(plugin)
        routes = [
            *create_jsonrpc_routes(
                self.handler, "/jsonrpc", context_builder=builder, enable_v0_3_compat=True
            ),
            *create_rest_routes(
                self.handler,
                context_builder=builder,
                path_prefix="/rest",
                enable_v0_3_compat=True,
            ),
        ]
        self.app = Starlette(routes=routes)

    async def aclose(self) -> None:
        """End the tasks still running (their jobs are cancelled)."""
        await self.handler.aclose()


async def card_response(plugin: A2APlugin, request: Request) -> Response:
    """``GET /.well-known/agent-card.json``: the public card. With a token, the skills'
    schemas are left to the extended card, for clients with the token."""
    if request.method not in ("GET", "HEAD"):
        return JSONResponse(
            {"error": f"{request.method} is not allowed on the agent card: GET it", "detail": None},
            status_code=405,
            headers={"Allow": "GET, HEAD"},
        )
    card = build_card(
        plugin.runner,
        plugin.settings,
        base_url(request, plugin.settings.url),
        bearer=plugin.bearer,
        with_schemas=not plugin.bearer,
    )
    return JSONResponse(agent_card_to_dict(card), headers={"Cache-Control": "no-cache"})
