"""BaseWorker: an async class whose ``@job`` methods answer job requests.

This module holds the user's side of a worker: its handlers and settings, its lifecycle
callbacks, its properties, and the means to ask other workers and to control them. Once a
runner starts it, a serving engine (``framework._serving``) reads its inbox and runs its
jobs: whatever happens to a job (it returns, raises, is cancelled, its worker ends), its
requester gets exactly one terminal response.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
from pydantic import BaseModel

from framework._handlers import HandlerTable, class_summary, job, scan_class, worker_ready
from framework._requester import Requester, RequestsJobs
from framework._serving import STOP_MARGIN, call_guarded, sole_cause
from framework.bus.base import UndeliverableError
from framework.bus.messages import (
    ActivateMessage,
    BusMessage,
    CancelMessage,
    DeactivateMessage,
    EndMessage,
    JobResponseMessage,
    JobStreamDataMessage,
    JobStreamEndMessage,
    JobStreamStartMessage,
    JobUpdateMessage,
)
from framework.jobs import Job, JobGroup, JobGroupResponse
from framework.types import (
    JobDescription,
    WorkerActivationArgs,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRegistryEntry,
)

if TYPE_CHECKING:
    from framework._serving import Serving
    from framework.registry import WorkerRegistry
    from framework.runner import WorkerRunner

__all__ = ["ACTIVATION_WAIT", "STOP_MARGIN", "BaseWorker", "job", "sole_cause", "worker_ready"]

logger = logging.getLogger("framework.worker")

ACTIVATION_WAIT = 10.0
"""Seconds activate_worker / deactivate_worker / handoff_to wait for the target to be ready."""


_REQUESTER_CALLBACKS = (
    "on_job_response",
    "on_job_update",
    "on_job_completed",
    "on_job_error",
    "on_job_cancelled",
    "on_job_stream_start",
    "on_job_stream_data",
    "on_job_stream_end",
    "on_job_group_completed",
)


class BaseWorker(RequestsJobs):
    """A worker: job handlers, lifecycle callbacks, and the means to ask other workers.

    Args:
        name: the worker's unique name: the address jobs are sent to.
        active: whether it starts active. An inactive worker refuses job requests (each
            ends ``ERROR`` at once, saying so) until activated; it still takes activate,
            deactivate, end, cancel, and replies to jobs it requested itself.
        bridged: marks a worker connected to something outside the bus (shown in the
            registry entry; no other effect in the core).
    """

    activation_args_type: ClassVar[type[WorkerActivationArgs]] = WorkerActivationArgs
    """The class the activation arguments are parsed into (``from_dict``)."""

    config_model: ClassVar[type[BaseModel] | None] = None
    """A pydantic model for the worker's settings (the ``config`` table of a ``[[workers]]``
    entry); the validated instance is ``self.config``. None: the worker takes no settings."""

    worker_name: ClassVar[str | None] = None
    """The name ``register_workers`` registers the class under by default."""

    _handler_table: ClassVar[HandlerTable] = HandlerTable()
    """The class's handlers and watches (built by ``__init_subclass__``)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        inherited = HandlerTable()
        for base in reversed(cls.__mro__[1:]):
            if issubclass(base, BaseWorker):
                inherited.handlers.update(base._handler_table.handlers)
                inherited.ready_watches.update(base._handler_table.ready_watches)
        # Where the class statement ran (past a metaclass's ``__new__``): typed payload
        # models defined in a function are found there (annotations are strings under
        # ``from __future__ import annotations``).
        caller: Any = sys._getframe(1)
        while caller is not None and caller.f_code.co_name in ("__init_subclass__", "__new__"):
            caller = caller.f_back
        localns: Mapping[str, Any] = caller.f_locals if caller is not None else {}
        handlers, watches = scan_class(cls, inherited, localns)
        cls._handler_table = HandlerTable(
            handlers,
            watches,
            observes_jobs=any(
                getattr(cls, n) is not getattr(BaseWorker, n) for n in _REQUESTER_CALLBACKS
            ),
            observes_requests=cls.on_job_request is not BaseWorker.on_job_request,
            summary=class_summary(cls),
        )

    def __init__(
        self,
        name: str,
        *,
        active: bool = True,
        bridged: bool = False,
        config: BaseModel | dict[str, Any] | None = None,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ValueError(f"a worker needs a non-empty string name, got {name!r}")
        self.config: Any = self._validate_config(config)
        """The worker's settings: an instance of ``config_model`` (None without one)."""
        self._name = name
        self._active = active
        self._bridged = bridged
        self._parent: BaseWorker | None = None
        self._children: list[BaseWorker] = []
        self._activation_args: WorkerActivationArgs | None = None
        self._runner: WorkerRunner | None = None
        self._serving: Serving | None = None
        """The serving engine of the current (or last) start; None before the first."""
        self._early_watches: set[str] = set()
        """Workers ``watch_worker`` was asked for before this one started."""

    @classmethod
    def _validate_config(cls, config: BaseModel | dict[str, Any] | None) -> Any:
        """Validate ``config`` with ``config_model`` (pydantic ``ValidationError`` if bad)."""
        model = cls.config_model
        if model is None:
            if config:
                keys = sorted(config) if isinstance(config, dict) else type(config).__name__
                raise TypeError(  # the keys only: values may be secrets
                    f"worker class {cls.__name__} takes no config (it has no config_model); "
                    f"got {keys}"
                )
            return None
        if isinstance(config, model):
            return config
        data = config.model_dump() if isinstance(config, BaseModel) else (config or {})
        return model.model_validate(data)

    # ----------------------------------------------------------------- properties

    @property
    def name(self) -> str:
        """The worker's unique name."""
        return self._name

    @property
    def parent(self) -> BaseWorker | None:
        """The worker this one was added to with ``add_worker``, if any."""
        return self._parent

    @property
    def children(self) -> list[BaseWorker]:
        """Workers added to this one; they end and cancel with it."""
        return list(self._children)

    @property
    def active(self) -> bool:
        """Whether the worker takes job requests."""
        return self._active

    @property
    def activation_args(self) -> WorkerActivationArgs | None:
        """The arguments of the latest activation (None before the first)."""
        return self._activation_args

    @property
    def bridged(self) -> bool:
        """Whether the worker is connected to something outside the bus."""
        return self._bridged

    @property
    def ready(self) -> bool:
        """Whether the worker has started and is registered."""
        return self._serving is not None and self._serving.ready

    @property
    def started_at(self) -> float | None:
        """Wall-clock time (``time.time()``) at which it became ready (None before)."""
        return None if self._serving is None else self._serving.started_at

    @property
    def runner(self) -> WorkerRunner:
        """The runner hosting this worker (RuntimeError before it was added to one)."""
        if self._runner is None:
            raise RuntimeError(
                f"worker {self._name!r} is not on a runner yet: add it with "
                "'await runner.add_worker(worker)'"
            )
        return self._runner

    @property
    def registry(self) -> WorkerRegistry:
        """The registry of the hosting runner."""
        return self.runner.registry

    @property
    def active_jobs(self) -> dict[str, Job]:
        """Jobs this worker is running now, by job id."""
        return {} if self._serving is None else dict(self._serving.running)

    @property
    def job_groups(self) -> dict[str, JobGroup]:
        """Job groups this worker requested that are still open, by job id."""
        requester = None if self._serving is None else self._serving.requester
        return {} if requester is None else requester.open_groups()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r})"

    # ----------------------------------------------------------------- description

    def describe(self) -> list[JobDescription]:
        """The jobs this worker answers: each handler's name (None for the default one),
        docstring, and the JSON schemas of its typed payload and response (None where not
        typed). A default handler without a docstring is described by the first paragraph
        of the worker class's own docstring, so that tools and skills made from it say
        what the worker does.

        The registry keeps it (``WorkerReadyData.jobs``), network buses carry it to other
        runners, and consumers such as an assistant's worker tools read it. A subclass may
        override it to describe jobs its handlers take in a form of their own.
        """
        return list(self._handler_table.describe())

    # ----------------------------------------------------------------- background tasks

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``func(*args)`` as a background task owned by this worker.

        The task is cancelled when the worker ends; an exception it raises goes to
        ``on_error`` (and is logged), and the worker carries on.

        Raises:
            RuntimeError: the worker is not running (call it from ``on_ready`` on, not from
                ``__init__``).
        """
        serving = self._serving
        if serving is None:
            raise RuntimeError(
                f"worker {self._name!r} is not running: start background tasks from on_ready "
                "or later, while the worker runs"
            )
        serving.start_soon(func, *args, name=f"{self._name}: {_callable_name(func)}")

    # ----------------------------------------------------------------- requesting work

    def _require_requester(self) -> Requester:
        serving = self._serving
        requester = None if serving is None or serving.finished.is_set() else serving.requester
        if requester is None:
            raise RuntimeError(
                f"worker {self._name!r} is not running: it can request jobs once its runner "
                "has started it"
            )
        return requester

    # ----------------------------------------------------------------- control

    async def add_worker(self, child: BaseWorker) -> None:
        """Make ``child`` a child of this worker: it starts after it and ends before it."""
        if child._parent is not None:
            raise ValueError(f"worker {child.name!r} has a parent already ({child._parent.name!r})")
        if child is self:
            raise ValueError(f"worker {self._name!r} cannot be its own child")
        if child._runner is not None:
            raise ValueError(f"worker {child.name!r} is on runner {child._runner.name!r} already")
        runner = self._runner
        if runner is None:
            child._parent = self
            self._children.append(child)
        else:  # hosted: started now when this worker is ready, else when it starts
            await runner.add_worker(child, parent=self)

    async def activate_worker(
        self, name: str, args: WorkerActivationArgs | dict[str, Any] | None = None
    ) -> None:
        """Activate worker ``name`` (once it is ready), passing ``args`` to its ``on_activated``."""
        data = args.to_dict() if isinstance(args, WorkerActivationArgs) else args
        await self._send_control(ActivateMessage.build(source=self._name, target=name, args=data))

    async def deactivate_worker(self, name: str) -> None:
        """Deactivate worker ``name``."""
        await self._send_control(DeactivateMessage.build(source=self._name, target=name))

    async def handoff_to(
        self, name: str, activation_args: WorkerActivationArgs | dict[str, Any] | None = None
    ) -> None:
        """Deactivate this worker, then activate ``name``: two workers are never both active."""
        await self._set_active(False, None)
        await self.activate_worker(name, activation_args)

    async def watch_worker(self, name: str) -> None:
        """Get ``on_worker_ready`` when ``name`` is ready (at once if it is already), and
        ``on_worker_error`` if it fails."""
        serving = self._serving
        if serving is None or serving.finished.is_set():
            _ = self.runner  # not on a runner: this raises, saying how to add it
            self._early_watches.add(name)  # watched from the moment it starts
            return
        serving.watched.add(name)
        await self.registry.watch(name, serving.watch_handler(self.on_worker_ready))

    async def end(self, reason: str | None = None, grace_period: float | None = None) -> None:
        """End gracefully: children first, running jobs get ``grace_period`` (default: the
        runner's) to finish, then are cancelled. Returns at once; the ending runs in the
        background (``await runner.end()`` waits for everything)."""
        await self._send_control(
            EndMessage.build(
                source=self._name, target=self._name, reason=reason or "", grace_period=grace_period
            )
        )

    async def cancel(self, reason: str | None = None) -> None:
        """Stop now: children and running jobs are cancelled (requesters get ``CANCELLED``)."""
        await self._send_control(
            CancelMessage.build(source=self._name, target=self._name, reason=reason or "")
        )

    async def _send_control(self, message: BusMessage) -> None:
        if message.target == self._name and self._serving is not None:
            self._serving.put_control(message)
            return
        runner = self.runner
        if message.target not in runner.registry:
            with anyio.move_on_after(ACTIVATION_WAIT):
                await runner.registry.wait_ready(message.target)
            if message.target not in runner.registry:
                raise LookupError(
                    f"worker {self._name!r}: no worker named {message.target!r} became ready "
                    f"within {ACTIVATION_WAIT:g} s, so it cannot be sent {message.type!r}; "
                    "check the name (runner.registry lists the ready workers)"
                )
        try:
            await runner.bus.send(message)
        except UndeliverableError:
            logger.warning(
                "%s: %s for %r undeliverable (gone)", self._name, message.type, message.target
            )

    # ----------------------------------------------------------------- callbacks (override)

    async def on_ready(self) -> None:
        """Called once when the worker starts, before it is registered. Raising fails it."""

    async def on_finished(self) -> None:
        """Called once when the worker has ended and left the registry."""

    async def on_error(self, error: BaseException) -> None:
        """Called when one of this worker's callbacks raised (the worker carries on)."""

    async def on_activated(self, args: WorkerActivationArgs | None) -> None:
        """Called on each activation, with its arguments (``activation_args_type``)."""

    async def on_deactivated(self) -> None:
        """Called when the worker is deactivated (including by its own ``handoff_to``)."""

    async def on_worker_ready(self, data: WorkerReadyData) -> None:
        """A worker this one watches (``watch_worker``) became ready."""

    async def on_worker_error(self, data: WorkerErrorData) -> None:
        """A worker this one watches failed."""

    async def on_job_request(self, job: Job) -> None:
        """A job request arrived and is about to run (before its handler)."""

    async def on_job_update_requested(self, job: Job) -> None:
        """The requester asked for an update on a running job; sends status and elapsed time."""
        await job.update({"status": "running", "elapsed": time.monotonic() - job.started_at})

    async def on_job_response(self, response: JobResponseMessage) -> None:
        """A job this worker requested ended (any status); called before the specific one."""

    async def on_job_completed(self, result: JobResponseMessage) -> None:
        """A job this worker requested ended ``COMPLETED``; ``result.response`` is the dict."""

    async def on_job_error(self, response: JobResponseMessage) -> None:
        """A job this worker requested ended ``FAILED`` or ``ERROR``."""

    async def on_job_cancelled(self, response: JobResponseMessage) -> None:
        """A job this worker requested ended ``CANCELLED``."""

    async def on_job_update(self, update: JobUpdateMessage) -> None:
        """A progress update arrived for a job this worker requested."""

    async def on_job_stream_start(self, message: JobStreamStartMessage) -> None:
        """A job this worker requested started streaming."""

    async def on_job_stream_data(self, message: JobStreamDataMessage) -> None:
        """One stream item arrived for a job this worker requested."""

    async def on_job_stream_end(self, message: JobStreamEndMessage) -> None:
        """A job this worker requested finished streaming."""

    async def on_job_group_completed(self, response: JobGroupResponse) -> None:
        """Every member of a group this worker requested has answered."""

    # ----------------------------------------------------------------- state the engine sets

    def _publish_entry(self) -> None:
        runner = self._runner
        if runner is not None:
            runner.registry.set_entry(
                WorkerRegistryEntry(
                    name=self._name,
                    parent=self._parent.name if self._parent else None,
                    active=self._active,
                    bridged=self._bridged,
                    started_at=self.started_at,
                )
            )

    async def _set_active(self, active: bool, args: WorkerActivationArgs | None) -> None:
        was_active = self._active
        self._active = active
        if active:
            self._activation_args = args
        self._publish_entry()
        if active:
            await self._guarded(self.on_activated, args)
        elif was_active:
            await self._guarded(self.on_deactivated)

    async def _guarded(self, method: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a callback of this worker; an exception goes to ``on_error``."""
        await call_guarded(self, method, *args)


def _callable_name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))
