"""The tool source ``mcp``: ``tools = ["mcp:NAME"]`` gives an LLM worker the tools of the
MCP server ``[plugins.mcp.servers.NAME]``.

Each tool is offered under the name ``_naming.llm_names`` gives it (``NAME_TOOL``), with the
server's description and input schema. A call returns the tool's structured content when it
has some, else its text; a failure reaches the model as the tool's error (see
``_clients``), and the job goes on.

When the server cannot be reached as a job starts, the tools it listed last time are
offered all the same (their calls then say why they fail, and start it again); a server
that was never reached has no tools to offer, so the job runs without them, with a
warning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from agent_plugin_mcp._clients import ServerUnavailable, clients_of, text_of
from agent_plugin_mcp._naming import llm_names
from framework.llm import LLMWorker, ToolSpec

if TYPE_CHECKING:
    import mcp_types

    from agent_plugin_mcp._clients import Connection
    from framework.config import RunConfig

logger = logging.getLogger("agent_plugin_mcp")


class McpToolSource:
    """``framework.llm.ToolSource`` for the prefix ``mcp``."""

    def check(self, name: str, config: RunConfig) -> None:
        """``NAME`` is a server of ``[plugins.mcp.servers]``.

        Raises:
            ValueError: it is not, or ``[plugins.mcp]`` does not validate.
        """
        from agent_plugin_mcp._settings import McpSettings
        from framework.config import ConfigError

        try:
            settings = McpSettings.from_config(config.plugins.get("mcp", {}))
        except ConfigError as exc:
            raise ValueError(f"[plugins.mcp] is not valid: {exc.key}: {exc.reason}") from None
        if name not in settings.servers:
            raise ValueError(_not_configured(name, settings.servers))

    async def tools(self, name: str, worker: LLMWorker) -> list[ToolSpec]:
        """The tools of the server ``name``, for ``worker``.

        Raises:
            LookupError: no such server for this runner.
            ServerUnavailable: the server was never reached, and cannot be now.
        """
        clients = clients_of(worker.runner)
        servers = clients.servers if clients is not None else {}
        if clients is None or name not in servers:
            raise LookupError(_not_configured(name, servers))
        connection = await clients.connection(name)
        try:
            listed = await connection.tools()
        except ServerUnavailable as exc:
            if connection.listed is None:
                raise
            logger.warning("%s; offering the tools it listed before", exc)
            listed = connection.listed
        by_name = {tool.name: tool for tool in listed}
        return [
            _spec(offered, by_name[tool], connection)
            for offered, tool in llm_names(name, by_name).items()
        ]


def _spec(offered: str, tool: mcp_types.Tool, connection: Connection) -> ToolSpec:
    async def call(arguments: dict[str, Any]) -> Any:
        result = await connection.call(tool.name, arguments)
        if result.structured_content is not None:
            return result.structured_content
        return text_of(result)

    description = tool.description or f"The tool {tool.name!r} of the MCP server."
    return ToolSpec(
        name=offered,
        description=f"{description} (MCP server {connection.name!r})",
        parameters=dict(tool.input_schema),
        call=call,
    )


def _not_configured(name: str, servers: Any) -> str:
    known = ", ".join(sorted(servers)) or "none"
    return (
        f"no MCP server {name!r} is configured (configured: {known}); add "
        f'[plugins.mcp.servers.{name}] with command = ["program", "arg"...] or url = "..."'
    )
