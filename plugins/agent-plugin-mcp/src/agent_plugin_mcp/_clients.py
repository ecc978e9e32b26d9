"""The MCP servers of one runner, as a client: one connection per server, started when
first needed, restarted after it failed.

``McpClients`` is a plugin object registered on the runner (``runner_service``): its task
group lives as long as the runner, and each connection is a task in it that holds the
SDK's ``Client`` (a child process for ``command``, an HTTP session for ``url``) open until
the connection is dropped or the runner ends. Tool calls come from the LLM workers' own
tasks.

What can go wrong stays in the call that met it:

- a server that cannot be started or does not answer its handshake and ``tools/list``
  within ``startup_timeout``: ``ServerUnavailable``;
- a connection that closes (the child process crashed), a call that gets no answer within
  ``timeout``, or a transport that fails (garbage on the wire): the call fails with
  ``ServerUnavailable``, and the connection is dropped, so the next call starts the server
  again;
- an error the server answers (an unknown tool, bad arguments), or a tool result marked as
  an error: ``ToolCallFailed``, and the connection stays.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from agent_plugin_mcp._settings import ServerSettings
from framework import WorkerRunner, hookimpl

if TYPE_CHECKING:
    import mcp_types
    from mcp import Client

logger = logging.getLogger("agent_plugin_mcp")

SERVICE_SECONDS = 10.0
"""How long a worker that needs a server waits for the runner's MCP service to start."""

_RUNNERS: weakref.WeakKeyDictionary[WorkerRunner, McpClients] = weakref.WeakKeyDictionary()

_SERVER: contextvars.ContextVar[str] = contextvars.ContextVar("agent_plugin_mcp.server")
"""The server a connection's tasks (and the SDK's, started from them) talk to."""


class _GarbageLine(logging.Filter):
    """The SDK's stdio client logs a traceback for each line a server writes to its stdout
    that is not JSON-RPC (a banner, a stray ``print``): make it one warning naming the
    server and the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.getMessage().startswith("Failed to parse JSONRPC") and exc is not None:
            errors = getattr(exc, "errors", None)
            line = errors()[0].get("input") if callable(errors) and errors() else None
            shown = repr(line[:100]) if isinstance(line, str) else "(unreadable)"
            record.msg = (
                "the MCP server %r wrote a line that is not JSON-RPC to its stdout, passed "
                "over (an MCP server over stdio writes only MCP there; its logs go to "
                "stderr): %s"
            )
            record.args = (_SERVER.get("?"), shown)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("mcp.client.stdio").addFilter(_GarbageLine())


class ServerUnavailable(Exception):
    """The server could not be reached, or the connection failed; the next call starts it
    again."""


class ToolCallFailed(Exception):
    """The server answered the call with an error, or the tool reported one."""


def clients_of(runner: WorkerRunner) -> McpClients | None:
    """The MCP servers of ``runner``, if it has any."""
    return _RUNNERS.get(runner)


def ensure_clients(runner: WorkerRunner) -> McpClients:
    """The MCP servers of ``runner``, registered on it (``runner_service``) the first time."""
    clients = _RUNNERS.get(runner)
    if clients is None:
        clients = _RUNNERS[runner] = McpClients()
        runner.add_plugin(clients, name="mcp-clients")
    return clients


class McpClients:
    """The MCP servers of one runner and their connections."""

    def __init__(self) -> None:
        self.servers: dict[str, ServerSettings] = {}
        self._connections: dict[str, Connection] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self._serving: anyio.Event | None = None

    def add(self, servers: Mapping[str, ServerSettings]) -> None:
        """Add servers (a name already there is replaced)."""
        self.servers.update(servers)

    @hookimpl
    async def runner_service(self, runner: WorkerRunner) -> None:
        """Hold the connections' task group while the runner runs; when it ends, close
        every connection (child processes are stopped)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._serving_event().set()
            try:
                await anyio.sleep_forever()
            finally:
                self._tg = None
                self._connections.clear()
                tg.cancel_scope.cancel()

    def _serving_event(self) -> anyio.Event:
        if self._serving is None:
            self._serving = anyio.Event()
        return self._serving

    async def connection(self, name: str) -> Connection:
        """The connection to the server ``name`` (not connected yet, maybe).

        Raises:
            KeyError: no such server.
            ServerUnavailable: the runner's MCP service did not start.
        """
        settings = self.servers[name]
        if self._tg is None:
            with anyio.move_on_after(SERVICE_SECONDS):
                await self._serving_event().wait()
        tg = self._tg
        if tg is None:
            raise ServerUnavailable(
                f"the MCP server {name!r} cannot be used: the runner's MCP service is not "
                "running (the runner is starting or ending)"
            )
        connection = self._connections.get(name)
        if connection is None:
            connection = self._connections[name] = Connection(name, settings, tg)
        return connection


class Connection:
    """One server: connected on first use, dropped when it fails, connected again on the
    next use. ``listed`` keeps the last tool list it answered."""

    def __init__(self, name: str, settings: ServerSettings, tg: anyio.abc.TaskGroup) -> None:
        self.name = name
        self.settings = settings
        self._tg = tg
        self._lock = anyio.Lock()
        self._client: Client | None = None
        self._scope: anyio.CancelScope | None = None
        self.listed: list[mcp_types.Tool] | None = None
        """The tools the server listed when last connected (None before it ever was)."""

    async def tools(self) -> list[mcp_types.Tool]:
        """The server's tools, as listed when it connected (connecting now if needed)."""
        await self._connected()
        assert self.listed is not None
        return self.listed

    async def call(self, tool: str, arguments: dict[str, Any]) -> mcp_types.CallToolResult:
        """Call ``tool``; see the module docstring for what can go wrong.

        Raises:
            ServerUnavailable: the server cannot be reached or the connection failed.
            ToolCallFailed: the server refused the call, or the tool reported an error.
        """
        from mcp import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = await self._connected()
        what = f"the MCP server {self.name!r}"
        again = "it is started again on the next call"
        try:
            result = await client.call_tool(
                tool, arguments, read_timeout_seconds=self.settings.timeout
            )
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                self._drop(client)
                raise ServerUnavailable(
                    f"{what} did not answer the call of {tool!r} within "
                    f"{self.settings.timeout:g} s; {again}"
                ) from None
            if exc.code == CONNECTION_CLOSED:
                self._drop(client)
                raise ServerUnavailable(
                    f"{what} closed the connection during the call of {tool!r} (did it "
                    f"crash, or stop?); {again}"
                ) from None
            raise ToolCallFailed(f"{what} refused the call of {tool!r}: {exc.message}") from None
        except Exception as exc:
            self._drop(client)
            raise ServerUnavailable(
                f"the connection to {what} failed during the call of {tool!r}: "
                f"{type(exc).__name__}: {exc}; {again}"
            ) from None
        if result.is_error:
            raise ToolCallFailed(
                f"the tool {tool!r} of {what} reported an error: {text_of(result) or '(no text)'}"
            )
        return result

    async def _connected(self) -> Client:
        async with self._lock:
            client = self._client
            if client is None:
                try:
                    client = await self._tg.start(self._run)
                except Exception as exc:
                    raise ServerUnavailable(self._why(exc)) from None
            return client

    def _why(self, exc: BaseException) -> str:
        from mcp_types import CONNECTION_CLOSED

        what = f"the MCP server {self.name!r} ({self.settings.describe()})"
        if isinstance(exc, TimeoutError):
            return (
                f"{what} did not start and answer its handshake and tools/list within "
                f"{self.settings.startup_timeout:g} s (startup_timeout)"
            )
        if isinstance(exc, FileNotFoundError):
            return f"{what} cannot be started: no such program {exc.filename or ''!r}".rstrip()
        detail = _first(exc)
        if getattr(detail, "code", None) == CONNECTION_CLOSED:
            return (
                f"{what} closed the connection before answering its handshake (did it exit "
                "at once? a command's error output is on the runner's stderr)"
            )
        return f"{what} is unavailable: {type(detail).__name__}: {detail}"

    async def _run(
        self, *, task_status: anyio.abc.TaskStatus[Client] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Connect, list the tools, then hold the connection until it is dropped."""
        from mcp import Client

        started = False
        client: Client | None = None
        _SERVER.set(self.name)  # this task's own context: seen by the SDK's tasks
        try:
            # One scope for the connection's whole life: a deadline while it starts (the
            # SDK's client opens task groups that stay open, so no narrower timeout fits),
            # none once it has, and cancelled when the connection is dropped.
            with anyio.CancelScope() as scope:
                self._scope = scope
                scope.deadline = anyio.current_time() + self.settings.startup_timeout
                async with contextlib.AsyncExitStack() as stack:
                    transport = await self._transport(stack)
                    client = await stack.enter_async_context(Client(transport))
                    listed = await _list_all(client)
                    scope.deadline = math.inf
                    self.listed = listed
                    self._client = client
                    started = True
                    task_status.started(client)
                    await anyio.sleep_forever()
            if not started:
                raise TimeoutError("the server did not start in time")
        except Exception as exc:
            if not started:
                raise
            logger.warning(
                "the connection to the MCP server %r ended: %s: %s",
                self.name,
                type(exc).__name__,
                _first(exc),
            )
        finally:
            if self._client is client:
                self._client = None

    def _drop(self, client: Client) -> None:
        """Close the connection ``client`` belongs to (not a newer one)."""
        if self._client is client:
            self._client = None
            if self._scope is not None:
                self._scope.cancel()

    async def _transport(self, stack: contextlib.AsyncExitStack) -> Any:
        """What the SDK's ``Client`` connects through: the command's parameters, or the
        URL's streamable HTTP transport (with an HTTP client of ours for the headers)."""
        settings = self.settings
        if settings.command is not None:
            from mcp import StdioServerParameters

            program, *args = settings.command
            return StdioServerParameters(
                command=program, args=args, env=settings.env or None, cwd=settings.cwd
            )
        from mcp.client.streamable_http import streamable_http_client

        assert settings.url is not None
        if not settings.headers:
            return streamable_http_client(settings.url)
        import httpx2

        headers = {key: value.get_secret_value() for key, value in settings.headers.items()}
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
        )
        return streamable_http_client(settings.url, http_client=http)


async def _list_all(client: Client) -> list[mcp_types.Tool]:
    """Every page of ``tools/list``."""
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(100):  # a server that pages for ever cannot hang the start
        page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _first(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (the exception itself otherwise)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def text_of(result: mcp_types.CallToolResult) -> str:
    """A tool result's content as text: text blocks as they are, other blocks described."""
    parts = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)  # type: ignore[union-attr]
        elif kind in ("image", "audio"):
            parts.append(f"[{kind} {getattr(block, 'mime_type', '')}]")
        elif kind == "resource":
            resource = block.resource  # type: ignore[union-attr]
            parts.append(getattr(resource, "text", None) or f"[resource {resource.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource {getattr(block, 'uri', '')}]")
        else:
            parts.append(f"[{kind}]")
    return "\n".join(parts)
