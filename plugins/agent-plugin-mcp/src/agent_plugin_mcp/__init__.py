"""agent-plugin-mcp: MCP both ways for agent-plugin-framework.

- ``framework mcp`` serves the runner's jobs as MCP tools over stdio, and the HTTP API that
  ``framework run`` serves has the same server at ``/mcp`` (streamable HTTP).
- ``[plugins.mcp.servers.NAME]`` makes the tools of an MCP server available to the LLM
  workers whose ``tools`` setting lists ``"mcp:NAME"``.

This is the module the entry point names: every ``framework`` command imports it, so it
imports pluggy and click only; the MCP SDK is imported when a command, a request or a
worker needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework import hookimpl

if TYPE_CHECKING:
    from collections.abc import Mapping

    import click

    from framework import WorkerRunner
    from framework.config import RunConfig
    from framework.registrars import RouteRegistrar, ToolSourceRegistrar

__all__ = ["PREFIX", "add_servers"]

PREFIX = "/mcp"
"""Where the HTTP API serves MCP."""


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``framework mcp``."""
    from agent_plugin_mcp._command import mcp_command

    cli.add_command(mcp_command)


@hookimpl
def register_routes(register: RouteRegistrar) -> None:
    """MCP over streamable HTTP at ``/mcp``, behind the API's token."""
    from agent_plugin_mcp._route import McpRoute

    register(PREFIX, McpRoute())


@hookimpl
def register_tool_sources(register: ToolSourceRegistrar) -> None:
    """``mcp:NAME``: the tools of the MCP server ``[plugins.mcp.servers.NAME]``."""
    register("mcp", "agent_plugin_mcp._source:McpToolSource")


@hookimpl
def configure_runner(runner: WorkerRunner, config: RunConfig) -> None:
    """Read ``[plugins.mcp]`` and give the runner its MCP servers (a bad table is a
    configuration error naming the key)."""
    table = config.plugins.get("mcp")
    if table:
        from agent_plugin_mcp._settings import McpSettings

        add_servers(runner, McpSettings.from_config(table).servers)


def add_servers(runner: WorkerRunner, servers: Mapping[str, Any]) -> None:
    """Make the MCP servers ``servers`` (name -> a ``[plugins.mcp.servers.NAME]`` table, as
    a dict or validated) available to ``runner``'s LLM workers as ``mcp:NAME``; for
    runners built in code (``framework run`` reads them from the configuration). Call it
    before the runner starts.

    Raises:
        framework.config.ConfigError: a server's settings do not validate.
        RuntimeError: the runner has started already.
    """
    from agent_plugin_mcp._clients import ensure_clients
    from agent_plugin_mcp._settings import McpSettings

    if runner.run_id:
        raise RuntimeError(
            f"runner {runner.name!r} has started: add its MCP servers before it starts "
            "(before 'async with runner')"
        )
    settings = McpSettings.from_config({"servers": dict(servers)})
    ensure_clients(runner).add(settings.servers)
