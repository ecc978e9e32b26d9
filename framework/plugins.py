"""The plugin manager: built-ins, entry-point discovery, selection, failure isolation.

``create_plugin_manager`` is the one place a manager is built. ``PluginHost`` is what the
``framework`` command (and ``framework.testing``) uses on top of it: it discovers the
plugins installed as distributions (entry-point group ``framework``), loads each in its
own try/except, keeps one ``PluginInfo`` per plugin, and runs the registration hooks once.
Nothing here runs as a side effect of an import.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import os
import re
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from framework import hookspecs
from framework._hooks import (
    ASYNC_ONLY_HOOKS,
    NOTIFICATION_HOOKS,
    SYNC_ONLY_HOOKS,
    HookImpl,
    RuntimeHooks,
    env_flag,
    hook_impls,
)
from framework._tracebacks import format_traceback, where
from framework.registrars import (
    BackendRegistrar,
    BusRegistrar,
    RouteRegistrar,
    ToolSourceRegistrar,
    WorkerRegistrar,
)
from framework.urls import docs_url

if TYPE_CHECKING:
    import click

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "HookImpl",
    "PluginHost",
    "PluginInfo",
    "PluginSelection",
    "RuntimeHooks",
    "create_plugin_manager",
    "plugin_name",
]

ENTRY_POINT_GROUP = "framework"

BUILTIN_PLUGINS: dict[str, str] = {
    "local": "framework.builtins.local_bus",
    "console": "framework.builtins.console",
    "jsonl": "framework.builtins.jsonl",
    "memory": "framework.builtins.memory",
    "offline": "framework.builtins.offline",
    "assistant": "framework.builtins.assistant",
}
"""Plugins shipped inside the core, by name; registered like any other, blockable with
``-p no:NAME``."""

CORE_DISTRIBUTION = "agent-plugin-framework"


def plugin_name(plugin: object) -> str:
    """A readable name for a plugin object: a module's dotted name, else its class name."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    name = getattr(plugin, "__name__", None)
    if isinstance(name, str):
        return name
    return type(plugin).__name__


def normalize(name: str) -> str:
    """A distribution or plugin name compared as pip does: case, ``-``, ``_``, ``.`` ignored."""
    return re.sub(r"[-_.]+", "-", name).lower()


def create_plugin_manager(
    plugins: Iterable[object] | None = None, *, blocked: Iterable[str] = ()
) -> pluggy.PluginManager:
    """Build a fresh plugin manager with the hook specs, the built-ins and ``plugins``.

    Args:
        plugins: plugin objects (modules or instances holding ``@hookimpl`` functions),
            registered after the built-ins, in order.
        blocked: names of built-in plugins to leave out (``-p no:console``).

    Raises:
        ValueError: a plugin object was given twice.
        pluggy.PluginValidationError: a hookimpl does not match its spec, names a hook that
            does not exist, or wraps a notification hook (the message names the plugin and
            the hook).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    blocked_names = {normalize(n) for n in blocked}
    for name, module_name in BUILTIN_PLUGINS.items():
        if name not in blocked_names:
            pm.register(importlib.import_module(module_name), name=name)
    for plugin in plugins or ():
        register_plugin(pm, plugin)
    return pm


def register_plugin(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> str:
    """Register one plugin object and validate it; on a validation error it is unregistered.

    Returns the name it was registered under (made unique with ``-2``, ``-3``... when a
    plugin of that name exists already and no ``name`` was asked for).
    """
    base = name or plugin_name(plugin)
    if pm.is_registered(plugin):
        raise ValueError(f"plugin {base!r} was given twice; pass each plugin object once")
    unique, n = base, 1
    while name is None and pm.get_plugin(unique) is not None:
        n += 1
        unique = f"{base}-{n}"
    if pm.get_plugin(unique) is not None:
        raise ValueError(f"a plugin named {unique!r} is registered already")
    pm.register(plugin, name=unique)
    try:
        _check_pending(pm)
        _refuse_wrappers(pm)
    except pluggy.PluginValidationError:
        pm.unregister(plugin)
        raise
    return unique


def _spec_names() -> list[str]:
    return sorted(
        name
        for name in vars(hookspecs)
        if getattr(getattr(hookspecs, name), f"{hookspecs.PROJECT_NAME}_spec", None)
    )


def _check_pending(pm: pluggy.PluginManager) -> None:
    """Turn a hookimpl with no matching spec into an error naming the plugin and the hook.

    pluggy's own ``check_pending`` names the plugin by its repr; ours uses the name it was
    registered under and says where the valid names are.
    """
    specs = _spec_names()
    for hook_name, caller in vars(pm.hook).items():
        if hook_name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            import difflib  # only on this error path

            close = difflib.get_close_matches(hook_name, specs, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise pluggy.PluginValidationError(
                impl.plugin,
                f"plugin {impl.plugin_name!r} implements unknown hook {hook_name!r}{hint}; "
                f"the hooks are: {', '.join(specs)} (see {docs_url('hooks.md')})",
            )


REGISTRATION_HOOKS = (
    "register_workers",
    "register_llm_backends",
    "register_buses",
    "register_commands",
    "register_routes",
    "register_tool_sources",
)
"""Hooks whose impls must be plain functions (``configure_runner`` may be async)."""


def _refuse_wrappers(pm: pluggy.PluginManager) -> None:
    """Hooks are called impl by impl, so hook wrappers cannot wrap anything, and the
    registration hooks are not awaited: refuse what would otherwise silently never run."""
    for hook_name in (*NOTIFICATION_HOOKS, *REGISTRATION_HOOKS, "configure_runner"):
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                raise pluggy.PluginValidationError(
                    impl.plugin,
                    f"plugin {impl.plugin_name!r}: hook wrappers (wrapper=True / "
                    f"hookwrapper=True) are not supported for {hook_name}; use a plain "
                    "@hookimpl",
                )
            is_async = inspect.iscoroutinefunction(impl.function)
            if hook_name in REGISTRATION_HOOKS and is_async:
                raise pluggy.PluginValidationError(
                    impl.plugin,
                    f"plugin {impl.plugin_name!r}: {hook_name} must be a plain function, "
                    "not 'async def' (it runs once, before any event loop)",
                )
            if hook_name in SYNC_ONLY_HOOKS and is_async:
                raise pluggy.PluginValidationError(
                    impl.plugin,
                    f"plugin {impl.plugin_name!r}: {hook_name} must be a plain function, "
                    "not 'async def' (it runs on the job path, in the job's own task)",
                )
            if hook_name in ASYNC_ONLY_HOOKS and not is_async:
                raise pluggy.PluginValidationError(
                    impl.plugin,
                    f"plugin {impl.plugin_name!r}: {hook_name} must be 'async def' (it runs "
                    "as a task as long as the runner)",
                )


class PluginInfo:
    """What ``framework plugins`` shows about one plugin.

    Attributes: ``name``, ``distribution``, ``version``, ``module``, ``hooks`` (the hooks it
    implements), ``registered`` (kind -> names), ``error`` (why it failed, if it did) and
    ``builtin``. (A plain class: importing ``dataclasses`` would slow every ``framework``
    start.)
    """

    __slots__ = (
        "builtin",
        "distribution",
        "error",
        "hooks",
        "module",
        "name",
        "registered",
        "version",
    )

    def __init__(
        self,
        name: str,
        distribution: str | None = None,
        version: str | None = None,
        module: str | None = None,
        error: str | None = None,
        builtin: bool = False,
    ) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.module = module
        self.hooks: list[str] = []
        self.registered: dict[str, list[str]] = {}
        self.error = error
        self.builtin = builtin

    def __repr__(self) -> str:
        return f"PluginInfo({self.to_dict()!r})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``framework plugins --json``)."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "builtin": self.builtin,
            "hooks": list(self.hooks),
            "registered": {k: list(v) for k, v in self.registered.items()},
            "error": self.error,
        }


class PluginSelection:
    """Which plugins to load: the ``-p`` options and the ``FRAMEWORK_*`` variables.

    Names match an entry point's name or its distribution's name (normalized as pip does).

    Attributes:
        enabled: ``-p NAME``: load these even when autoload is off or ``only`` leaves them
            out.
        blocked: ``-p no:NAME``: never load these (built-ins included).
        only: ``FRAMEWORK_PLUGINS``: when set, load only these entry-point plugins (empty:
            none).
        autoload: False with ``FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD=1``: only ``-p`` plugins load.
        strict: ``--strict-plugins`` / ``FRAMEWORK_STRICT_PLUGINS=1``: load failures and
            registration errors are fatal.
    """

    def __init__(
        self,
        enabled: list[str] | None = None,
        blocked: list[str] | None = None,
        only: list[str] | None = None,
        autoload: bool = True,
        strict: bool = False,
    ) -> None:
        self.enabled = list(enabled or [])
        self.blocked = list(blocked or [])
        self.only = only
        self.autoload = autoload
        self.strict = strict

    @classmethod
    def from_options(
        cls,
        p_options: Iterable[str] = (),
        *,
        strict: bool = False,
        environ: Mapping[str, str] | None = None,
    ) -> PluginSelection:
        """Combine ``-p`` options with the environment (``os.environ`` by default)."""
        env = os.environ if environ is None else environ
        selection = cls(strict=strict or env_flag("FRAMEWORK_STRICT_PLUGINS", env))
        for option in p_options:
            if option.startswith("no:"):
                selection.blocked.append(option[3:])
            else:
                selection.enabled.append(option)
        only = env.get("FRAMEWORK_PLUGINS")
        if only is not None:
            selection.only = [n.strip() for n in only.split(",") if n.strip()]
        selection.autoload = not env_flag("FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD", env)
        return selection

    def _names(self, names: list[str] | None) -> set[str]:
        return {normalize(n) for n in names or ()}

    def wants(self, entry_point: str, distribution: str | None) -> bool:
        """Whether the entry-point plugin ``entry_point`` of ``distribution`` should load."""
        names = {normalize(entry_point)}
        if distribution:
            names.add(normalize(distribution))
        if names & self._names(self.blocked):
            return False
        if names & self._names(self.enabled):
            return True
        if not self.autoload:
            return False
        if self.only is not None:
            return bool(names & self._names(self.only))
        return True


class PluginLoadError(RuntimeError):
    """Strict mode: a plugin failed to load, or a registration was refused (the message
    lists them)."""


class PluginHost:
    """The plugins of one process: built-ins, discovered distributions, registrations.

    ``load()`` discovers and imports entry-point plugins (idempotent);
    ``collect_registrations()`` runs the registration hooks once and caches what they
    registered. A failing plugin is recorded in its ``PluginInfo`` and reported, and
    everything else goes on; ``selection.strict`` turns load failures into an error.
    """

    def __init__(
        self,
        selection: PluginSelection | None = None,
        *,
        plugins: Iterable[object] = (),
        report: bool = True,
    ) -> None:
        self.selection = selection or PluginSelection()
        self.pm = create_plugin_manager(blocked=self.selection.blocked)
        self.report = report
        """Print one line on stderr per plugin that fails to load."""
        self.verbose = False
        """Print the traceback of each failure too (``framework -v``)."""
        self.infos: dict[str, PluginInfo] = {}
        self.workers = WorkerRegistrar()
        self.buses = BusRegistrar()
        self.llm_backends = BackendRegistrar()
        self.routes = RouteRegistrar()
        self.tool_sources = ToolSourceRegistrar()
        self.registration_errors: list[str] = []
        self._commands: dict[str, list[str]] = {}
        self._load_failed: list[PluginInfo] = []
        self._collected: dict[str, set[str]] = {}
        self._command_cache: dict[str, click.Command] | None = None
        self._loaded = False
        self._registered = False
        for name in BUILTIN_PLUGINS:
            if self.pm.get_plugin(name) is not None:
                self.infos[name] = PluginInfo(
                    name=name,
                    distribution=CORE_DISTRIBUTION,
                    version=_core_version(),
                    module=BUILTIN_PLUGINS[name],
                    builtin=True,
                )
        for plugin in plugins:
            self.register(plugin)

    # ----------------------------------------------------------------- loading

    def register(self, plugin: object, name: str | None = None) -> PluginInfo:
        """Register a plugin object directly (a test, an application); errors raise."""
        registered_name = register_plugin(self.pm, plugin, name)
        module = plugin.__name__ if isinstance(plugin, types.ModuleType) else None
        info = self.infos[registered_name] = PluginInfo(name=registered_name, module=module)
        self._registered = False  # a new plugin may register things
        return info

    def load(self) -> list[PluginInfo]:
        """Discover and import the entry-point plugins once; returns every plugin's info."""
        if not self._loaded:
            self._loaded = True
            self._load_entry_points()
            self._load_named_modules()
            self._validate_loaded()
            if self.selection.strict and self.load_errors:
                raise PluginLoadError(
                    "plugins failed to load (strict mode):\n"
                    + "\n".join(f"  {i.name}: {i.error}" for i in self.load_errors)
                )
        return self.plugin_infos()

    def _load_entry_points(self) -> None:
        from importlib.metadata import entry_points

        seen: set[tuple[str, str]] = set()
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            dist_name, version = _name_and_version(entry_point.dist)
            key = (normalize(dist_name or ""), entry_point.name)
            if key in seen:
                continue  # the same distribution seen twice on sys.path
            seen.add(key)
            if not self.selection.wants(entry_point.name, dist_name):
                continue
            info = PluginInfo(
                name=entry_point.name,
                distribution=dist_name,
                version=version,
                module=entry_point.value,
            )
            if entry_point.name in self.infos:
                held = self.infos[entry_point.name]
                # Listed under its distribution too, so `framework plugins` shows the refusal.
                info.name = f"{entry_point.name} ({dist_name})"
                self.infos[info.name] = info
                self._fail(
                    info,
                    f"the plugin name {entry_point.name!r} is taken by "
                    f"{held.distribution or 'another plugin'}"
                    + (" (a built-in)" if held.builtin else "")
                    + "; rename the entry point",
                )
                continue
            self.infos[entry_point.name] = info
            try:
                with _stdout_to_stderr():
                    module = entry_point.load()
            except (Exception, SystemExit) as exc:  # a plugin that exits costs only itself
                self._fail(info, f"import failed: {type(exc).__name__}: {exc}{where(exc)}", exc)
                continue
            self._register_loaded(info, module)

    def _load_named_modules(self) -> None:
        """``-p NAME`` naming an importable module rather than an installed plugin."""
        known = {normalize(n) for n in self.infos}
        known |= {normalize(i.distribution) for i in self.infos.values() if i.distribution}
        for name in self.selection.enabled:
            if normalize(name) in known or normalize(name) in BUILTIN_PLUGINS:
                continue
            info = self.infos[name] = PluginInfo(name=name, module=name)
            try:
                with _stdout_to_stderr():
                    module = importlib.import_module(name)
            except (Exception, SystemExit) as exc:
                found = not isinstance(exc, ModuleNotFoundError) or exc.name != name
                self._fail(
                    info,
                    f"-p {name}: the module {name!r} failed to import: "
                    f"{type(exc).__name__}: {exc}{where(exc)}"
                    if found
                    else f"-p {name}: no installed plugin or importable module of that name "
                    f"({type(exc).__name__}: {exc})",
                    exc if found else None,
                )
                continue
            self._register_loaded(info, module)

    def _register_loaded(self, info: PluginInfo, module: object) -> None:
        try:
            self.pm.register(module, name=info.name)  # checks each impl's signature
        except (pluggy.PluginValidationError, ValueError) as exc:
            self._fail(info, str(exc))

    def _validate_loaded(self) -> None:
        """Unknown hooks and misplaced wrappers, checked once for every loaded plugin (not
        once per plugin: that is quadratic); each offender is unloaded and reported."""
        while True:
            try:
                _check_pending(self.pm)
                _refuse_wrappers(self.pm)
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin)
                self.pm.unregister(exc.plugin)
                if name is not None and name in self.infos:
                    self._fail(self.infos[name], str(exc))
                continue
            return

    def _fail(self, info: PluginInfo, error: str, exc: BaseException | None = None) -> None:
        error = " ".join(error.split())  # one line (pluggy's signature errors span three)
        info.error = error
        self._load_failed.append(info)
        dist = f" ({info.distribution} {info.version})" if info.distribution else ""
        if self.report:
            print(
                f"framework: plugin {info.name!r}{dist} not loaded: {error}{remedy(info)}",
                file=sys.stderr,
            )
            if self.verbose and exc is not None:
                print(format_traceback(exc), file=sys.stderr)

    @property
    def load_errors(self) -> list[PluginInfo]:
        """Plugins that failed to load (import, validation, or a name clash)."""
        return list(self._load_failed)

    # ----------------------------------------------------------------- registrations

    def collect_registrations(self) -> None:
        """Run ``register_workers``, ``register_buses``, ``register_llm_backends``,
        ``register_routes`` and ``register_tool_sources`` once."""
        if self._registered:
            return
        self._registered = True
        for hook_name, registrar in (
            ("register_buses", self.buses),
            ("register_workers", self.workers),
            ("register_llm_backends", self.llm_backends),
            ("register_routes", self.routes),
            ("register_tool_sources", self.tool_sources),
        ):
            before = len(registrar.errors)
            done = self._collected.setdefault(hook_name, set())  # a later plugin re-runs it
            run_registration_hook(self.pm, hook_name, registrar, done)
            for plugin, message in registrar.errors[before:]:
                self.registration_errors.append(message)
                self._note_error(plugin, message)
        if self.selection.strict and self.registration_errors:
            raise PluginLoadError(
                "plugins registered conflicting or invalid things (strict mode):\n  "
                + "\n  ".join(self.registration_errors)
            )

    def plugin_commands(self, taken: Iterable[str]) -> dict[str, click.Command]:
        """Run ``register_commands`` once per plugin, each on a scratch group, and return the
        commands they add, by name. A name in ``taken`` (the built-in commands) or added by
        an earlier plugin is refused with an error naming both; a command that raises is
        reported with its plugin's name instead of a traceback."""
        import click

        if self._command_cache is not None:
            return self._command_cache
        owners = dict.fromkeys(taken, "the framework command")
        commands: dict[str, click.Command] = {}
        for impl in hook_impls(self.pm, "register_commands"):
            scratch = click.Group(impl.plugin_name)
            try:
                with _stdout_to_stderr():
                    impl.call({"cli": scratch})
            except (Exception, SystemExit) as exc:
                self._note_error(
                    impl.plugin_name, f"register_commands raised {type(exc).__name__}: {exc}"
                )
            added = []
            for name, command in scratch.commands.items():
                if name in owners:
                    message = (
                        f"command {name!r} is registered by both {owners[name]} and plugin "
                        f"{impl.plugin_name!r}; the first one is kept"
                    )
                    self.registration_errors.append(message)
                    self._note_error(impl.plugin_name, message)
                    continue
                owners[name] = f"plugin {impl.plugin_name!r}"
                command.callback = _guarded_command(command.callback, impl.plugin_name, name)
                commands[name] = command
                added.append(name)
            self._commands[impl.plugin_name] = sorted(added)
        self._command_cache = commands
        return commands

    def check_workers(self, *, import_them: bool = False) -> dict[str, str]:
        """Check the workers registered by import path (``framework plugins`` does): that
        each module can be found, cheaply, or, with ``import_them``, that each imports
        and holds a worker class (``framework plugins --check``: slower, since worker
        modules import the runtime). Returns the broken ones: name -> error, also noted on
        their plugin."""
        from framework.registrars import RegistrationError

        broken: dict[str, str] = {}
        for name, entry in list(self.workers.entries.items()):
            if not isinstance(entry.value, str):
                continue
            error: str | None = None
            cause: BaseException | None = None
            if import_them:
                try:
                    with _stdout_to_stderr():
                        self.workers.resolve(name)
                except RegistrationError as exc:
                    error, cause = str(exc), exc.__cause__
            else:
                module = entry.value.partition(":")[0]
                if not _module_exists(module):
                    error = (
                        f"plugin {entry.plugin!r} registered worker {name!r} as "
                        f"{entry.value!r}, and no module {module!r} can be found"
                    )
            if error is None:
                continue
            broken[name] = error
            self._note_error(entry.plugin, f"worker {name!r} is broken: {error}")
            if self.report and self.verbose and cause is not None:
                print(format_traceback(cause), file=sys.stderr)
        return broken

    def _note_error(self, plugin: str, error: str) -> None:
        info = self.infos.get(plugin)
        if info is not None:
            info.error = f"{info.error}; {error}" if info.error else error
        if self.report:
            named = (
                error if error.startswith(f"plugin {plugin!r}") else f"plugin {plugin!r}: {error}"
            )
            print(f"framework: {named}", file=sys.stderr)

    def plugin_infos(self) -> list[PluginInfo]:
        """One record per plugin, with the hooks it implements and what it registered."""
        for name, info in self.infos.items():
            plugin = self.pm.get_plugin(name)
            if plugin is not None:
                info.hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or ())
            registered = {
                "workers": self.workers.names_by_plugin(name),
                "buses": self.buses.names_by_plugin(name),
                "llm_backends": self.llm_backends.names_by_plugin(name),
                "routes": self.routes.names_by_plugin(name),
                "tool_sources": self.tool_sources.names_by_plugin(name),
                "commands": self._commands.get(name, []),
            }
            info.registered = {k: v for k, v in registered.items() if v}
        return list(self.infos.values())


def _module_exists(dotted: str) -> bool:
    """Whether the module ``dotted`` can be found, without importing it or its packages
    (``importlib.util.find_spec`` imports the parent packages, whose ``__init__`` may be
    heavy): packages already imported are looked into, the others found on their path."""
    import importlib.machinery
    import importlib.util

    parts = dotted.split(".")
    search: list[str] | None = None
    for index in range(len(parts)):
        name = ".".join(parts[: index + 1])
        module = sys.modules.get(name)
        try:
            if module is not None:
                spec = module.__spec__
            elif index == 0:
                spec = importlib.util.find_spec(name)
            else:
                spec = importlib.machinery.PathFinder.find_spec(name, search)
        except (ImportError, ValueError):
            return False
        if spec is None:
            return module is not None  # a module imported without a spec: it exists
        if index < len(parts) - 1:
            locations = spec.submodule_search_locations
            if locations is None:
                return False  # not a package: it has no submodules
            search = list(locations)
    return True


def remedy(info: PluginInfo) -> str:
    """How to get rid of a broken plugin: block it, or uninstall its distribution."""
    if info.builtin:
        return ""
    name = info.name.split(" ", 1)[0]
    if info.distribution:
        return (
            f"; to run without it: -p no:{name}, or remove it: framework uninstall "
            f"{info.distribution}"
        )
    return f"; to run without it: drop -p {name}"


def _name_and_version(dist: Any) -> tuple[str | None, str | None]:
    """A distribution's name and version, read from its ``name-version.dist-info`` folder
    name when it has one (parsing METADATA costs a file read per plugin and the email
    parser's import, a large part of ``framework plugins`` with many plugins), else from
    METADATA.
    """
    if dist is None:
        return None, None
    folder = getattr(dist, "_path", None)
    folder_name = getattr(folder, "name", "")
    stem = folder_name.removesuffix(".dist-info")
    if stem != folder_name and stem.count("-") == 1:
        name, version = stem.split("-")
        return name.replace("_", "-"), version
    metadata = dist.metadata
    return metadata["Name"], metadata["Version"]


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Plugin code run while loading prints to stderr: stdout carries ``--json`` output."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _guarded_command(callback: Any, plugin: str, name: str) -> Any:
    """A plugin command whose failure is reported with the plugin's name, not a traceback."""
    if callback is None:
        return None

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        import click

        try:
            return callback(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            raise click.ClickException(
                f"command {name!r} (plugin {plugin!r}) failed: {type(exc).__name__}: {exc}"
            ) from exc

    return run


def run_registration_hook(
    pm: pluggy.PluginManager, hook_name: str, registrar: Any, done: set[str]
) -> None:
    """Call every impl of a registration hook not called yet (``done`` names those that
    were) with ``registrar``. Refusals, and impls that raise, land in ``registrar.errors``
    as (plugin, message); what plugins print goes to stderr."""
    for impl in hook_impls(pm, hook_name):
        if impl.plugin_name in done:
            continue
        done.add(impl.plugin_name)
        registrar.current_plugin = impl.plugin_name
        try:
            with _stdout_to_stderr():
                impl.call({"register": registrar})
        except (Exception, SystemExit) as exc:
            registrar.errors.append(
                (
                    impl.plugin_name,
                    f"plugin {impl.plugin_name!r}: {hook_name} raised {type(exc).__name__}: {exc}",
                )
            )


def _core_version() -> str | None:
    from framework import __version__

    return __version__
