"""``framework mcp``: the runner's jobs as MCP tools over stdin and stdout.

stdout carries MCP and nothing else: before anything starts, the process's stdin and
stdout are moved to descriptors of their own for the protocol, and descriptors 0 and 1
are pointed at the null device and at stderr. Whatever a worker, a plugin or a child
process prints (``print()``, a library's banner) lands on stderr; nothing can read the
client's requests from under the server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import click

from framework import WorkerRunner
from framework.cli import run_with_runner

EXIT_USAGE = 2

READY_SECONDS = 10.0
"""How long ``--worker NAME`` waits for a worker of another runner (network buses)."""


def _take_stdio() -> tuple[IO[str], IO[str]]:
    """The protocol's own stdin and stdout; descriptors 0 and 1 now read nothing and
    write to stderr."""
    sys.stdout.flush()
    wire_in = os.dup(0)
    wire_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    reader = os.fdopen(wire_in, "r", encoding="utf-8", errors="replace", newline="\n")
    writer = os.fdopen(wire_out, "w", encoding="utf-8", newline="\n")
    return reader, writer


def serve_stdio(
    ctx: click.Context, config_path: Path | None, bus_url: str | None, workers: Sequence[str]
) -> None:
    """Run the runner and serve MCP on stdio until stdin closes (or a signal)."""
    reader, writer = _take_stdio()

    async def main(runner: WorkerRunner) -> int:
        import anyio
        from mcp.server.stdio import stdio_server

        from agent_plugin_mcp._server import build_server

        missing = await missing_workers(runner, workers)
        if missing:
            click.echo(f"framework: mcp: {missing}", err=True)
            return EXIT_USAGE
        server = build_server(runner, workers)
        async with stdio_server(stdin=anyio.wrap_file(reader), stdout=anyio.wrap_file(writer)) as (
            read_stream,
            write_stream,
        ):
            await server.run(read_stream, write_stream, server.create_initialization_options())
        return 0

    run_with_runner(ctx, main, config_path=config_path, bus_url=bus_url)


async def missing_workers(runner: WorkerRunner, workers: Sequence[str]) -> str | None:
    """What is wrong with ``--worker``: names no worker knows (on a network bus, after
    waiting ``READY_SECONDS`` for them); None when every name is a worker."""
    import anyio

    from framework.bus.local import LocalBus

    registry = runner.registry
    if not isinstance(runner.bus, LocalBus):
        with anyio.move_on_after(READY_SECONDS):
            for name in workers:
                await registry.wait_ready(name)
    known = {*registry.local_workers, *registry.remote_workers}
    unknown = [name for name in workers if name not in known]
    if not unknown:
        return None
    return (
        f"--worker {unknown[0]}: no such worker on runner {runner.name!r} "
        f"(workers: {', '.join(sorted(known)) or 'none'})"
    )
