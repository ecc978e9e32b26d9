"""``framework jobs``: the durable jobs the bus keeps (``list``), and ``retry`` / ``drop``.

It works on the bus ``framework run`` would use (``--bus URL``, ``--config FILE``, or the
configuration file, with its bus secret), through the bus's ``DurableStore``. Exit codes:
0 done; 1 no such job, or one that cannot be retried; 2 a bad configuration or option, a
bus that keeps no durable jobs (the in-process bus), or a bus that cannot be reached.

Importing this module imports click only; the bus and its plugin load when a command runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from framework._cli_options import runner_options

if TYPE_CHECKING:
    from framework.bus.network.durable import DurableJob, DurableStore

T = TypeVar("T")

EXIT_NO_JOB = 1
EXIT_CONFIG = 2


def _bus_options(func: Callable[..., None]) -> Callable[..., None]:
    func = click.option(
        "-p",
        "extra_plugin_options",
        multiple=True,
        metavar="NAME",
        help="Load plugin NAME, or block it with no:NAME (as on the group).",
    )(func)
    return runner_options(func)


@click.group("jobs")
def jobs_group() -> None:
    """Durable jobs the bus keeps: list them, retry a dead one, drop one.

    A durable job (@job(durable=True)) is kept by a network bus until it is answered; one
    whose every attempt was lost with its runner is dead, on the dead-letter list.
    """


@jobs_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per job.")
@_bus_options
@click.pass_context
def list_command(
    ctx: click.Context,
    as_json: bool,
    bus_url: str | None,
    config_path: Path | None,
    extra_plugin_options: tuple[str, ...],
) -> None:
    """List the durable jobs pending or dead on the bus."""
    store = _store(ctx, bus_url, config_path, extra_plugin_options)
    found = _call(ctx, store.durable_jobs)
    if as_json:
        import json  # only here: `framework --help` imports this module

        click.echo(json.dumps([job.to_dict() for job in found], indent=2))
        return
    if not found:
        click.echo("no durable jobs pending or dead")
        return
    rows = [("JOB ID", "WORKER", "NAME", "STATE", "ATTEMPTS", "ERROR")]
    rows += [(j.job_id, j.worker, j.name or "-", j.state, str(j.attempts), j.error) for j in found]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[5]]).rstrip())


@jobs_group.command("retry")
@click.argument("job_id", metavar="ID")
@_bus_options
@click.pass_context
def retry_command(
    ctx: click.Context,
    job_id: str,
    bus_url: str | None,
    config_path: Path | None,
    extra_plugin_options: tuple[str, ...],
) -> None:
    """Queue dead job ID again for its worker (its attempts start over)."""
    store = _store(ctx, bus_url, config_path, extra_plugin_options)
    job = _act(ctx, store.retry_durable_job, job_id)
    click.echo(f"job {job.job_id} queued again for worker {job.worker!r}")


@jobs_group.command("drop")
@click.argument("job_id", metavar="ID")
@_bus_options
@click.pass_context
def drop_command(
    ctx: click.Context,
    job_id: str,
    bus_url: str | None,
    config_path: Path | None,
    extra_plugin_options: tuple[str, ...],
) -> None:
    """Remove durable job ID, pending or dead (a requester still waiting gets ERROR)."""
    store = _store(ctx, bus_url, config_path, extra_plugin_options)
    job = _act(ctx, store.drop_durable_job, job_id)
    click.echo(f"job {job.job_id} ({job.state}, worker {job.worker!r}) dropped")


def _store(
    ctx: click.Context,
    bus_url: str | None,
    config_path: Path | None,
    extra_plugin_options: tuple[str, ...],
) -> DurableStore:
    """The bus ``framework run`` would use, as a ``DurableStore``; exits 2 when it is none."""
    from framework._run_command import make_bus
    from framework.bus.network.durable import DurableStore
    from framework.cli import _host, _load
    from framework.config import ConfigError, bus_secrets, load_config
    from framework.urls import redact_url

    host = _host(ctx, extra_plugin_options)
    _load(host, registrations=True)
    try:
        config, source = load_config(config_path)
        if bus_url is not None:
            config.bus = bus_url
            source = "--bus"
        bus = make_bus(config.bus, host, source, bus_secrets(config))
    except ConfigError as exc:
        click.echo(f"framework: configuration error: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    if not isinstance(bus, DurableStore):
        click.echo(
            f"framework: the bus {redact_url(config.bus)} keeps no durable jobs (only a network "
            "bus such as redis:// does); give the bus your runners use with --bus URL or "
            "--config FILE",
            err=True,
        )
        ctx.exit(EXIT_CONFIG)
    return bus


def _call(ctx: click.Context, func: Callable[[], Awaitable[T]]) -> T:
    import anyio

    async def main() -> T:
        return await func()

    try:
        return anyio.run(main)
    except ConnectionError as exc:
        click.echo(f"framework: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)


def _act(
    ctx: click.Context, func: Callable[[str], Awaitable[DurableJob]], job_id: str
) -> DurableJob:
    from framework.bus.network.durable import DurableJobError

    async def call() -> DurableJob:
        return await func(job_id)

    try:
        return _call(ctx, call)
    except DurableJobError as exc:
        click.echo(f"framework: {exc}", err=True)
        ctx.exit(EXIT_NO_JOB)
