"""The ``framework mcp`` command's definition (click only: imported for ``framework
--help``); what it does is in ``_stdio``."""

from __future__ import annotations

from pathlib import Path

import click

from framework.cli import runner_options


@click.command("mcp")
@runner_options
@click.option(
    "--worker",
    "workers",
    multiple=True,
    metavar="NAME",
    help="Serve only this worker's jobs (repeatable; default: every worker).",
)
@click.pass_context
def mcp_command(
    ctx: click.Context, config_path: Path | None, bus_url: str | None, workers: tuple[str, ...]
) -> None:
    """Serve the workers' jobs as MCP tools over stdio (for Claude Code, Cursor...).

    Starts the runner 'framework run' would start (same plugins, configuration and
    workers) and speaks MCP on stdin and stdout until stdin closes: each job is a tool,
    WORKER or WORKER.JOB. Logs go to stderr. Choose plugins before the command's name:
    framework -p NAME mcp.
    """
    from agent_plugin_mcp._stdio import serve_stdio

    serve_stdio(ctx, config_path, bus_url, workers)
