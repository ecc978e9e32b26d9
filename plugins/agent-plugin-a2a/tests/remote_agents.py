"""A2A agents for ``RemoteAgent`` to talk to, written with the a2a-sdk server and served by
uvicorn in a thread on a free port of 127.0.0.1:

- ``/good``: an agent whose answer depends on the message's text: ``stream`` (a status
  message, then text and data artifacts in chunks), ``fail``, ``input`` (asks for input),
  ``reply`` (a message, no task), ``hang`` (works until cancelled), anything else (echoes
  the text and data it got).
- ``/plain``: the same agent, saying it does not stream.
- ``/garbage-card``: a card that is not JSON.
- ``/garbage-rpc``: a valid card whose JSON-RPC endpoint answers JSON that is not JSON-RPC.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Message,
    Part,
    Role,
    Task,
    TaskState,
    TaskStatus,
)
from agent_plugin_a2a._parts import data_part, data_values, texts
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class Seen:
    """What the agents were sent: messages (text, data, metadata) and cancelled task ids."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


class TestAgent(AgentExecutor):
    """The ``/good`` agent."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None and context.task_id and context.context_id
        text = "\n".join(texts(message.parts))
        self.seen.messages.append(
            {
                "text": text,
                "data": data_values(message.parts),
                "metadata": MessageToDict(message.metadata),
            }
        )
        self.seen.headers.append(dict(context.call_context.state.get("headers", {})))
        if text == "reply":
            await event_queue.enqueue_event(
                Message(
                    role=Role.ROLE_AGENT,
                    message_id="m1",
                    context_id=context.context_id,
                    parts=[Part(text="just a message")],
                )
            )
            return
        await event_queue.enqueue_event(
            Task(
                id=context.task_id,
                context_id=context.context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=[message],
            )
        )
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        if text == "fail":
            await updater.failed(updater.new_agent_message([Part(text="no can do")]))
        elif text == "input":
            await updater.requires_input(updater.new_agent_message([Part(text="which one?")]))
        elif text == "hang":
            await updater.start_work()
            await anyio.sleep(3600)
        elif text == "stream":
            await updater.start_work(
                updater.new_agent_message([Part(text="thinking"), data_part({"step": 1})])
            )
            await updater.add_artifact([Part(text="Hello")], artifact_id="words", name="words")
            await updater.add_artifact([Part(text=" world")], artifact_id="words", append=True)
            await updater.add_artifact([data_part({"k": 1})], artifact_id="facts", name="facts")
            await updater.complete()
        else:
            parts = [Part(text=f"echo: {text}")]
            parts += [data_part(value) for value in data_values(message.parts)]
            await updater.add_artifact(parts, name="echo")
            await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.seen.cancelled.append(context.task_id or "")
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel()


def good_agent(base: str, seen: Seen, path: str = "/good", streaming: bool = True) -> list[Any]:
    card = AgentCard(
        name="good",
        description="A test agent that echoes.",
        version="1.0",
        supported_interfaces=[
            AgentInterface(
                url=base + path + "/rpc", protocol_binding="JSONRPC", protocol_version="1.0"
            )
        ],
        capabilities=AgentCapabilities(streaming=streaming),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="echo", description="Echo the text.", tags=["t"])],
    )
    handler = DefaultRequestHandler(
        agent_executor=TestAgent(seen), task_store=InMemoryTaskStore(), agent_card=card
    )
    return [
        *create_agent_card_routes(card, card_url=path + "/.well-known/agent-card.json"),
        *create_jsonrpc_routes(handler, path + "/rpc"),
    ]


def garbage(base: str) -> list[Any]:
    async def not_json(request: Request) -> Response:
        return PlainTextResponse("<html>this is no agent card</html>")

    async def card(request: Request) -> Response:
        return JSONResponse(
            {
                "name": "garbage",
                "description": "answers garbage",
                "version": "1",
                "supportedInterfaces": [
                    {
                        "url": base + "/garbage-rpc/rpc",
                        "protocolBinding": "JSONRPC",
                        "protocolVersion": "1.0",
                    }
                ],
                "capabilities": {"streaming": False},
                "defaultInputModes": ["text/plain"],
                "defaultOutputModes": ["text/plain"],
                "skills": [],
            }
        )

    async def rpc(request: Request) -> Response:
        return JSONResponse({"hello": "world"})

    return [
        Route("/garbage-card/.well-known/agent-card.json", not_json),
        Route("/garbage-rpc/.well-known/agent-card.json", card),
        Route("/garbage-rpc/rpc", rpc, methods=["POST"]),
    ]


@dataclass
class Agents:
    base: str
    seen: Seen

    @property
    def good(self) -> str:
        return self.base + "/good"


@contextmanager
def serving_agents() -> Iterator[Agents]:
    """The agents on a free port, served from a thread until the block ends."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    seen = Seen()
    routes = [
        *good_agent(base, seen),
        *good_agent(base, seen, "/plain", streaming=False),
        *garbage(base),
    ]
    app = Starlette(routes=routes)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the test agents did not start"
        time.sleep(0.01)
    try:
        yield Agents(base, seen)
    finally:
        server.should_exit = True
        server.force_exit = True
        thread.join(5)
        sock.close()
