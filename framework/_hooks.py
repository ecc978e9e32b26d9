"""The typed facade the runtime calls notification hooks through.

pluggy's own caller stops at the first hookimpl that raises; this facade calls each impl on
its own, so one that raises is logged with its plugin's name and the others still run, and
an ``async def`` impl is awaited. ``FRAMEWORK_TRACE_HOOKS=1`` prints every call to stderr.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import pluggy

if TYPE_CHECKING:
    from framework.bus.messages import JobResponseMessage
    from framework.config import RunConfig
    from framework.jobs import Job
    from framework.llm.calls import ModelCall, ToolCall
    from framework.llm.worker import LLMWorker
    from framework.runner import WorkerRunner
    from framework.types import JobStatus, WorkerErrorData, WorkerReadyData
    from framework.worker import BaseWorker


NOTIFICATION_HOOKS = (
    "on_worker_ready",
    "on_job_completed",
    "on_worker_failed",
    "on_job_started",
    "on_job_progress",
    "add_request_headers",
    "on_request_completed",
    "on_model_call",
    "on_tool_call_started",
    "on_tool_call_completed",
    "runner_service",
    "publish_event",
)
"""Hooks the runtime calls while it runs (``publish_event`` last: it has its own buffers)."""

SYNC_ONLY_HOOKS = (
    "on_job_started",
    "on_job_progress",
    "add_request_headers",
    "on_request_completed",
    "on_model_call",
    "on_tool_call_started",
    "on_tool_call_completed",
)
"""Hooks called on the job path, in the job's (or the requester's) own task: an ``async
def`` impl could not run there, so it is refused when the plugin is registered."""

ASYNC_ONLY_HOOKS = ("runner_service",)
"""Hooks whose impls must be ``async def``."""


def env_flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether environment variable ``name`` is set to a true value: anything but empty,
    ``0``, ``false``, ``no`` or ``off`` (in any case). Every ``FRAMEWORK_*`` switch reads so."""
    value = (os.environ if environ is None else environ).get(name)
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


def tracing_enabled() -> bool:
    """Whether ``FRAMEWORK_TRACE_HOOKS`` asks for every hook call to be printed."""
    return env_flag("FRAMEWORK_TRACE_HOOKS")


def trace(line: str) -> None:
    """Print one hook-trace line to stderr."""
    print(f"[framework hook] {line}", file=sys.stderr, flush=True)


class HookImpl(NamedTuple):
    """One plugin's implementation of one hook, ready to call with the spec's arguments."""

    plugin_name: str
    hook_name: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]

    def call(self, kwargs: dict[str, Any]) -> Any:
        """Call the impl with the arguments it asked for (pluggy matches them by name)."""
        if TRACING:
            trace(f"{self.hook_name} -> plugin {self.plugin_name!r}")
        return self.function(*[kwargs[name] for name in self.argnames])


TRACING = tracing_enabled()
"""Read once at import: the trace check sits on the job path."""


def hook_impls(pm: pluggy.PluginManager, hook_name: str) -> tuple[HookImpl, ...]:
    """The hookimpls of ``hook_name`` in pluggy's call order (tryfirst first, LIFO)."""
    caller = getattr(pm.hook, hook_name)
    return tuple(
        HookImpl(impl.plugin_name, hook_name, impl.function, tuple(impl.argnames))
        for impl in reversed(caller.get_hookimpls())
    )


class RuntimeHooks:
    """Typed facade over the plugin manager: one method per notification hook.

    The hookimpls are read once, when the runner starts: plugins registered on the manager
    after that are seen by the next ``run()``.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        from framework._values import check_headers  # pydantic: not for `import framework`

        self.pm = pm
        self._check_headers = check_headers
        self._impls: dict[str, tuple[HookImpl, ...]] = {}
        for hook_name in NOTIFICATION_HOOKS[:-1]:
            self._impls[hook_name] = self.impls(hook_name)
        # Plain attributes, read on the job path: skip a call when no plugin listens.
        self.wants_job_completed = bool(self._impls["on_job_completed"])
        """Whether any plugin implements ``on_job_completed``."""
        self.wants_job_started = bool(self._impls["on_job_started"])
        """Whether any plugin implements ``on_job_started``."""
        self.wants_job_progress = bool(self._impls["on_job_progress"])
        """Whether any plugin implements ``on_job_progress``."""
        self.wants_request_headers = bool(self._impls["add_request_headers"])
        """Whether any plugin implements ``add_request_headers``."""
        self.wants_request_completed = bool(self._impls["on_request_completed"])
        """Whether any plugin implements ``on_request_completed``."""
        self.wants_model_call = bool(self._impls["on_model_call"])
        """Whether any plugin implements ``on_model_call``."""
        self.wants_tool_calls = bool(
            self._impls["on_tool_call_started"] or self._impls["on_tool_call_completed"]
        )
        """Whether any plugin implements ``on_tool_call_started`` or ``..._completed``."""

    def impls(self, hook_name: str) -> tuple[HookImpl, ...]:
        """The hookimpls of ``hook_name`` in pluggy's call order (tryfirst first, LIFO)."""
        return hook_impls(self.pm, hook_name)

    @property
    def services(self) -> tuple[HookImpl, ...]:
        """The ``runner_service`` impls, each to be run with ``run_service``."""
        return self._impls["runner_service"]

    def on_job_started(self, job: Job, worker: BaseWorker) -> None:
        """Call every ``on_job_started`` impl, in the job's own task (sync)."""
        self._notify_sync("on_job_started", {"job": job, "worker": worker})

    def on_job_progress(
        self, job: Job, worker: BaseWorker, kind: str, index: int, data: Any
    ) -> None:
        """Call every ``on_job_progress`` impl, in the job's own task (sync)."""
        self._notify_sync(
            "on_job_progress",
            {"job": job, "worker": worker, "kind": kind, "index": index, "data": data},
        )

    def add_request_headers(self, headers: dict[str, str], target: str) -> None:
        """Call every ``add_request_headers`` impl with the request's mutable headers (sync).

        What an impl leaves is checked by the rules of ``headers=`` (names, ``str`` values,
        sizes, the reserved prefix): an impl that breaks them, or raises, has its changes
        undone and is logged with its plugin's name, so every bus carries the same headers.
        """
        check_headers = self._check_headers
        kwargs = {"headers": headers, "target": target}
        for impl in self._impls["add_request_headers"]:
            before = dict(headers)
            try:
                impl.call(kwargs)
                check_headers(headers)
            except Exception:
                headers.clear()
                headers.update(before)
                _log_failure(impl, "its headers are left out (the other plugins still run)")

    def on_request_completed(
        self,
        job_id: str,
        target: str,
        status: JobStatus,
        response: dict[str, Any],
        headers: Mapping[str, str],
    ) -> None:
        """Call every ``on_request_completed`` impl, where the response is applied (sync)."""
        self._notify_sync(
            "on_request_completed",
            {
                "job_id": job_id,
                "target": target,
                "status": status,
                "response": response,
                "headers": headers,
            },
        )

    def on_model_call(self, call: ModelCall, worker: LLMWorker) -> None:
        """Call every ``on_model_call`` impl, in the run's task (sync)."""
        self._notify_sync("on_model_call", {"call": call, "worker": worker})

    def on_tool_call_started(self, call: ToolCall, worker: LLMWorker) -> None:
        """Call every ``on_tool_call_started`` impl, in the tool call's task (sync)."""
        self._notify_sync("on_tool_call_started", {"call": call, "worker": worker})

    def on_tool_call_completed(self, call: ToolCall, worker: LLMWorker) -> None:
        """Call every ``on_tool_call_completed`` impl, in the tool call's task (sync)."""
        self._notify_sync("on_tool_call_completed", {"call": call, "worker": worker})

    async def configure_runner(self, runner: WorkerRunner, config: RunConfig) -> None:
        """Call every ``configure_runner`` impl (read now: plugins registered since the
        runner was built count); one that raises is logged and skipped, but a
        ``ConfigError`` (a plugin's settings are wrong) propagates: the run must not start."""
        from framework.config import ConfigError

        for impl in self.impls("configure_runner"):
            try:
                result = impl.call({"runner": runner, "config": config})
                if inspect.isawaitable(result):
                    await result
            except ConfigError:
                raise
            except Exception:
                _log_failure(impl, "ignored (the other plugins still run)")

    async def run_service(self, impl: HookImpl, runner: WorkerRunner) -> None:
        """Run one ``runner_service`` impl until it returns or is cancelled; one that raises
        is logged with its plugin's name and the runner goes on."""
        try:
            await impl.call({"runner": runner})
        except Exception:
            _log_failure(impl, "the runner goes on without this service")

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
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception:
                _log_failure(impl, "ignored (the other plugins still run)")

    def _notify_sync(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        for impl in self._impls[hook_name]:
            try:
                impl.call(kwargs)
            except Exception:
                _log_failure(impl, "ignored (the other plugins still run)")


def _log_failure(impl: HookImpl, consequence: str) -> None:
    """Log a hookimpl that raised, with its plugin's name: the one isolation policy."""
    import logging  # only on this error path: it is not needed to start

    logging.getLogger("framework.plugins").exception(
        "plugin %r: hookimpl %s raised; %s", impl.plugin_name, impl.hook_name, consequence
    )
