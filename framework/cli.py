"""The ``framework`` command: list plugins, run a runner, submit a job, install plugins.

Importing this module imports click and nothing heavy: plugins are loaded when a command
needs them (or when ``--help`` lists the commands plugins add), in one explicit,
idempotent step, and a broken plugin is reported without stopping ``--help``.

Exit codes (docs/configuration.md has the table): 0 success, or a job that completed; 1 a
job that failed or ended in error, or a command that could not do what was asked; 2 a usage
or configuration error; 3 a job cancelled by someone else; 124 a job that timed out; 130 a
job interrupted by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from framework._cli_options import runner_options
from framework._jobs_command import jobs_group

if TYPE_CHECKING:
    from framework._run_command import JobRequest
    from framework.config import RunConfig
    from framework.http._service import HttpService
    from framework.plugins import PluginHost
    from framework.runner import WorkerRunner
    from framework.worker import BaseWorker

_HOST_KEY = "framework.host"
_VERBOSE_KEY = "framework.verbose"
_STRICT_KEY = "framework.strict_plugins"

EXIT_JOB_FAILED = 1
EXIT_CONFIG = 2


def _host(ctx: click.Context, extra_p: tuple[str, ...] = (), strict: bool = False) -> PluginHost:
    """The process's plugin host, built on first use from ``-p`` options and the environment."""
    root = ctx.find_root()
    host: PluginHost | None = root.meta.get(_HOST_KEY)
    if host is None:
        from framework.plugins import PluginHost, PluginSelection

        options = (*root.params.get("plugin_options", ()), *extra_p)
        strict = strict or bool(root.params.get("strict_plugins")) or _STRICT_KEY in root.meta
        host = PluginHost(PluginSelection.from_options(options, strict=strict))
        host.verbose = _verbose(ctx)
        root.meta[_HOST_KEY] = host
    return host


def _verbose(ctx: click.Context) -> bool:
    """``-v``, given before or after the command."""
    root = ctx.find_root()
    return bool(root.params.get("verbose")) or _VERBOSE_KEY in root.meta


def _remember_flag(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        key = _VERBOSE_KEY if param.name == "verbose_here" else _STRICT_KEY
        ctx.find_root().meta[key] = True
    return value


def _group_flags(function: Any) -> Any:
    """``-v`` and ``--strict-plugins`` after the command too (``framework run -v``)."""
    function = click.option(
        "--strict-plugins",
        "strict_here",
        is_flag=True,
        expose_value=False,
        callback=_remember_flag,
        help="Exit non-zero when a plugin fails to load (as before the command).",
    )(function)
    return click.option(
        "-v",
        "--verbose",
        "verbose_here",
        is_flag=True,
        expose_value=False,
        callback=_remember_flag,
        help="Verbose output (as before the command).",
    )(function)


def _load(host: PluginHost, *, registrations: bool = False) -> None:
    """Load the plugins (and run the registration hooks); strict-mode failures exit 1."""
    from framework.plugins import PluginLoadError

    try:
        host.load()
        if registrations:
            host.collect_registrations()
    except PluginLoadError as exc:
        raise click.ClickException(str(exc)) from None


class FrameworkGroup(click.Group):
    """A click group that offers plugin commands next to its own.

    Plugins add commands through ``register_commands``, on a scratch group each, when the
    command list is first needed (``--help``, or a name that is not built in); they are
    kept per invocation, so the group itself is never changed.
    """

    def plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        """The commands plugins add, by name (loading the plugins once)."""
        host = _host(ctx)
        _load(host)
        return host.plugin_commands(self.commands)

    def ensure_plugin_commands(self, ctx: click.Context) -> None:
        """Collect the plugin commands now (``framework plugins`` lists them)."""
        self.plugin_commands(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is None:
            command = self.plugin_commands(ctx).get(cmd_name)
        return command


_plugin_option = click.option(
    "-p",
    "extra_plugin_options",
    multiple=True,
    metavar="NAME",
    help="Load plugin NAME, or block it with no:NAME (as on the group).",
)


@click.group(cls=FrameworkGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-p",
    "plugin_options",
    multiple=True,
    metavar="NAME",
    is_eager=True,  # parsed before --help, which loads plugins to list their commands
    help="Load plugin NAME even when autoload is off; 'no:NAME' blocks it (repeatable).",
)
@click.option(
    "--strict-plugins",
    is_flag=True,
    is_eager=True,
    help="Exit non-zero when a plugin fails to load (FRAMEWORK_STRICT_PLUGINS=1).",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Print runtime events, and the tracebacks of jobs that raise, on stderr.",
)
@click.option(
    "--version",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=lambda ctx, param, value: _print_version(ctx) if value else None,
    help="Print the version of the framework and of each installed plugin, and exit.",
)
def cli(plugin_options: tuple[str, ...], strict_plugins: bool, verbose: bool) -> None:
    """Workers that exchange jobs over a bus, composed from installed plugins."""


def _print_version(ctx: click.Context) -> None:
    """``framework --version``: the core's version, then each installed plugin's."""
    if ctx.resilient_parsing:
        return
    from importlib.metadata import version

    click.echo(f"framework (agent-plugin-framework) {version('agent-plugin-framework')}")
    host = _host(ctx)
    _load(host)
    seen: set[str] = set()
    for info in host.plugin_infos():
        if info.builtin or info.name in seen:
            continue
        seen.add(info.name)
        if info.error:
            where = " ".join(filter(None, (info.distribution or "not loaded", info.version)))
            click.echo(f"  {info.name}: {where} (broken: see 'framework plugins')")
        elif info.distribution:
            click.echo(f"  {info.name}: {info.distribution} {info.version}")
        else:
            click.echo(f"  {info.name}: (registered in code)")
    ctx.exit()


# --------------------------------------------------------------------------- plugins


@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
@click.option(
    "--requirements",
    is_flag=True,
    help="Lines pip installs the plugin distributions from (name==version, a path or a URL).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Import every worker registered by its import path, to show the broken ones.",
)
@_plugin_option
@_group_flags
@click.pass_context
def plugins_command(
    ctx: click.Context,
    as_json: bool,
    requirements: bool,
    check: bool,
    extra_plugin_options: tuple[str, ...],
) -> None:
    """List plugins: distribution and version, hooks, what each registered, load errors."""
    from framework.plugins import remedy

    host = _host(ctx, extra_plugin_options)
    _load(host, registrations=True)
    root = ctx.find_root().command
    if isinstance(root, FrameworkGroup):
        root.ensure_plugin_commands(ctx)  # so that "registered" shows plugin commands too
    # Workers registered by path: found (cheap), or imported with --check or -v.
    broken = host.check_workers(import_them=check or _verbose(ctx))
    infos = host.plugin_infos()
    if requirements:
        from framework._install import requirement_line

        core = requirement_line("agent-plugin-framework", None)
        lines = [] if "==" in core or core == "agent-plugin-framework" else [core]
        for info in infos:  # the core first when no index has it: the plugins depend on it
            if info.distribution and info.version and not info.builtin:
                lines.append(requirement_line(info.distribution, info.version))
        for line in dict.fromkeys(lines):
            click.echo(line)
        return
    if as_json:
        import json

        click.echo(json.dumps([info.to_dict() for info in infos], indent=2))
        return
    for info in infos:
        loaded = not info.error or bool(info.hooks)
        where = info.distribution or ("(registered in code)" if loaded else "(not loaded)")
        version = f" {info.version}" if info.version else ""
        tag = " [built-in]" if info.builtin else ""
        click.echo(f"{info.name}: {where}{version}{tag}")
        if info.module:
            click.echo(f"  module: {info.module}")
        click.echo(f"  hooks: {', '.join(info.hooks) or '-'}")
        for kind, names in info.registered.items():
            shown = [f"{n} (broken)" if kind == "workers" and n in broken else n for n in names]
            click.echo(f"  {kind.replace('_', ' ')}: {', '.join(shown)}")
        if info.error:
            click.echo(f"  error: {info.error}")
            if remedy(info):
                click.echo(f"  hint: {remedy(info).removeprefix('; ')}")


@cli.command("backends")
@click.option("--json", "as_json", is_flag=True, help="One JSON document for machines.")
@_plugin_option
@_group_flags
@click.pass_context
def backends_command(
    ctx: click.Context, as_json: bool, extra_plugin_options: tuple[str, ...]
) -> None:
    """List the LLM backends plugins registered, with their options."""
    host = _host(ctx, extra_plugin_options)
    _load(host, registrations=True)
    rows = []
    for name, entry in host.llm_backends.entries.items():
        row: dict[str, Any] = {"name": name, "plugin": entry.plugin, "options": {}, "error": None}
        try:
            backend = host.llm_backends.resolve(name)
            model = getattr(backend, "options_model", None)
            if model is not None:
                row["options"] = {
                    field: (info.description or "") for field, info in model.model_fields.items()
                }
        except Exception as exc:  # a backend that does not import is shown, not fatal
            row["error"] = str(exc)
        rows.append(row)
    if as_json:
        import json

        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']} (plugin {row['plugin']})")
        for option, description in row["options"].items():
            click.echo(f"  {option}" + (f": {description}" if description else ""))
        if row["error"]:
            click.echo(f"  error: {row['error']}")


# --------------------------------------------------------------------------- run


@cli.command("run")
@runner_options
@click.option(
    "--job",
    "job_worker",
    metavar="WORKER",
    shell_complete=lambda ctx, param, incomplete: _complete_workers(ctx, incomplete),
    help="Submit one job to WORKER and exit.",
)
@click.option("--name", "job_name", metavar="JOB", help="The job's name (with --job).")
@click.option(
    "--payload",
    metavar="JSON",
    help="The job's payload, a JSON object (with --job); @FILE reads it from FILE, - from stdin.",
)
@click.option("--timeout", type=float, metavar="SECONDS", help="Give up on the job after SECONDS.")
@click.option("--json", "as_json", is_flag=True, help="With --job: one JSON object per line.")
@click.option(
    "--url",
    metavar="URL",
    help="With --job: submit it to the runner serving HTTP at URL instead of starting one "
    "(default: FRAMEWORK_URL).",
)
@click.option(
    "--http",
    "http_listen",
    metavar="HOST:PORT",
    help="Serve the HTTP API and dashboard there (default: 127.0.0.1:8765).",
)
@click.option("--no-http", is_flag=True, help="Serve no HTTP API or dashboard.")
@_plugin_option
@_group_flags
@click.pass_context
def run_command(
    ctx: click.Context,
    config_path: Path | None,
    bus_url: str | None,
    job_worker: str | None,
    job_name: str | None,
    payload: str | None,
    timeout: float | None,
    as_json: bool,
    url: str | None,
    http_listen: str | None,
    no_http: bool,
    extra_plugin_options: tuple[str, ...],
) -> None:
    """Start a runner with the registered (or configured) workers; serve until Ctrl-C or
    SIGTERM, or, with --job, submit one job, print what it sends, and exit."""
    from framework._run_command import JobRequest

    if job_worker is None and (job_name or payload or as_json):
        raise click.UsageError("--name, --payload and --json go with --job WORKER")
    job_payload = _parse_payload(payload)
    if job_worker is None and timeout is not None:
        raise click.UsageError("--timeout goes with --job WORKER")
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise click.BadParameter(
            f"must be a positive number of seconds, got {timeout:g}", param_hint="--timeout"
        )
    if job_worker is None and url is not None:
        raise click.UsageError("--url goes with --job WORKER")
    if job_worker is not None and (http_listen is not None or no_http):
        raise click.UsageError("--http and --no-http are for serving, not with --job")
    if job_worker is not None:
        url = url or os.environ.get("FRAMEWORK_URL") or None
    if job_worker is not None and url is not None:
        _submit_over_http(ctx, url, job_worker, job_name, job_payload, timeout, as_json)
    host = _host(ctx, extra_plugin_options)
    config, source, workers = _run_config(ctx, host, config_path, bus_url)
    request = None
    http = None
    if job_worker is not None:
        request = JobRequest(job_worker, job_name, job_payload, timeout, as_json)
        _hint_serving_runner(config.bus)
    elif not no_http and config.http.enabled:
        http = _http_service(ctx, host, config, http_listen)
    _run_and_exit(ctx, host, config, source, workers, bus_url, request=request, http=http)


def _run_and_exit(
    ctx: click.Context,
    host: PluginHost,
    config: RunConfig,
    source: str,
    workers: list[BaseWorker],
    bus_url: str | None,
    *,
    request: JobRequest | None = None,
    http: HttpService | None = None,
    main: Callable[[WorkerRunner], Awaitable[object]] | None = None,
) -> NoReturn:
    """Run the runner (``run_or_submit``) and exit with its code; a configuration error
    found once running exits 2, a ``RunFailed`` with its own code."""
    from framework._run_command import RunFailed, run_or_submit
    from framework.config import ConfigError

    bus_source = "--bus" if bus_url is not None else None
    try:
        code = run_or_submit(host, config, source, workers, request, bus_source, http, main)
    except ConfigError as exc:
        click.echo(f"framework: configuration error: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    except RunFailed as exc:
        click.echo(f"framework: {exc}", err=True)
        ctx.exit(exc.code)
    ctx.exit(code)


def _run_config(
    ctx: click.Context, host: PluginHost, config_path: Path | None, bus_url: str | None
) -> tuple[RunConfig, str, list[BaseWorker]]:
    """Load the plugins and the configuration, and build the workers, as ``framework run``
    does before it starts anything: a clash exits 1, a configuration problem exits 2."""
    from framework._run_command import build_workers, check_llm_config
    from framework.config import ConfigError, load_config

    _load(host, registrations=True)
    if host.registration_errors:
        raise click.ClickException(
            "plugins registered conflicting or invalid things:\n  "
            + "\n  ".join(host.registration_errors)
        )
    try:
        config, source = load_config(config_path)
        if bus_url is not None:
            config.bus = bus_url
        if _verbose(ctx):
            config.publishers.console.enabled = True
        workers = build_workers(config, source, host)
        workers = check_llm_config(config, source, host, workers)
    except ConfigError as exc:
        click.echo(f"framework: configuration error: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    return config, source, workers


def run_with_runner(
    ctx: click.Context,
    main: Callable[[WorkerRunner], Awaitable[object]],
    *,
    config_path: Path | None = None,
    bus_url: str | None = None,
) -> NoReturn:
    """Start the runner ``framework run`` would start, await ``main(runner)``, and exit.

    For a plugin's command (``register_commands``) that serves the runner's workers some
    other way (``framework mcp`` serves them over MCP): the same plugins (``framework -p
    NAME mcp``, ``FRAMEWORK_PLUGINS``...), the same configuration file (``config_path``,
    else ``./framework.toml`` or ``[tool.framework]`` in ``./pyproject.toml``), bus
    (``bus_url`` overrides the file's), workers, ``configure_runner`` hooks and checks,
    and the same messages and exit codes for what is wrong: 1 for plugins that registered
    conflicting things, 2 for a configuration error, both before anything starts. The
    HTTP API is not served.

    ``main`` is awaited once every configured worker is ready; when it returns the runner
    ends gracefully and the process exits with the int ``main`` returned (0 for anything
    else). SIGINT or SIGTERM end the runner, and
    ``main`` is cancelled. Nothing is printed on stdout (the banner and logs go to
    stderr), so ``main`` may own it.

    Never returns: it exits the process (``ctx.exit``) with the exit code.
    """
    host = _host(ctx)
    config, source, workers = _run_config(ctx, host, config_path, bus_url)
    _run_and_exit(ctx, host, config, source, workers, bus_url, main=main)


def _submit_over_http(
    ctx: click.Context,
    url: str,
    worker: str,
    name: str | None,
    payload: dict[str, Any],
    timeout: float | None,
    as_json: bool,
) -> None:
    """``--job`` with ``--url``: no runner here, the one at ``url`` runs the job."""
    from framework._run_command import JobRequest
    from framework.http._client import SubmitFailed, submit

    try:
        code = submit(url, JobRequest(worker, name, payload, timeout, as_json))
    except SubmitFailed as exc:
        click.echo(f"framework: {exc}", err=True)
        ctx.exit(exc.code)
    ctx.exit(code)


def _hint_serving_runner(bus: str) -> None:
    """``--job`` without ``--url`` starts a runner of its own: say so when another one
    serves on this machine's default address, which is likely what was meant."""
    if not bus.startswith("local:"):
        return  # on a network bus the job reaches the runner that hosts the worker
    from framework.http._client import serving_runner
    from framework.http._settings import DEFAULT_LISTEN

    name = serving_runner()
    if name is not None:
        click.echo(
            f"framework: note: runner {name!r} serves at http://{DEFAULT_LISTEN}; this job "
            f"runs in a runner of its own. To send it there: --url http://{DEFAULT_LISTEN} "
            "(or set FRAMEWORK_URL)",
            err=True,
        )


def _http_service(
    ctx: click.Context, host: PluginHost, config: RunConfig, listen: str | None
) -> HttpService | None:
    """Bind the HTTP API's address now, so that a problem is reported before anything
    starts: exit 2 when the address was asked for, else a warning and no HTTP."""
    from framework.http._service import HttpService, bind
    from framework.http._settings import ListenError, resolve

    try:
        settings = resolve(config.http, listen)
    except ListenError as exc:
        click.echo(f"framework: configuration error: http: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    try:
        sock, settings = bind(settings)
    except ListenError as exc:
        if settings.explicit:
            click.echo(f"framework: {exc}", err=True)
            ctx.exit(EXIT_CONFIG)
        click.echo(f"framework: warning: {exc}; serving without HTTP", err=True)
        return None
    return HttpService(settings, sock, lambda: [info.to_dict() for info in host.plugin_infos()])


def _parse_payload(payload: str | None) -> dict[str, Any]:
    """``--payload``: JSON text, ``@FILE`` (the file's JSON) or ``-`` (stdin's)."""
    if payload is None:
        return {}
    import json

    text = payload
    where = ""
    if payload == "-":
        text, where = sys.stdin.read(), " (read from stdin)"
    elif payload.startswith("@"):
        path = Path(payload[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(
                f"cannot read {str(path)!r}: {exc}", param_hint="--payload"
            ) from None
        where = f" (in {path})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON{where} ({exc})", param_hint="--payload") from None
    if not isinstance(value, dict):
        raise click.BadParameter(
            f'must be a JSON object like \'{{"text": "hi"}}\'{where}, got {type(value).__name__}',
            param_hint="--payload",
        )
    return value


def _complete_workers(ctx: click.Context, incomplete: str) -> list[Any]:
    """Shell completion of ``--job``: the registered workers and those ``./framework.toml``
    (or ``--config``) names; quiet, and empty when anything goes wrong."""
    from click.shell_completion import CompletionItem

    names: set[str] = set()
    try:
        from framework.plugins import PluginHost, PluginSelection

        root = ctx.find_root()
        options = (
            *root.params.get("plugin_options", ()),
            *ctx.params.get("extra_plugin_options", ()),
        )
        host = PluginHost(PluginSelection.from_options(options), report=False)
        host.load()
        host.collect_registrations()
        names.update(host.workers.entries)
        from framework.config import load_config

        config, _ = load_config(ctx.params.get("config_path"))
        for spec in config.workers or ():
            names.add(spec.name or spec.type)
    except Exception:  # completion never prints a traceback into the shell
        pass
    return [CompletionItem(name) for name in sorted(names) if name.startswith(incomplete)]


# --------------------------------------------------------------------------- config


@cli.group("config")
def config_group() -> None:
    """Check the run configuration without starting anything."""


@config_group.command("check")
@runner_options
@_plugin_option
@_group_flags
@click.pass_context
def config_check_command(
    ctx: click.Context,
    config_path: Path | None,
    bus_url: str | None,
    extra_plugin_options: tuple[str, ...],
) -> None:
    """Check the configuration as 'framework run' would: the file, the workers and their
    settings, the LLM backend, the bus URL and the HTTP address. Nothing is started or
    connected to; exit 0 when it is good, 2 listing every problem when not."""
    from framework._run_command import make_bus
    from framework.config import ConfigError, bus_secrets
    from framework.http._settings import ListenError, resolve
    from framework.urls import redact_url

    host = _host(ctx, extra_plugin_options)
    config, source, workers = _run_config(ctx, host, config_path, bus_url)
    try:
        make_bus(config.bus, host, "--bus" if bus_url is not None else source, bus_secrets(config))
        http = resolve(config.http, None) if config.http.enabled else None
    except ConfigError as exc:
        click.echo(f"framework: configuration error: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    except ListenError as exc:
        click.echo(f"framework: configuration error: {source}: http: {exc}", err=True)
        ctx.exit(EXIT_CONFIG)
    names = ", ".join(w.name for w in workers) or "none"
    click.echo(f"{source}: good")
    click.echo(f"  runner: {config.name or '(a generated name)'}")
    click.echo(f"  bus: {redact_url(config.bus)}")
    click.echo(f"  workers: {names}")
    click.echo(f"  llm backend: {config.llm.backend}")
    click.echo(f"  http: {http.url if http is not None else 'off'}")


# --------------------------------------------------------------------------- jobs

cli.add_command(jobs_group)


# --------------------------------------------------------------------------- install


def _installer(action: str, names: tuple[str, ...], yes: bool = False) -> list[str]:
    """pip in the environment that runs ``framework``, or uv where it has no pip."""
    import importlib.util
    import shutil

    if importlib.util.find_spec("pip") is not None:
        command = [sys.executable, "-m", "pip", action, *names]
        if action == "uninstall" and yes:
            command.append("-y")
        return command
    uv = shutil.which("uv")
    if uv is None:
        raise click.ClickException(
            f"this environment ({sys.prefix}) has neither pip nor uv; install one of them"
        )
    return [uv, "pip", action, "--python", sys.executable, *names]


@cli.command("install", context_settings={"ignore_unknown_options": True})
@click.argument("names", nargs=-1, required=True, type=click.UNPROCESSED)
def install_command(names: tuple[str, ...]) -> None:
    """Install plugin distributions into the environment that runs framework.

    Options other than --help go to pip (or uv): framework install -U agent-plugin-echo.
    """
    from framework._install import run_installer

    raise SystemExit(run_installer(_installer("install", names)))


@cli.command("uninstall", context_settings={"ignore_unknown_options": True})
@click.argument("names", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
def uninstall_command(names: tuple[str, ...], yes: bool) -> None:
    """Uninstall plugin distributions from the environment that runs framework.

    Options other than -y and --help go to pip (or uv).
    """
    import subprocess

    command = _installer("uninstall", names, yes)
    if command[1:3] == ["-m", "pip"] and not yes and not sys.stdin.isatty():
        raise click.UsageError(
            "pip asks for confirmation and there is no terminal to answer it: "
            f"add -y (framework uninstall -y {' '.join(names)})"
        )
    raise SystemExit(subprocess.call(command))


@cli.command("new-plugin")
@click.argument("name")
@click.option(
    "--directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(),
    show_default=True,
    help="Where to create the plugin's folder.",
)
def new_plugin_command(name: str, directory: Path) -> None:
    """Create a plugin to start from: agent-plugin-NAME with a worker NAME, its hookimpl,
    tests through framework.testing, a README and a pyproject.toml."""
    from framework._new_plugin import ScaffoldError, names, new_plugin

    try:
        target = new_plugin(name, directory)
    except ScaffoldError as exc:
        raise click.UsageError(str(exc)) from None
    values = names(name)
    click.echo(f"created {target}: the plugin {name!r} ({values['distribution']}). Next:")
    click.echo(f"  cd {target}")
    click.echo("  framework install -e '.[test]'")
    click.echo("  python -m pytest")
    click.echo(f'  framework run --job {name} --payload \'{{"name": "you"}}\'')


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="framework")
    except BrokenPipeError:  # `framework ... | head`: the reader left; so do we, quietly
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None
