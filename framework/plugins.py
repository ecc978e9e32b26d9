"""The plugin manager: where it is built, and the typed facade the runtime calls hooks through.

Building the manager happens in exactly one place, ``create_plugin_manager``, so that
entry-point discovery and the built-in plugins plug into it without touching the runtime.
The runtime never calls ``pm.hook.x(...)`` itself: it goes through ``RuntimeHooks``, which
calls each hookimpl on its own so that one that raises is logged with its plugin's name and
the others still run (pluggy's own caller stops at the first exception).
"""

from __future__ import annotations

import difflib
import inspect
import logging
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from framework import hookspecs

if TYPE_CHECKING:
    from framework.bus.messages import JobResponseMessage
    from framework.runner import WorkerRunner
    from framework.types import WorkerErrorData, WorkerReadyData
    from framework.worker import BaseWorker

logger = logging.getLogger("framework.plugins")

DEFAULT_PLUGINS: tuple[str, ...] = ()

NOTIFICATION_HOOKS = ("on_worker_ready", "on_job_completed", "on_worker_failed", "publish_event")
"""Hooks the runtime calls to tell plugins what happened (``publish_event`` last)."""
"""Modules of the plugins shipped inside the core, registered like any other plugin."""


def plugin_name(plugin: object) -> str:
    """A readable name for a plugin object: a module's dotted name, else its class name."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    name = getattr(plugin, "__name__", None)
    if isinstance(name, str):
        return name
    return type(plugin).__name__


def create_plugin_manager(plugins: Iterable[object] | None = None) -> pluggy.PluginManager:
    """Build a fresh plugin manager with the hook specs, the built-ins and ``plugins``.

    Args:
        plugins: plugin objects (modules or instances holding ``@hookimpl`` functions),
            registered after the built-ins, in order.

    Raises:
        ValueError: a plugin object was given twice.
        pluggy.PluginValidationError: a hookimpl does not match its spec, or names a hook
            that does not exist (the message names the plugin and the hook).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in DEFAULT_PLUGINS:
        module = __import__(module_name, fromlist=["_"])
        pm.register(module, name=module_name)
    for plugin in plugins or ():
        name = plugin_name(plugin)
        if pm.is_registered(plugin):
            raise ValueError(f"plugin {name!r} was given twice; pass each plugin object once")
        unique, n = name, 1
        while pm.get_plugin(unique) is not None:
            n += 1
            unique = f"{name}-{n}"
        pm.register(plugin, name=unique)
    _check_pending(pm)
    _refuse_wrappers(pm)
    return pm


def _refuse_wrappers(pm: pluggy.PluginManager) -> None:
    """Notification hooks call each impl on its own, so hook wrappers cannot wrap anything:
    refuse them instead of never running them."""
    for hook_name in NOTIFICATION_HOOKS:
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                raise pluggy.PluginValidationError(
                    impl.plugin,
                    f"plugin {impl.plugin_name!r}: {hook_name} is a notification hook; "
                    "wrapper=True / hookwrapper=True is not supported there, use a plain "
                    "@hookimpl",
                )


def _check_pending(pm: pluggy.PluginManager) -> None:
    """Turn a hookimpl with no matching spec into an error naming the plugin and the hook.

    pluggy's own ``check_pending`` names the plugin by its repr; ours uses the name it was
    registered under and says where the valid names are.
    """
    specs = sorted(
        name
        for name in vars(hookspecs)
        if getattr(getattr(hookspecs, name), "framework_spec", None)
    )
    for hook_name, caller in vars(pm.hook).items():
        if hook_name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            close = difflib.get_close_matches(hook_name, specs, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise pluggy.PluginValidationError(
                impl.plugin,
                f"plugin {impl.plugin_name!r} implements unknown hook {hook_name!r}{hint}; "
                f"the hooks are: {', '.join(specs)} (see docs/hooks.md)",
            )


@dataclass(frozen=True, slots=True)
class HookImpl:
    """One plugin's implementation of one hook, ready to call with the spec's arguments."""

    plugin_name: str
    hook_name: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]

    def call(self, kwargs: dict[str, Any]) -> Any:
        """Call the impl with the arguments it asked for (pluggy matches them by name)."""
        return self.function(*[kwargs[name] for name in self.argnames])


class RuntimeHooks:
    """Typed facade over the plugin manager: one method per notification hook.

    The hookimpls are read once, when the runner starts: plugins registered on the manager
    after that are seen by the next ``run()``.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._impls: dict[str, tuple[HookImpl, ...]] = {}
        for hook_name in NOTIFICATION_HOOKS[:-1]:
            self._impls[hook_name] = self.impls(hook_name)

    def impls(self, hook_name: str) -> tuple[HookImpl, ...]:
        """The hookimpls of ``hook_name`` in pluggy's call order (tryfirst first, LIFO)."""
        caller = getattr(self.pm.hook, hook_name)
        return tuple(
            HookImpl(impl.plugin_name, hook_name, impl.function, tuple(impl.argnames))
            for impl in reversed(caller.get_hookimpls())
        )

    @property
    def wants_job_completed(self) -> bool:
        """Whether any plugin implements ``on_job_completed`` (skip the call when none)."""
        return bool(self._impls["on_job_completed"])

    async def on_worker_ready(self, data: WorkerReadyData, runner: WorkerRunner) -> None:
        """Call every ``on_worker_ready`` impl."""
        await self._notify("on_worker_ready", {"data": data, "runner": runner})

    async def on_job_completed(self, response: JobResponseMessage, worker: BaseWorker) -> None:
        """Call every ``on_job_completed`` impl."""
        await self._notify("on_job_completed", {"response": response, "worker": worker})

    async def on_worker_failed(self, error: WorkerErrorData, runner: WorkerRunner) -> None:
        """Call every ``on_worker_failed`` impl."""
        await self._notify("on_worker_failed", {"error": error, "runner": runner})

    async def _notify(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        for impl in self._impls[hook_name]:
            try:
                result = impl.call(kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception(
                    "plugin %r: hookimpl %s raised; ignored (the other plugins still run)",
                    impl.plugin_name,
                    hook_name,
                )
