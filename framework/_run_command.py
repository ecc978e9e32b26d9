"""What ``framework run`` does once the command line is parsed: build the bus and the
runner, let plugins configure it, then serve until a signal, or submit one job and print
what comes back."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
from pydantic import SecretStr, ValidationError

from framework._exit_codes import EXIT_INTERRUPTED, EXIT_USAGE
from framework._job_checks import BadJobName, check_job_name, did_you_mean, unknown_worker
from framework._printer import JobPrinter
from framework.bus.base import Bus
from framework.bus.local import LocalBus
from framework.config import (
    CONFIG_KEYS_URL,
    NO_FILE,
    RUN_CONFIGURATION,
    ConfigError,
    RunConfig,
    WorkerConfig,
    bus_secrets,
    validation_error,
)
from framework.http._service import HttpService
from framework.jobs import JobError
from framework.plugins import PluginHost
from framework.registrars import RegistrationError
from framework.runner import WorkerRunner
from framework.types import JobStatus
from framework.urls import docs_url, redact_url
from framework.worker import BaseWorker, sole_cause

logger = logging.getLogger("framework.run")

INSTALLING_URL = docs_url("configuration.md#installing-plugins")
"""Where a message about a missing plugin sends a pip user."""

READY_TIMEOUT = 10.0
"""Seconds ``--job`` waits for its worker to appear on a network bus without ``--timeout``."""


class RunFailed(Exception):
    """``framework run`` cannot do what was asked; the message says what and what to do,
    ``code`` is the exit code (1, or 2 for a usage error)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


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
    bus_source: str | None = None,
    http: HttpService | None = None,
    main: Callable[[WorkerRunner], Awaitable[object]] | None = None,
) -> int:
    """Run the runner (or submit ``request``) and return the process exit code.

    ``bus_source`` names where the bus URL came from (``--bus``) when not from ``source``;
    ``http`` serves the HTTP API while the runner serves; ``main`` (a plugin's command,
    through ``framework.cli.run_with_runner``) is awaited once the workers are ready, and
    the runner ends when it returns; an int it returns is the exit code.
    """
    level = logging.INFO if config.publishers.console.enabled else logging.WARNING  # -v
    logging.basicConfig(level=level, format="framework: %(name)s: %(message)s")
    bus = make_bus(config.bus, host, bus_source or source, bus_secrets(config))
    try:
        result: int = anyio.run(_main, host, config, bus, workers, request, http, main)
    except* ConnectionError as group:  # the bus could not connect when it started
        raise ConfigError(bus_source or source, "bus", str(sole_cause(group))) from None
    except* ConfigError as group:  # a plugin's settings, found wrong once running
        raise _in_file(sole_cause(group), source) from None
    return result


def _in_file(error: BaseException, source: str) -> BaseException:
    """``error`` naming the configuration file ``source`` where it says only "the run
    configuration" (a plugin's ``configure_runner`` is not told the file); unchanged when
    no file was loaded."""
    if not isinstance(error, ConfigError) or error.file != RUN_CONFIGURATION or source == NO_FILE:
        return error
    return ConfigError(source, error.key, error.reason, error.problems[1:])


def build_workers(config: RunConfig, source: str, host: PluginHost) -> list[BaseWorker]:
    """The workers the configuration asks for (every registered one when it names none)."""
    workers = (
        every_registered_worker(host)
        if config.workers is None
        else _configured_workers(config, source, host)
    )
    if config.name is not None and any(w.name == config.name for w in workers):
        raise ConfigError(
            source, "name", f"the runner's name {config.name!r} is also a worker's; rename one"
        )
    return workers


def _configured_workers(config: RunConfig, source: str, host: PluginHost) -> list[BaseWorker]:
    assert config.workers is not None
    workers: list[BaseWorker] = []
    errors: list[ConfigError] = []
    names: set[str] = set()
    for index, spec in enumerate(config.workers):
        name = spec.name or spec.type
        if name in names:
            errors.append(
                ConfigError(
                    source, f"workers.{index}.name", f"a worker named {name!r} is configured twice"
                )
            )
        names.add(name)
        try:
            worker = _configured_worker(spec, name, f"workers.{index}", source, host)
        except ConfigError as exc:  # every worker is checked: all the problems at once
            errors.append(exc)
            continue
        workers.append(worker)
        errors.extend(
            _tool_ref_errors(worker, f"workers.{index}.config.tools", config, source, host)
        )
    if errors:
        raise ConfigError.combine(errors)
    return workers


def _tool_ref_errors(
    worker: BaseWorker, key: str, config: RunConfig, source: str, host: PluginHost
) -> list[ConfigError]:
    """An LLM worker's ``tools`` entries name installed tool sources, and each source
    accepts its entry with this configuration (``ToolSource.check``)."""
    refs: list[str] = getattr(worker, "tool_refs", [])
    if not refs:
        return []
    from framework.llm.worker import check_tool_ref, unknown_tool_source

    errors = []
    for index, ref in enumerate(refs):
        where = f"{key}.{index}"
        prefix, name = check_tool_ref(ref)
        if prefix not in host.tool_sources:
            errors.append(
                ConfigError(source, where, unknown_tool_source(prefix, name, host.tool_sources))
            )
            continue
        try:
            host.tool_sources.resolve(prefix).check(name, config)
        except (RegistrationError, ValueError) as exc:
            errors.append(ConfigError(source, where, f"{ref!r}: {exc}"))
        except Exception as exc:  # a broken source costs a clear message, not a traceback
            plugin = host.tool_sources.entries[prefix].plugin
            errors.append(
                ConfigError(
                    source,
                    where,
                    f"{ref!r}: the tool source of plugin {plugin!r} failed to check it: "
                    f"{type(exc).__name__}: {exc}",
                )
            )
    return errors


def _configured_worker(
    spec: WorkerConfig, name: str, key: str, source: str, host: PluginHost
) -> BaseWorker:
    registered = host.workers
    if spec.type not in registered:
        known = ", ".join(sorted(registered.entries)) or "none: install a plugin"
        raise ConfigError(
            source,
            f"{key}.type",
            f"no worker {spec.type!r} is registered{did_you_mean(spec.type, registered.entries)}"
            f" (registered: {known})",
        )
    try:
        worker_class = registered.resolve(spec.type)
    except RegistrationError as exc:
        raise ConfigError(source, f"{key}.type", str(exc)) from None
    kwargs: dict[str, Any] = {}
    if not spec.active:
        kwargs["active"] = False
    if spec.config or getattr(worker_class, "config_model", None) is not None:
        kwargs["config"] = spec.config
    try:
        worker: BaseWorker = worker_class(name, **kwargs)
    except ValidationError as exc:
        raise validation_error(exc, source, f"{key}.config") from None
    except Exception as exc:
        raise ConfigError(
            source, key, f"worker {spec.type!r} cannot be built: {type(exc).__name__}: {exc}"
        ) from None
    return worker


def check_llm_config(
    config: RunConfig, source: str, host: PluginHost, workers: list[BaseWorker]
) -> list[BaseWorker]:
    """``[llm]`` names a registered backend, and its options fit that backend (checked
    before anything starts, when LLM workers will use it). Returns the workers to start:
    with no ``[llm]`` configured and the default backend blocked (``-p no:offline``), the
    LLM workers that would use it are left out with a warning."""
    llm = sys.modules.get("framework.llm.worker")
    users = [
        w
        for w in workers
        if llm is not None and isinstance(w, llm.LLMWorker) and not w._backend_name
    ]
    if not users:
        return workers
    name = config.llm.backend
    if name not in host.llm_backends and config.llm == type(config.llm)():
        for worker in users:
            print(
                f"framework: worker {worker.name!r} not started: the default LLM backend "
                f"{name!r} is not loaded (blocked with -p no:{name}?); set [llm] backend "
                "in framework.toml to use another",
                file=sys.stderr,
            )
        return [w for w in workers if w not in users]
    if name not in host.llm_backends:
        known = ", ".join(sorted(host.llm_backends.entries)) or "none"
        raise ConfigError(
            source,
            "llm.backend",
            f"no LLM backend named {name!r} (registered: {known}); install the plugin that "
            f"provides it (agent-plugin-openai for 'openai'; how: {INSTALLING_URL})",
        )
    try:
        backend = host.llm_backends.resolve(name)
    except RegistrationError as exc:
        raise ConfigError(source, "llm.backend", str(exc)) from None
    model = getattr(backend, "options_model", None)
    if model is not None:
        try:
            model.model_validate(config.llm.options)
        except ValidationError as exc:
            error = validation_error(exc, source, "llm.options")
            problems = [
                (
                    key,
                    reason.replace(
                        CONFIG_KEYS_URL + " lists the keys", "framework backends lists the options"
                    ),
                )
                for key, reason in error.problems
            ]
            (key, reason), *more = problems
            raise ConfigError(error.file, key, reason, more) from None
    return workers


def every_registered_worker(host: PluginHost) -> list[BaseWorker]:
    """Each registered worker under its registered name; one that cannot start without
    settings is left out with a warning saying how to configure it."""
    workers: list[BaseWorker] = []
    for name, entry in list(host.workers.entries.items()):
        try:
            workers.append(host.workers.resolve(name)(name))
        except RegistrationError as exc:
            print(f"framework: worker {name!r} not started: {exc}", file=sys.stderr)
        except ValidationError as exc:
            detail = exc.errors(include_url=False, include_input=False)[0]
            why = f"{'.'.join(map(str, detail['loc']))}: {detail['msg']}"
            print(
                f"framework: worker {name!r} not started: it needs settings "
                f"({why}); configure it in framework.toml: [[workers]] type = "
                f'"{name}" with a [workers.config] table',
                file=sys.stderr,
            )
        except Exception as exc:  # one broken worker class costs only itself
            print(
                f"framework: worker {name!r} (plugin {entry.plugin!r}) not started: it "
                f"cannot be built: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
    return workers


def check_bus_url(url: str, source: str) -> str:
    """The URL's scheme; a ``ConfigError`` (key ``bus``) for an URL that cannot be parsed."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port out of range or not a number raises here
    except ValueError as exc:
        raise ConfigError(source, "bus", f"not a valid URL ({exc}): {redact_url(url)!r}") from None
    if not parts.scheme:
        raise ConfigError(
            source,
            "bus",
            f"{redact_url(url)!r} has no scheme; write it like local:// or redis://host",
        )
    return parts.scheme


def make_bus(url: str, host: PluginHost, source: str, secret: Sequence[SecretStr] = ()) -> Bus:
    """The bus for ``url``, from the factory registered for its scheme: ``factory(url)``,
    or ``factory(url, secret=[...])`` when the factory takes a ``secret`` keyword (a
    network bus that signs its messages). A ``secret`` for a network bus whose factory
    cannot take it is a configuration error: its messages would travel unsigned."""
    scheme = check_bus_url(url, source)
    factory = host.buses.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(host.buses.entries)) or "none"
        hint = (
            "the built-in plugin 'local' provides it: remove -p no:local"
            if scheme == "local"
            else "install the plugin that provides it (agent-plugin-redis for redis://; how: "
            f"{INSTALLING_URL})"
        )
        raise ConfigError(
            source,
            "bus",
            f"no bus is registered for {redact_url(url)!r} (registered: {known}); {hint}",
        )
    signs = takes_secret(factory)
    try:
        bus: Bus = factory(url, secret=list(secret)) if signs else factory(url)
    except Exception as exc:
        plugin = host.buses.entries[scheme].plugin
        message = str(exc).replace(url, redact_url(url))
        raise ConfigError(
            source,
            "bus",
            f"the {scheme}:// bus of plugin {plugin!r} could not be made for "
            f"{redact_url(url)!r}: {type(exc).__name__}: {message}",
        ) from None
    if secret and not signs:
        from framework.bus.network.base import NetworkBus

        if isinstance(bus, NetworkBus):
            plugin = host.buses.entries[scheme].plugin
            raise ConfigError(
                source,
                "bus",
                f"a bus_secret is set, but the {scheme}:// bus of plugin {plugin!r} cannot "
                "sign its messages (its factory takes no secret=): they would travel "
                "unsigned; upgrade the plugin, or remove bus_secret and "
                "FRAMEWORK_BUS_SECRET",
            )
    return bus


def takes_secret(factory: Any) -> bool:
    """Whether a bus factory takes a ``secret`` keyword argument (or any keyword)."""
    import inspect

    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: the plain call
        return False
    return any(
        (p.name == "secret" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))
        or p.kind is p.VAR_KEYWORD
        for p in parameters
    )


async def _main(
    host: PluginHost,
    config: RunConfig,
    bus: Bus,
    workers: list[BaseWorker],
    request: JobRequest | None,
    http: HttpService | None = None,
    main: Callable[[WorkerRunner], Awaitable[object]] | None = None,
) -> int:
    runner = WorkerRunner(
        config.name,
        bus=bus,
        plugin_manager=host.pm,
        grace_period=config.grace_period,
        llm_backends=host.llm_backends,
        routes=host.routes,
        tool_sources=host.tool_sources,
    )
    runner.llm_config = config.llm
    if request is not None and config.workers is None and not isinstance(bus, LocalBus):
        # ``--job`` on a network bus is a client: the job goes to whichever runner hosts the
        # worker, not to a copy of every registered worker started here.
        workers = []
    for worker in workers:
        await runner.add_worker(worker)
    await configure(runner, config)
    if http is not None:
        runner.add_plugin(http, name="http")
    if request is None:
        async with anyio.create_task_group() as tg:
            main_scope = anyio.CancelScope()

            async def run(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                try:
                    await runner.run(task_status=task_status)
                finally:
                    main_scope.cancel()  # the runner ended (a signal): so does ``main``

            await tg.start(run)  # returns once the workers are ready
            names = ", ".join(runner.workers) or "no workers"
            print(
                f"framework: runner {runner.name!r} on {redact_url(config.bus)} with {names}; "
                "Ctrl-C or SIGTERM to stop",
                file=sys.stderr,
                flush=True,
            )
            if http is not None:
                url = http.settings.url
                print(
                    f"framework: dashboard and HTTP API at {url}/ ; submit a job from another "
                    f"terminal with: framework run --job WORKER --url {url}",
                    file=sys.stderr,
                    flush=True,
                )
            outcome: object = None
            if main is not None:
                with main_scope:
                    outcome = await main(runner)
                await runner.end("the command is done")
        print(f"framework: runner {runner.name!r} ended", file=sys.stderr, flush=True)
        return outcome if isinstance(outcome, int) and not isinstance(outcome, bool) else 0
    return await _submit(runner, config, request)


async def configure(runner: WorkerRunner, config: RunConfig) -> None:
    """Call every ``configure_runner`` impl through the runner's hook facade; a
    ``ConfigError`` stops the run with exit code 2."""
    await runner.hooks.configure_runner(runner, config)


async def _submit(runner: WorkerRunner, config: RunConfig, request: JobRequest) -> int:
    failure: RunFailed | BrokenPipeError | None = None
    code = 1
    interrupted: list[str] = []
    async with runner, anyio.create_task_group() as tg:
        if threading.current_thread() is threading.main_thread():
            await tg.start(_cancel_on_signal, tg.cancel_scope, interrupted)
        try:
            code = await _submit_job(runner, config, request)
        except (RunFailed, BrokenPipeError) as exc:  # raised outside the task group, unwrapped
            failure = exc
        tg.cancel_scope.cancel()  # stop watching signals
    if failure is not None:
        raise failure
    if interrupted:
        print(
            f"framework: {interrupted[0]} received; the job to worker {request.worker!r} "
            "was cancelled",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    return code


async def _cancel_on_signal(
    scope: anyio.CancelScope,
    interrupted: list[str],
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Ctrl-C or SIGTERM during ``--job``: cancel the job (its worker is told), then exit."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            interrupted.append(signal.Signals(signum).name)
            scope.cancel()
            return


async def _submit_job(runner: WorkerRunner, config: RunConfig, request: JobRequest) -> int:
    worker = request.worker
    failed = runner.failed_workers.get(worker)
    if failed is not None:
        raise RunFailed(f"worker {worker!r} failed to start: {failed.error}")
    if isinstance(runner.bus, LocalBus) and worker not in runner.workers:
        raise RunFailed(
            unknown_worker(worker, "on this runner", runner.workers)
            + "; see 'framework plugins' for what is registered"
        )
    wait = request.timeout if request.timeout is not None else READY_TIMEOUT
    start = anyio.current_time()
    await _wait_for_worker(runner, worker, wait)
    data = runner.registry.get(worker)
    if data is None:
        registry = runner.registry
        known = [*registry.local_workers, *registry.remote_workers]
        waited = anyio.current_time() - start >= wait
        where = f"on {redact_url(config.bus)}" + (f" within {wait:g} s" if waited else "")
        raise RunFailed(unknown_worker(worker, where, known))
    try:
        note = check_job_name(worker, request.name, [job.name for job in data.jobs])
    except BadJobName as exc:
        raise RunFailed(str(exc), EXIT_USAGE) from None
    if note is not None:
        print(f"framework: note: {note}", file=sys.stderr)
    remaining = None
    if request.timeout is not None:
        remaining = max(0.0, request.timeout - (anyio.current_time() - start))
    printer = JobPrinter(request.as_json, worker)
    try:
        async with runner.job(
            worker, name=request.name, payload=request.payload, timeout=remaining
        ) as job:
            async for event in job:
                printer.event(event)
    except JobError as exc:
        response = exc.response
        if exc.timed_out and request.timeout is not None:  # the whole --timeout, not what was left
            response = {**response, "error": f"timed out after {request.timeout:g} s"}
        return printer.outcome(worker, exc.status, response, timed_out=exc.timed_out)
    finally:
        printer.end()
    return printer.outcome(worker, job.status or JobStatus.ERROR, job.response or {})


async def _wait_for_worker(runner: WorkerRunner, worker: str, wait: float) -> None:
    """Wait up to ``wait`` seconds for ``worker`` to be ready, and no longer than it takes a
    network bus that can tell (``wait_settled``) to have heard from every runner on it."""
    settled = getattr(runner.bus, "wait_settled", None)
    with anyio.move_on_after(wait):
        if settled is None:
            await runner.registry.wait_ready(worker)
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(_then_cancel, runner.registry.wait_ready(worker), tg.cancel_scope)
            tg.start_soon(_then_cancel, settled(), tg.cancel_scope)


async def _then_cancel(waiting: Awaitable[object], scope: anyio.CancelScope) -> None:
    await waiting
    scope.cancel()
