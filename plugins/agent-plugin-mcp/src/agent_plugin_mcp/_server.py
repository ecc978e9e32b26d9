"""The MCP server of one runner (the SDK's low-level ``Server``): ``tools/list`` and
``tools/call`` over the runner's jobs, whatever the transport (stdio for ``framework mcp``,
streamable HTTP at ``/mcp``).

An unknown tool is a protocol error (``INVALID_PARAMS``, naming the tool and where the list
is); everything that happens to a job is a tool result (see ``_jobs``).
"""

from __future__ import annotations

from collections.abc import Collection
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import mcp_types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from agent_plugin_mcp._jobs import call_job, job_tools
from framework import WorkerRunner

INSTRUCTIONS = (
    "Each tool sends a job to a worker of an agent-plugin-framework runner: the tool WORKER "
    "sends its default job, WORKER.JOB its job JOB. The arguments are the job's payload; "
    "progress notifications carry the job's updates, the result its streamed output and its "
    "response."
)


def _version() -> str:
    try:
        return version("agent-plugin-mcp")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "0"


def build_server(runner: WorkerRunner, only: Collection[str] = ()) -> Server[Any]:
    """The MCP server serving ``runner``'s jobs (the workers in ``only``, when given)."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        tools = job_tools(runner, only)
        return mcp_types.ListToolsResult(tools=[tools[name].to_mcp() for name in sorted(tools)])

    async def call_tool(
        ctx: ServerRequestContext[Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        tool = job_tools(runner, only).get(params.name)
        if tool is None:
            raise MCPError(
                code=mcp_types.INVALID_PARAMS,
                message=f"Unknown tool: {params.name!r} is not a tool of runner "
                f"{runner.name!r} (tools/list lists them)",
            )

        async def progress(number: float, message: str) -> None:
            await ctx.session.report_progress(number, None, message)

        return await call_job(runner, tool, dict(params.arguments or {}), progress)

    return Server(
        "agent-plugin-framework",
        version=_version(),
        title=f"runner {runner.name}",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )
