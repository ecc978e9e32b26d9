"""What ``framework run`` does once the command line is parsed: build the bus and the
runner, let plugins configure it, then serve until a signal, or submit one job and print
what comes back."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio

from framework._hooks import hook_impls
from framework.bus.base import Bus
from framework.config import ConfigError, RunConfig
from framework.jobs import JobError, JobEvent
from framework.plugins import PluginHost
from framework.runner import WorkerRunner
from framework.types import JobStatus
from framework.worker import BaseWorker

logger = logging.getLogger("framework.run")

READY_TIMEOUT = 10.0
"""Seconds ``--job`` waits for its worker to appear on a network bus without ``--timeout``."""


class RunFailed(Exception):
    """``framework run`` cannot do what was asked; the message says what and what to do."""


@dataclass(frozen=True)
class JobRequest:
    """``--job WORKER [--name JOB] [--payload JSON] [--timeout S] [--json]``."""

    worker: str
    name: str | None
    payload: dict[str, Any]
    timeout: float | None
    as_json: bool


def run_or_submit(
    host: PluginHost,
    config: RunConfig,
    source: str,
    workers: list[BaseWorker],
    request: JobRequest | None,
) -> int:
    """Run the runner (or submit ``request``) and return the process exit code."""
    logging.basicConfig(level=logging.WARNING, format="framework: %(name)s: %(message)s")
    result: int = anyio.run(_main, host, config, source, workers, request)
    return result


def make_bus(url: str, host: PluginHost, source: str) -> Bus:
    """The bus for ``url``, from the factory registered for its scheme."""
    scheme = urlsplit(url).scheme
    factory = host.buses.get(scheme) if scheme else None
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(host.buses.entries)) or "none"
        raise ConfigError(
            source,
            "bus",
            f"no bus is registered for {url!r} (registered: {known}); install the plugin "
            "that provides it (e.g. agent-plugin-redis for redis://)",
        )
    bus: Bus = factory(url)
    return bus


async def _main(
    host: PluginHost,
    config: RunConfig,
    source: str,
    workers: list[BaseWorker],
    request: JobRequest | None,
) -> int:
    bus = make_bus(config.bus, host, source)
    runner = WorkerRunner(
        config.name, bus=bus, plugin_manager=host.pm, grace_period=config.grace_period
    )
    for worker in workers:
        await runner.add_worker(worker)
    await _configure(runner, config)
    if request is None:
        async with anyio.create_task_group() as tg:
            await tg.start(runner.run)  # returns once the workers are ready
            names = ", ".join(runner.workers) or "no workers"
            print(
                f"framework: runner {runner.name!r} on {config.bus} with {names}; "
                "Ctrl-C or SIGTERM to stop",
                file=sys.stderr,
                flush=True,
            )
        print(f"framework: runner {runner.name!r} ended", file=sys.stderr, flush=True)
        return 0
    return await _submit(runner, config, request)


async def _configure(runner: WorkerRunner, config: RunConfig) -> None:
    for impl in hook_impls(runner.plugin_manager, "configure_runner"):
        try:
            result = impl.call({"runner": runner, "config": config})
            if hasattr(result, "__await__"):
                await result
        except Exception:
            logger.exception("plugin %r: configure_runner raised; ignored", impl.plugin_name)


async def _submit(runner: WorkerRunner, config: RunConfig, request: JobRequest) -> int:
    from framework.bus.local import LocalBus

    printer = _Printer(request.as_json)
    async with runner:
        worker = request.worker
        if isinstance(runner.bus, LocalBus) and worker not in runner.workers:
            running = ", ".join(sorted(runner.workers)) or "none"
            raise RunFailed(
                f"no worker named {worker!r} on this runner (workers: {running}); "
                "see 'framework plugins' for what is registered"
            )
        wait = request.timeout if request.timeout is not None else READY_TIMEOUT
        start = anyio.current_time()
        with anyio.move_on_after(wait):
            await runner.registry.wait_ready(worker)
        if worker not in runner.registry:
            raise RunFailed(f"worker {worker!r} did not appear on {config.bus} within {wait:g} s")
        remaining = None
        if request.timeout is not None:
            remaining = max(0.0, request.timeout - (anyio.current_time() - start))
        try:
            async with runner.job(
                worker, name=request.name, payload=request.payload, timeout=remaining
            ) as job:
                async for event in job:
                    printer.event(event)
        except JobError as exc:
            printer.response(exc.status, exc.response)
            printer.end()
            detail = exc.response.get("error", "")
            print(
                f"framework: job to worker {worker!r} ended {exc.status}"
                + (f": {detail}" if detail else ""),
                file=sys.stderr,
            )
            return 1
        printer.response(job.status or JobStatus.ERROR, job.response or {})
        printer.end()
        return 0


class _Printer:
    """Prints a job's events as they arrive: readable text, or JSON lines."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._mid_line = False

    def _line(self, text: str) -> None:
        if self._mid_line:
            sys.stdout.write("\n")
            self._mid_line = False
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def event(self, event: JobEvent) -> None:
        if self.as_json:
            self._line(json.dumps({"type": event.type, "data": event.data}, default=str))
        elif event.type == JobEvent.UPDATE:
            self._line(f"update: {json.dumps(event.data, default=str)}")
        elif event.type == JobEvent.STREAM_DATA:
            if isinstance(event.data, str):
                sys.stdout.write(event.data)
                sys.stdout.flush()
                self._mid_line = True
            else:
                self._line(json.dumps(event.data, default=str))

    def response(self, status: JobStatus, response: dict[str, Any]) -> None:
        if self.as_json:
            self._line(
                json.dumps(
                    {"type": "response", "status": str(status), "response": response}, default=str
                )
            )
        else:
            self._line(json.dumps(response, default=str))

    def end(self) -> None:
        if self._mid_line:
            sys.stdout.write("\n")
            self._mid_line = False
        sys.stdout.flush()
