"""WorkerRunner: owns the bus, the registry, the workers, the plugins and the events of a run.

The runner is a tree of task groups: an outer one for the event publishers and its own
inbox, an inner one for the workers (each worker owns a task group for its running jobs).
Ending goes top-down: roots first, each parent ends its children before itself, running
jobs get a grace period and are then cancelled; the publishers outlive the workers so they
see every event of the run, the runner's END included.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Literal

import anyio
import pluggy
from anyio.abc import TaskGroup, TaskStatus

from framework._hooks import RuntimeHooks
from framework._publishing import EventPublisher, PublisherStats
from framework._requester import REPLY_TYPES, Requester, RequestsJobs
from framework._runtime import Runtime
from framework._serving import Serving
from framework.bus.base import Bus, Inbox
from framework.bus.local import LocalBus
from framework.bus.messages import (
    EndMessage,
    WorkerLostMessage,
)
from framework.bus.network.base import NetworkBus
from framework.config import LLMConfig
from framework.events import ContentType, EventModel, EventType
from framework.plugins import (
    create_plugin_manager,
    register_plugin,
    run_registration_hook,
)
from framework.registrars import BackendRegistrar, RouteRegistrar, ToolSourceRegistrar
from framework.registry import WorkerRegistry
from framework.types import JobStatus, WorkerErrorData, WorkerReadyData
from framework.worker import BaseWorker, sole_cause

logger = logging.getLogger("framework.runner")

_State = Literal["new", "starting", "running", "ending", "ended"]

_RESPONSE_EVENTS = {
    JobStatus.COMPLETED: (EventType.RESULT, ContentType.DATA, False),
    JobStatus.FAILED: (EventType.ERROR, ContentType.ERROR, True),
    JobStatus.ERROR: (EventType.ERROR, ContentType.ERROR, True),
    JobStatus.CANCELLED: (EventType.INTERRUPTED, ContentType.STATE, False),
}


class WorkerRunner(RequestsJobs):
    """Hosts workers on a bus and runs them until ``end()``, ``cancel()`` or a signal.

    Args:
        name: the runner's name (default: ``runner-`` and 8 hex digits). It is also the
            address jobs submitted by the runner itself are answered to.
        bus: the bus (default: a new in-process ``LocalBus``).
        plugins: plugin objects (modules or instances holding ``@hookimpl`` functions)
            registered for this runner on top of the built-ins. Installed entry-point
            plugins are not loaded here: the ``framework`` command asks for them.
        plugin_manager: use this pluggy manager (built by ``create_plugin_manager`` or a
            ``PluginHost``) instead of a new one; ``plugins`` are then registered on it.
        grace_period: seconds running jobs get to finish when the runner or a worker ends
            gracefully, before they are cancelled.
        event_buffer_size: events each publisher may have waiting before it loses new ones.
        event_drain_timeout: seconds the publishers get, once the workers have ended, to
            deliver what is still buffered.
        llm_backends: the LLM backends (``register_llm_backends``),
        routes: the ASGI apps (``register_routes``) and
        tool_sources: the LLM workers' tool sources (``register_tool_sources``) that a
            plugin host collected (the ``framework`` command hands its own over); None
            collects them from this runner's plugins when first asked.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        bus: Bus | None = None,
        plugins: Iterable[object] | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        grace_period: float = 5.0,
        event_buffer_size: int = 1000,
        event_drain_timeout: float = 1.0,
        llm_backends: BackendRegistrar | None = None,
        routes: RouteRegistrar | None = None,
        tool_sources: ToolSourceRegistrar | None = None,
    ) -> None:
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0 seconds, got {grace_period}")
        if event_buffer_size < 1:
            raise ValueError(f"event_buffer_size must be at least 1, got {event_buffer_size}")
        self.name = name or f"runner-{uuid.uuid4().hex[:8]}"
        self.bus: Bus = bus if bus is not None else LocalBus()
        self.registry = WorkerRegistry(self.name)
        if plugin_manager is None:
            self.plugin_manager = create_plugin_manager(plugins)
        else:  # the plugin host's manager (``framework run``): entry-point plugins included
            self.plugin_manager = plugin_manager
            for plugin in plugins or ():
                register_plugin(plugin_manager, plugin)
        self.hooks = RuntimeHooks(self.plugin_manager)
        self.grace_period = grace_period
        self.event_buffer_size = event_buffer_size
        self.event_drain_timeout = event_drain_timeout
        self.llm_config = LLMConfig()
        """Default LLM backend and options for LLM workers (``[llm]`` of the run config)."""
        self.run_id = ""
        """Shared by every event of one ``run()``; set when the run starts."""
        self._publisher = EventPublisher((), event_buffer_size)
        self._runtime: Runtime | None = None
        self._workers: dict[str, BaseWorker] = {}
        self._state: _State = "new"
        self._stop_reason = ""
        self._stop_cancel = False
        self._stop_requested: anyio.Event | None = None
        self._ended: anyio.Event | None = None
        self._workers_tg: TaskGroup | None = None
        self._service_tg: TaskGroup | None = None
        self._host_tg: TaskGroup | None = None
        self._requester: Requester | None = None
        self._inbox: Inbox | None = None
        self._waiting_index: dict[str, set[Requester]] = {}
        self._failed: dict[str, WorkerErrorData] = {}
        self._routes = routes
        self._llm_backends = llm_backends
        self._tool_sources = tool_sources
        self._services: anyio.CancelScope | None = None
        self.registry.add_gone_listener(self._on_worker_gone)

    def add_plugin(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object (a module or an instance holding ``@hookimpl``
        functions) for this runner: the door ``configure_runner`` impls use.

        It is validated as ``WorkerRunner(plugins=[...])`` validates: an unknown hook name
        is refused naming the closest hook, an ``async def`` impl of a sync-only hook (and
        a plain one of ``runner_service``) is refused. Hooks are read when the runner
        starts: a plugin added while it runs is seen by the next run.

        Returns:
            The name it was registered under (``name``, else its module or class name,
            made unique with ``-2``, ``-3``...).

        Raises:
            ValueError: the same object was added twice, or ``name`` is taken.
            pluggy.PluginValidationError: a hookimpl does not fit its spec (the message
                names the plugin and the hook).
        """
        return register_plugin(self.plugin_manager, plugin, name)

    @property
    def routes(self) -> RouteRegistrar:
        """The ASGI apps this runner's plugins mount in the HTTP API (``register_routes``),
        by prefix (``routes.entries``)."""
        if self._routes is None:
            self._routes = RouteRegistrar()
            run_registration_hook(self.plugin_manager, "register_routes", self._routes, set())
        return self._routes

    @property
    def events_enabled(self) -> bool:
        """Whether any ``publish_event`` impl listens in this run (no events are built
        otherwise)."""
        return self._runtime is not None and self._runtime.events_enabled

    def listen_events(self, listener: Callable[[EventModel], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every runtime event from now on, until the returned
        function is called; for in-process consumers that listen only some of the time.

        Unlike a ``publish_event`` impl, which makes the runner build every event of the
        run, a listener costs nothing while none is registered. It is called inline on the
        event loop, on the job path: it must be quick (hand the event to a buffer), must
        not block, and should not raise (one that raises is logged and removed).

        Raises:
            RuntimeError: the runner is not running.
        """
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError("listen_events needs a running runner (inside 'async with')")
        stop = self._publisher.listen(listener)
        runtime.events_enabled = True

        def remove() -> None:
            stop()
            runtime.events_enabled = self._publisher.enabled

        return remove

    @property
    def llm_backends(self) -> BackendRegistrar:
        """The LLM backends registered by this runner's plugins (built-ins included)."""
        if self._llm_backends is None:
            self._llm_backends = BackendRegistrar()
            run_registration_hook(
                self.plugin_manager, "register_llm_backends", self._llm_backends, set()
            )
        return self._llm_backends

    @property
    def tool_sources(self) -> ToolSourceRegistrar:
        """Where this runner's LLM workers get their ``tools = ["PREFIX:NAME"]`` from
        (``register_tool_sources``), by prefix."""
        if self._tool_sources is None:
            self._tool_sources = ToolSourceRegistrar()
            run_registration_hook(
                self.plugin_manager, "register_tool_sources", self._tool_sources, set()
            )
        return self._tool_sources

    # ----------------------------------------------------------------- workers

    @property
    def workers(self) -> dict[str, BaseWorker]:
        """The workers this runner hosts (added and not yet ended), by name."""
        return dict(self._workers)

    @property
    def failed_workers(self) -> dict[str, WorkerErrorData]:
        """Workers that failed to start in this run (their ``on_ready`` raised), by name."""
        return dict(self._failed)

    async def add_worker(self, worker: BaseWorker, *, parent: BaseWorker | None = None) -> None:
        """Host ``worker`` (and the children added to it). Before ``run()`` it starts with
        the runner; after, it starts now and this returns once it is ready.

        ``parent``: host it as a child of that worker (which must be on this runner), as
        ``parent.add_worker(worker)`` does: it starts once its parent is ready and ends
        with it.

        Raises:
            ValueError: a worker of that name is on this runner already (or the name is
                the runner's own).
            RuntimeError: the runner has ended.
        """
        if self._state in ("ending", "ended"):
            raise RuntimeError(f"runner {self.name!r} has ended; it takes no more workers")
        if worker._runner is not None:
            raise ValueError(f"worker {worker.name!r} is on runner {worker._runner.name!r} already")
        if parent is not None:
            if parent._runner is not self:
                raise ValueError(f"parent {parent.name!r} is not on runner {self.name!r}")
            await self._add_child(parent, worker, start=parent.ready)
            return
        tree = _with_descendants(worker)
        self._check_new_names(tree)
        for member in tree:
            member._runner = self
            self._workers[member.name] = member
        if self._state in ("starting", "running") and self._workers_tg is not None:
            await self._start_worker(worker)

    def _check_new_names(self, workers: list[BaseWorker]) -> None:
        seen: set[str] = set()
        for worker in workers:
            name = worker.name
            if name == self.name:
                raise ValueError(
                    f"worker name {name!r} is the runner's own name; pick another name"
                )
            if name in self._workers or name in seen:
                raise ValueError(
                    f"a worker named {name!r} is on runner {self.name!r} already; "
                    "worker names must be unique"
                )
            seen.add(name)

    async def _add_child(self, parent: BaseWorker, child: BaseWorker, *, start: bool) -> None:
        """Host ``child`` under ``parent``; start it now when ``start`` (else the parent will)."""
        tree = _with_descendants(child)
        self._check_new_names(tree)
        child._parent = parent
        parent._children.append(child)
        for member in tree:
            member._runner = self
            self._workers[member.name] = member
        if start:
            await self._start_worker(child)

    async def _start_worker(self, worker: BaseWorker) -> None:
        assert self._workers_tg is not None
        assert self._runtime is not None
        serving = Serving(worker, self._runtime)
        await self._workers_tg.start(serving.run, name=f"worker {worker.name}")

    def _worker_failed(self, worker: BaseWorker, exc: BaseException) -> WorkerErrorData:
        """Record a worker whose ``on_ready`` raised (log, ``failed_workers``, its event)."""
        logger.error("worker %r failed to start", worker.name, exc_info=exc)
        error = WorkerErrorData(worker_name=worker.name, error=f"{type(exc).__name__}: {exc}")
        self._failed[worker.name] = error
        if self._runtime is not None and self._runtime.events_enabled:
            self._runtime.worker_failed_event(worker.name, error)
        return error

    async def _tell_failed(self, error: WorkerErrorData) -> None:
        """``on_worker_error`` of the local workers watching it, then ``on_worker_failed``."""
        if self._runtime is not None:
            for serving in list(self._runtime.servings.values()):
                serving.tell_failed(error)
        await self.hooks.on_worker_failed(error, self)

    # ----------------------------------------------------------------- for network buses

    async def remote_worker_ready(self, data: WorkerReadyData) -> None:
        """A network bus saw worker ``data.worker_name`` ready on runner ``data.runner``.

        Registers it (requests waiting for it are sent now) and, when it is new here,
        calls the watchers and ``on_worker_ready``.
        """
        if await self.registry.register(data):
            await self.hooks.on_worker_ready(data, self)

    async def remote_worker_gone(self, name: str, reason: str, *, failed: bool) -> None:
        """A network bus saw remote worker ``name`` leave: it ended (``failed=False``), or
        its runner went silent or unreachable (``failed=True``).

        Every job still open to it here ends ERROR with ``reason``; a failure also calls
        the watchers' ``on_worker_error`` and ``on_worker_failed``.
        """
        known = self.registry.get(name)
        if known is None or known.runner == self.name:
            return
        await self.registry.unregister(name, reason)
        if failed:
            await self._tell_failed(WorkerErrorData(worker_name=name, error=reason))

    def _worker_finished(self, worker: BaseWorker) -> None:
        if self._workers.get(worker.name) is worker:
            del self._workers[worker.name]

    def _on_worker_gone(self, name: str, reason: str) -> None:
        """Tell every local requester still waiting on ``name`` (after what it has queued)."""
        for requester in list(self._waiting_index.get(name, ())):
            notice = WorkerLostMessage.build(
                source=name, target=requester.address, worker_name=name, reason=reason
            )
            with contextlib.suppress(anyio.ClosedResourceError):
                requester.inbox.put(notice)

    # ----------------------------------------------------------------- jobs from the runner

    def _require_requester(self) -> Requester:
        if self._requester is None or self._state == "ended":
            raise RuntimeError(
                f"runner {self.name!r} is not running: use it as 'async with WorkerRunner() as "
                "runner:' or inside run()"
            )
        return self._requester

    # ----------------------------------------------------------------- events

    def event_stats(self) -> dict[str, PublisherStats]:
        """Per publisher (by plugin name): events delivered, dropped (buffer full), failed."""
        return self._publisher.stats()

    # ----------------------------------------------------------------- running

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until ``end()``, ``cancel()``, SIGINT or SIGTERM (graceful; a second signal
        cancels). Signals are watched from before the first worker starts.

        ``await task_group.start(runner.run)`` returns once the workers are ready.
        """
        async with anyio.create_task_group() as tg:
            if threading.current_thread() is threading.main_thread():
                await tg.start(self._end_on_signals)
            async with self:
                assert self._ended is not None
                task_status.started()
                await self._ended.wait()
            tg.cancel_scope.cancel()

    async def _end_on_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if self._state == "new":
                    # During start-up: the run stops as soon as it has started.
                    self._stop_reason = f"{name} received during start-up"
                elif self._state == "ending" or self._stop_reason:
                    logger.warning("%s again: cancelling runner %r now", name, self.name)
                    self._request_stop(cancel=True, reason=f"{name} received twice")
                else:
                    self._say_ending(name)
                    self._request_stop(cancel=False, reason=f"{name} received")

    def _say_ending(self, signal_name: str) -> None:
        """The first signal: say what the graceful end waits for, and that a second signal
        cancels it (a warning when jobs are running, so ``framework run`` prints it)."""
        runtime = self._runtime
        running = (
            {s.name: len(s.running) for s in runtime.servings.values() if s.running}
            if runtime is not None
            else {}
        )
        if not running:
            logger.info("%s: ending runner %r gracefully", signal_name, self.name)
            return
        jobs = sum(running.values())
        where = ", ".join(f"{name}: {count}" for name, count in sorted(running.items()))
        logger.warning(
            "%s: ending runner %r: waiting up to %g s for %d running job%s (%s); "
            "press Ctrl-C again (or send SIGTERM) to cancel %s now",
            signal_name,
            self.name,
            self.grace_period,
            jobs,
            "" if jobs == 1 else "s",
            where,
            "it" if jobs == 1 else "them",
        )

    async def __aenter__(self) -> WorkerRunner:
        if self._state != "new":
            raise RuntimeError(f"runner {self.name!r} has run already; create a new WorkerRunner")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        try:
            await tg.start(self._serve, name=f"runner {self.name}")
        except BaseException as exc:
            self._request_stop(cancel=True, reason="the runner failed to start")
            await tg.__aexit__(None, None, None)
            cause = sole_cause(exc)  # task groups nest; say what went wrong
            if cause is exc:
                raise
            raise cause from None
        self._host_tg = tg
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._host_tg is not None and self._ended is not None
        if exc is None:
            self._request_stop(cancel=False, reason="the runner's 'async with' block ended")
            return await self._host_tg.__aexit__(None, None, None)
        self._request_stop(
            cancel=True, reason=f"{type(exc).__name__} raised in the runner's 'async with' block"
        )
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            return await self._host_tg.__aexit__(exc_type, exc, tb)
        # Stop everything, then let the block's exception propagate as it is (anyio's task
        # group would wrap it in an ExceptionGroup).
        with anyio.CancelScope(shield=True):
            await self._ended.wait()
        await self._host_tg.__aexit__(None, None, None)
        return False

    async def end(self, reason: str | None = None) -> None:
        """End gracefully and wait until everything has stopped.

        Roots end first and each parent ends its children before itself; running jobs get
        ``grace_period`` seconds, then are cancelled. Every requester gets an outcome.
        """
        self._request_stop(cancel=False, reason=reason or "runner ended")
        if self._ended is not None:
            await self._ended.wait()

    async def cancel(self, reason: str | None = None) -> None:
        """Stop now: every running job is cancelled (requesters get ``CANCELLED``)."""
        self._request_stop(cancel=True, reason=reason or "runner cancelled")
        if self._ended is not None:
            await self._ended.wait()

    def _request_stop(self, *, cancel: bool, reason: str) -> None:
        if self._state in ("new", "ended") or self._stop_requested is None:
            return
        if not self._stop_reason:
            self._stop_reason = reason
        service = self._service_tg
        if not self._stop_requested.is_set() and service is not None:
            service.start_soon(self._watchdog, name="runner watchdog")
        if cancel and not self._stop_cancel:
            self._stop_cancel = True
            if service is not None:
                service.start_soon(self._force_cancel_all, self._stop_reason)
        self._stop_requested.set()

    async def _watchdog(self) -> None:
        """A graceful end that overruns its grace period (a worker stuck in a callback or in
        ``on_ready``) is turned into a cancel, so ``end()`` always returns."""
        await anyio.sleep(self.grace_period + 1.0)
        if self._state != "ended":
            stuck = ", ".join(sorted(self._workers)) or "none"
            logger.warning(
                "runner %r: workers still running %.1f s after end() (%s); cancelling them",
                self.name,
                self.grace_period + 1.0,
                stuck,
            )
            await self._force_cancel_all(f"runner {self.name!r} ended (grace period over)")

    async def _force_cancel_all(self, reason: str) -> None:
        """Cancel every worker now, children before parents, whatever its loop is doing."""
        if self._runtime is None:
            return
        for serving in reversed(list(self._runtime.servings.values())):
            await serving.force_cancel(reason)

    def _end_roots(self) -> None:
        """Ask every root worker to end gracefully (each ends its children first)."""
        if self._runtime is None:
            return
        for serving in list(self._runtime.servings.values()):
            if serving.worker.parent is not None:
                continue
            serving.put_control(
                EndMessage.build(
                    source=self.name,
                    target=serving.name,
                    reason=self._stop_reason,
                    grace_period=self.grace_period,
                )
            )

    async def _serve(self, *, task_status: TaskStatus[None]) -> None:
        self._state = "starting"
        self.run_id = str(uuid.uuid4())
        self.hooks = RuntimeHooks(self.plugin_manager)
        self._publisher = EventPublisher(self.hooks.impls("publish_event"), self.event_buffer_size)
        self._runtime = runtime = Runtime(
            self, self.hooks, self._publisher, self.run_id, self._waiting_index
        )
        self._stop_requested = anyio.Event()
        self._ended = anyio.Event()
        if self._stop_reason:  # asked to stop before the run started
            self._stop_requested.set()
        try:
            async with anyio.create_task_group() as host:
                self._service_tg = host
                self._publisher.start(host)
                try:
                    network = self.bus if isinstance(self.bus, NetworkBus) else None
                    if network is not None:  # it reports remote workers to this runner
                        network.attach(self)
                    await self.bus.start()
                    if network is not None:  # its readers and heartbeats
                        await host.start(network.serve, name="bus")
                    self._inbox = self.bus.subscribe(self.name)
                    self._requester = runtime.requester(self.name, host.start_soon, self._inbox)
                    host.start_soon(self._receive_loop, self._inbox)
                    await self._run_workers(task_status)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._finish()
                    host.cancel_scope.cancel()
        finally:
            self._state = "ended"
            self._ended.set()

    async def _run_workers(self, task_status: TaskStatus[None]) -> None:
        assert self._stop_requested is not None
        async with anyio.create_task_group() as workers_tg:
            self._workers_tg = workers_tg
            if self.events_enabled:
                assert self._runtime is not None
                self._runtime.runner_started()
            for worker in [w for w in self._workers.values() if w.parent is None]:
                if self._stop_requested.is_set():
                    break  # asked to stop during start-up: start no more
                await self._start_worker(worker)
            started = self._runtime.servings if self._runtime is not None else {}
            for name in list(self._workers):
                if name not in started:  # never started (or failed and gone): nothing to end
                    del self._workers[name]
            if not self._stop_requested.is_set():
                self._state = "running"
                await self._start_services()
            task_status.started()
            await self._stop_requested.wait()
            self._state = "ending"
            if not self._stop_cancel:
                self._end_roots()
            # Workers end themselves (children first); this block waits for their tasks.
            # runner.cancel() and the watchdog cancel them from the service task group.

    async def _start_services(self) -> None:
        """Start every ``runner_service`` impl in a task group of its own, in the runner's
        service task group; ``_finish`` cancels them once the workers have ended."""
        impls = self.hooks.services
        if not impls or self._service_tg is None:
            return

        async def run_services(*, task_status: TaskStatus[None]) -> None:
            with anyio.CancelScope() as scope:
                self._services = scope
                async with anyio.create_task_group() as services:
                    for impl in impls:
                        services.start_soon(
                            self.hooks.run_service, impl, self, name=f"service {impl.plugin_name}"
                        )
                    task_status.started()

        await self._service_tg.start(run_services, name="runner services")

    async def _finish(self) -> None:
        """After the workers: end the runner's own open jobs and services, the END event,
        the publishers."""
        if self._services is not None:
            self._services.cancel()
        if self._requester is not None:
            await self._requester.close(f"runner {self.name!r} ended")
        if self._runtime is not None and self._runtime.events_enabled:
            self._runtime.runner_ended(self._stop_reason)
        await self._publisher.close(self.event_drain_timeout)
        self.bus.unsubscribe(self.name)
        await self.bus.stop()

    async def _receive_loop(self, inbox: Inbox) -> None:
        requester = self._requester
        assert requester is not None
        while True:
            try:
                message = await inbox.receive()
            except anyio.EndOfStream:
                return
            if type(message) in REPLY_TYPES:  # the runner's address takes replies only
                await requester.deliver(message)
            else:
                logger.debug(
                    "runner %r: ignored %s from %s", self.name, message.type, message.source
                )


def _with_descendants(worker: BaseWorker) -> list[BaseWorker]:
    tree = [worker]
    for child in worker._children:
        tree.extend(_with_descendants(child))
    return tree
