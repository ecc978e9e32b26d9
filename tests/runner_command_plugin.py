"""A plugin module whose command ``ask`` serves the runner ``framework run`` would start
through ``framework.cli.run_with_runner``: it sends one job to the worker it is given and
prints the response on stdout, or (``--wait``) waits until the runner ends. Loaded with
``-p runner_command_plugin`` beside ``-p sample_plugin``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import click

from framework import WorkerRunner, hookimpl
from framework.cli import run_with_runner


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("ask")
    @click.argument("worker")
    @click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False))
    @click.option("--wait", is_flag=True, help="Wait for a signal instead of sending a job.")
    @click.option("--code", type=int, help="Return this exit code from main.")
    @click.pass_context
    def ask(
        ctx: click.Context, worker: str, config_path: Path | None, wait: bool, code: int | None
    ) -> None:
        async def main(runner: WorkerRunner) -> int | None:
            if wait:
                print("waiting", file=sys.stderr, flush=True)
                try:
                    await anyio.sleep_forever()
                finally:
                    print("main cancelled", file=sys.stderr, flush=True)
            response = None
            if worker in runner.workers:
                async with runner.job(worker, payload={"who": "you"}, timeout=10) as job:
                    pass
                response = job.response
            print(json.dumps({"workers": sorted(runner.workers), "response": response}))
            return code

        run_with_runner(ctx, main, config_path=config_path)
