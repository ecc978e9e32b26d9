"""BaseWorker: an async class whose ``@job`` methods answer job requests.

A worker runs under a ``WorkerRunner``: one task reads its inbox and dispatches each
message through a table keyed by message class; every job request runs in its own task in
the worker's task group, so one slow job never blocks another. Whatever happens to a job
(it returns, raises, is cancelled, its worker ends), its requester gets exactly one
terminal response.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, overload

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from pydantic import BaseModel, ValidationError

from framework._requester import Requester, RequestsJobs
from framework._values import NotJSONError, jsonable
from framework._wakeup import FULL
from framework.bus.base import Inbox, UndeliverableError
from framework.bus.messages import (
    ActivateMessage,
    BusMessage,
    CancelMessage,
    DeactivateMessage,
    EndMessage,
    JobCancelMessage,
    JobRequestMessage,
    JobResponseMessage,
    JobStreamDataMessage,
    JobStreamEndMessage,
    JobStreamStartMessage,
    JobUpdateMessage,
    JobUpdateRequestMessage,
    WorkerLostMessage,
)
from framework.jobs import (
    Job,
    JobFailed,
    JobGroup,
    JobGroupResponse,
)
from framework.types import (
    JobDescription,
    JobStatus,
    WorkerActivationArgs,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRegistryEntry,
)

if TYPE_CHECKING:
    from framework._runtime import Runtime
    from framework.registry import WorkerRegistry
    from framework.runner import WorkerRunner

logger = logging.getLogger("framework.worker")

F = TypeVar("F", bound=Callable[..., Any])

_JOB_MARK = "__framework_job__"
_READY_MARK = "__framework_worker_ready__"
_DEFAULT = "\x00default"
"""Key of the default handler in a worker class's handler table."""
_STREAM_FAIRNESS = 64
"""A streaming handler yields the event loop once per this many items."""
_CANCELLED_EARLY_LIMIT = 4096
"""How many cancels for jobs not (yet) running a worker remembers."""
ACTIVATION_WAIT = 10.0
"""Seconds activate_worker / deactivate_worker / handoff_to wait for the target to be ready."""
STOP_MARGIN = 1.0
"""Seconds a cancelled job's handler gets to unwind before its worker ends without it."""


def _asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None on another anyio backend (trio)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


@overload
def job(func: F, /) -> F: ...
@overload
def job(*, name: str | None = None) -> Callable[[F], F]: ...
def job(func: Any = None, /, *, name: str | None = None) -> Any:
    """Mark a worker method as a job handler: ``@job`` (the default) or ``@job(name="...")``.

    The method is ``async def handler(self, job: Job)``. It returns the response (a dict or
    a pydantic model), raises ``JobFailed`` for a logical failure, or is an async generator
    whose yielded items are streamed to the requester.

    A typed payload: ``async def handler(self, job: Job, data: SomeModel)``, where
    ``SomeModel`` is a pydantic model. The payload is validated into it before the handler
    runs; one that does not validate ends the job ``FAILED`` naming the field, and the
    handler does not run. A return annotation that is a pydantic model is the response's
    schema. Both appear in ``BaseWorker.describe()``; the docstring is the job's description.
    """

    def mark(f: F) -> F:
        if not (inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f)):
            raise TypeError(
                f"@job handler {f.__qualname__} must be 'async def' (or an async generator)"
            )
        setattr(f, _JOB_MARK, name if name is not None else _DEFAULT)
        return f

    if isinstance(func, str):
        raise TypeError(f"write @job(name={func!r}): the job's name is a keyword argument")
    if func is not None:
        return mark(func)
    return mark


def worker_ready(*names: str) -> Callable[[F], F]:
    """Call the marked method with ``WorkerReadyData`` each time one of ``names`` is ready.

    ``@worker_ready("search")`` on ``async def on_search_ready(self, data)``.
    """
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(
            '@worker_ready needs the names of the workers to watch: @worker_ready("search")'
        )

    def mark(f: F) -> F:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"@worker_ready method {f.__qualname__} must be 'async def'")
        setattr(f, _READY_MARK, (*getattr(f, _READY_MARK, ()), *names))
        return f

    return mark


@dataclass(frozen=True, slots=True)
class _Handler:
    attribute: str
    streaming: bool
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    doc: str = ""


def _resolve(annotation: Any, func: Callable[..., Any], localns: Mapping[str, Any]) -> Any:
    """An annotation as an object (a string one is evaluated where the handler was written)."""
    if not isinstance(annotation, str):
        return annotation
    return eval(annotation, func.__globals__, dict(localns))


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _make_handler(
    owner: type, attribute: str, func: Callable[..., Any], localns: Mapping[str, Any]
) -> _Handler:
    """Read a ``@job`` method's signature: its typed payload and response models, if any."""
    streaming = inspect.isasyncgenfunction(func)
    parameters = list(inspect.signature(func).parameters.values())[1:]  # after self
    where = f"@job handler {owner.__qualname__}.{attribute}"
    required = [p for p in parameters if p.default is inspect.Parameter.empty]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if (
        not parameters
        or parameters[0].kind not in positional
        or len(required) > 2
        or any(p.kind not in positional for p in required)
    ):
        raise TypeError(
            f"{where} takes (self, job) or (self, job, data: SomeModel), both positional; "
            f"got ({', '.join(['self', *map(str, parameters)])})"
        )
    input_model: type[BaseModel] | None = None
    data = parameters[1] if len(parameters) > 1 else None
    if data is not None and data.kind in positional:
        try:
            annotation = _resolve(data.annotation, func, localns)
        except Exception as exc:
            if data.default is not inspect.Parameter.empty:
                annotation = None  # an optional parameter of the handler's own
            else:
                raise TypeError(
                    f"{where}: the annotation of {data.name!r} ({data.annotation!r}) could not "
                    f"be resolved ({type(exc).__name__}: {exc}); define the model at module "
                    "level, before the worker"
                ) from None
        if _is_model(annotation):
            input_model = annotation
        elif data.default is inspect.Parameter.empty:
            raise TypeError(
                f"{where}: its second parameter {data.name!r} is the typed payload and must be "
                f"annotated with a pydantic model, got {data.annotation!r}"
            )
    output_model: type[BaseModel] | None = None
    returns = inspect.signature(func).return_annotation
    if not streaming and returns is not inspect.Signature.empty:
        try:
            resolved = _resolve(returns, func, localns)
        except Exception:
            resolved = None  # an annotation that is not a model says nothing about the schema
        if _is_model(resolved):
            output_model = resolved
    return _Handler(attribute, streaming, input_model, output_model, inspect.getdoc(func) or "")


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

    _handlers: ClassVar[dict[str, _Handler]] = {}
    _descriptions: ClassVar[tuple[JobDescription, ...] | None] = None
    _ready_watches: ClassVar[dict[str, tuple[str, ...]]] = {}
    _observes_jobs: ClassVar[bool] = False
    _observes_requests: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Start from what the bases declared (cheap: plugins define many worker classes,
        # and scanning dir() of each cost ~0.4 ms), minus what this class redefines.
        own = vars(cls)
        handlers: dict[str, _Handler] = {}
        watches: dict[str, tuple[str, ...]] = {}
        for base in reversed(cls.__mro__[1:]):
            if issubclass(base, BaseWorker):
                handlers.update(base._handlers)
                watches.update(base._ready_watches)
        handlers = {k: h for k, h in handlers.items() if h.attribute not in own}
        watches = {k: n for k, n in watches.items() if k not in own}
        # Where the class statement ran: typed payload models defined in a function are
        # found there (annotations are strings under ``from __future__ import annotations``).
        caller: Any = sys._getframe(1)
        while caller is not None and caller.f_code.co_name == "__init_subclass__":
            caller = caller.f_back
        localns: Mapping[str, Any] = caller.f_locals if caller is not None else {}
        for attribute, member in own.items():
            job_name = getattr(member, _JOB_MARK, None)
            if job_name is not None:
                if job_name in handlers:
                    shown = "the default job" if job_name == _DEFAULT else f"job {job_name!r}"
                    raise TypeError(
                        f"worker class {cls.__qualname__}: both {handlers[job_name].attribute}() "
                        f"and {attribute}() handle {shown}; keep one"
                    )
                handlers[job_name] = _make_handler(cls, attribute, member, localns)
            names = getattr(member, _READY_MARK, None)
            if names:
                watches[attribute] = names
        cls._handlers = handlers
        cls._descriptions = None
        cls._ready_watches = watches
        cls._observes_jobs = any(
            getattr(cls, n) is not getattr(BaseWorker, n) for n in _REQUESTER_CALLBACKS
        )
        cls._observes_requests = cls.on_job_request is not BaseWorker.on_job_request

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
        self._runtime: Runtime | None = None
        """What the hosting runner hands the worker when it starts it (None before)."""
        self._requester: Requester | None = None
        self._inbox: Inbox | None = None
        self._tg: TaskGroup | None = None
        self._running: dict[str, Job] = {}
        self._jobs_idle: anyio.Event | None = None
        self._ready = False
        self._ending = False
        self._started_at: float | None = None
        self._finished: anyio.Event | None = None
        self._cancelling = False
        self._watched: set[str] = set()
        self._cancelled_early: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._job_tasks: set[asyncio.Task[None]] = set()
        """Job tasks on asyncio (the loop keeps only weak references to tasks)."""

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
        return self._ready

    @property
    def started_at(self) -> float | None:
        """Wall-clock time (``time.time()``) at which it became ready."""
        return self._started_at

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
        return dict(self._running)

    @property
    def job_groups(self) -> dict[str, JobGroup]:
        """Job groups this worker requested that are still open, by job id."""
        requester = self._requester
        if requester is None:
            return {}
        return {
            job_id: JobGroup(
                job_id=p.job_id,
                worker_names=p.targets,
                responses=dict(p.responses),
                cancel_on_error=p.cancel_on_error,
                is_done=p.done,
            )
            for job_id, p in requester._pending.items()
            if len(p.targets) > 1
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r})"

    # ----------------------------------------------------------------- description

    def describe(self) -> list[JobDescription]:
        """The jobs this worker answers: each handler's name (None for the default one),
        docstring, and the JSON schemas of its typed payload and response (None where not
        typed).

        The registry keeps it (``WorkerReadyData.jobs``), network buses carry it to other
        runners, and consumers such as an assistant's worker tools read it. A subclass may
        override it to describe jobs its handlers take in a form of their own.
        """
        cls = type(self)
        described = cls.__dict__.get("_descriptions")
        if described is None:
            described = tuple(_describe(h, n) for n, h in cls._handlers.items())
            cls._descriptions = described
        return list(described)

    # ----------------------------------------------------------------- background tasks

    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``func(*args)`` as a background task owned by this worker.

        The task is cancelled when the worker ends; an exception it raises goes to
        ``on_error`` (and is logged), and the worker carries on.

        Raises:
            RuntimeError: the worker is not running (call it from ``on_ready`` on, not from
                ``__init__``).
        """
        tg = self._tg
        if tg is None or self._finished is None or self._finished.is_set():
            raise RuntimeError(
                f"worker {self._name!r} is not running: start background tasks from on_ready "
                "or later, while the worker runs"
            )
        tg.start_soon(self._guarded, func, *args, name=f"{self._name}: {_callable_name(func)}")

    # ----------------------------------------------------------------- requesting work

    def _require_requester(self) -> Requester:
        if self._requester is None:
            raise RuntimeError(
                f"worker {self._name!r} is not running: it can request jobs once its runner "
                "has started it"
            )
        return self._requester

    # ----------------------------------------------------------------- control

    async def add_worker(self, child: BaseWorker) -> None:
        """Make ``child`` a child of this worker: it starts after it and ends before it."""
        if child._parent is not None:
            raise ValueError(f"worker {child.name!r} has a parent already ({child._parent.name!r})")
        if child is self:
            raise ValueError(f"worker {self._name!r} cannot be its own child")
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
        self._watched.add(name)
        await self.registry.watch(name, self._watch_handler(self.on_worker_ready))

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
        if message.target == self._name and self._inbox is not None:
            with contextlib.suppress(anyio.ClosedResourceError):  # ending already
                self._inbox.put(message)
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

    # ----------------------------------------------------------------- running

    async def _run(self, runtime: Runtime, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The worker's task: start, serve its inbox until it ends, then clean up."""
        self._runtime = runtime
        self._finished = anyio.Event()
        self._loop = _asyncio_loop()
        inbox = self._inbox = runtime.bus.subscribe(self._name)
        started = False
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._requester = runtime.requester(self._name, tg.start_soon, inbox)
                if self._observes_jobs:
                    self._requester.observer = self._observe_job_message
                    self._requester.on_group_done = self._on_group_done
                if not await self._start(runtime):
                    return
                tg.start_soon(self._serve_inbox, inbox, tg)
                for child in list(self._children):
                    await runtime.start_worker(child)
                task_status.started()
                started = True
                await anyio.sleep_forever()  # until _serve_inbox ends and cancels the group
        finally:
            if not started:
                task_status.started()
            with anyio.CancelScope(shield=True):
                await self._cleanup(runtime, inbox)

    async def _start(self, runtime: Runtime) -> bool:
        try:
            await self.on_ready()
            for attribute, names in self._ready_watches.items():
                method = getattr(self, attribute)
                for name in names:
                    self._watched.add(name)
                    await runtime.registry.watch(name, self._watch_handler(method))
        except Exception as exc:
            await runtime.worker_failed(self, exc)
            return False
        self._ready = True
        self._started_at = time.time()
        self._publish_entry()
        data = WorkerReadyData(
            worker_name=self._name, runner=runtime.name, jobs=tuple(self.describe())
        )
        await runtime.worker_ready(self, data)
        return True

    def _publish_entry(self) -> None:
        runner = self._runner
        if runner is not None:
            runner.registry.set_entry(
                WorkerRegistryEntry(
                    name=self._name,
                    parent=self._parent.name if self._parent else None,
                    active=self._active,
                    bridged=self._bridged,
                    started_at=self._started_at,
                )
            )

    def _watch_handler(
        self, method: Callable[[WorkerReadyData], Awaitable[None]]
    ) -> Callable[[WorkerReadyData], Awaitable[None]]:
        """Wrap a watcher so it runs in this worker's task group, never blocking the registry."""

        async def handler(data: WorkerReadyData) -> None:
            if self._tg is not None and not self._ending:
                self._tg.start_soon(self._guarded, method, data)

        return handler

    async def _guarded(self, method: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run a user callback; an exception goes to ``on_error`` and the worker carries on."""
        try:
            await method(*args)
        except Exception as exc:
            logger.exception(
                "worker %r: %s raised", self._name, getattr(method, "__name__", method)
            )
            try:
                await self.on_error(exc)
            except Exception:
                logger.exception("worker %r: on_error raised", self._name)

    async def _serve_inbox(self, inbox: Inbox, tg: TaskGroup) -> None:
        """Serve the inbox until it is closed and drained, then stop the worker's tasks."""
        await self._receive_loop(inbox)
        tg.cancel_scope.cancel()

    async def _receive_loop(self, inbox: Inbox) -> None:
        dispatch = _DISPATCH
        receive = inbox.receive
        while True:
            try:
                message = await receive()
            except anyio.EndOfStream:
                return
            try:
                await dispatch[type(message)](self, message)
            except Exception as exc:
                # A bad message (unknown type, invalid activation arguments...) costs that
                # message only: the worker keeps serving.
                logger.exception(
                    "worker %r: could not handle %s; ignored", self._name, message.type
                )
                await self._guarded(self.on_error, exc)

    async def _cleanup(self, runtime: Runtime, inbox: Inbox) -> None:
        self._ending = True
        await runtime.registry.unregister(self._name, f"worker {self._name!r} ended")
        runtime.bus.unsubscribe(self._name)
        for message in inbox.drain():
            if type(message) is JobRequestMessage:
                await self._refuse(
                    message, JobStatus.CANCELLED, f"worker {self._name!r} ended", from_loop=False
                )
        for job in list(self._running.values()):
            await self._answer_cancelled(job, f"worker {self._name!r} ended", from_loop=False)
        await self._wait_for_jobs()
        if self._requester is not None:
            await self._requester.close(f"worker {self._name!r} ended")
        was_ready, self._ready = self._ready, False
        if self._finished is not None:
            self._finished.set()
        runtime.worker_finished(self)
        if was_ready:
            await self._guarded(self.on_finished)

    async def _wait_for_jobs(self) -> None:
        """Give cancelled job tasks ``STOP_MARGIN`` seconds to unwind, then leave them: a
        handler that swallows its cancellation is named in the log, and the worker ends
        anyway (its requester was answered ``CANCELLED`` already)."""
        if not self._running or self._loop is None:
            return
        self._jobs_idle = anyio.Event()
        with anyio.move_on_after(STOP_MARGIN):
            await self._jobs_idle.wait()
        for job in list(self._running.values()):
            handler = self._handler_for(job.name)
            logger.error(
                "worker %r: the handler %s() of job %s would not stop %.3g s after it was "
                "cancelled (it catches the cancellation and goes on); the worker ends without "
                "waiting for it, but the process cannot exit while it runs",
                self._name,
                handler.attribute if handler else "?",
                job.job_id,
                STOP_MARGIN,
            )

    def _running_runtime(self) -> Runtime:
        """The runtime of a started worker (only called on paths a started worker takes)."""
        runtime = self._runtime
        assert runtime is not None, f"worker {self._name!r} has not started"
        return runtime

    def _handler_for(self, name: str | None) -> _Handler | None:
        handlers = self._handlers
        found = handlers.get(name) if name is not None else None
        return found if found is not None else handlers.get(_DEFAULT)

    # ----------------------------------------------------------------- inbound: jobs

    async def _on_request(self, message: JobRequestMessage) -> None:
        if self._cancelled_early:
            reason = self._cancelled_early.pop((message.job_id, message.source), None)
            if reason is not None:
                await self._refuse(message, JobStatus.CANCELLED, reason)
                return
        if self._ending:
            await self._refuse(message, JobStatus.CANCELLED, f"worker {self._name!r} is ending")
            return
        if not self._active:
            await self._refuse(
                message,
                JobStatus.ERROR,
                f"worker {self._name!r} is inactive and takes no jobs; activate it first",
            )
            return
        handler = self._handler_for(message.name)
        if handler is None:
            await self._refuse(
                message,
                JobStatus.FAILED,
                f"worker {self._name!r} has no handler for job {message.name or '(default)'!r}",
            )
            return
        job = Job(
            self,
            message.job_id,
            message.name,
            message.payload,
            message.source,
            time.monotonic(),
            message.headers,
        )
        self._running[job.job_id] = job
        runtime = self._runtime
        assert runtime is not None and self._tg is not None
        if runtime.events_enabled:
            runtime.job_received(self._name, job)
        # The task's handle is how the job is cancelled. On asyncio a job is a plain task
        # that the worker owns itself (``_running`` holds it; ``_shutdown`` and
        # ``_cleanup`` cancel it and wait for it, within a bound): spawning through a task
        # group is the largest cost of a local round trip, and a task group could never be
        # left while a handler swallows its cancellation, so ``end()`` would not return.
        loop = self._loop
        if loop is not None:
            self._job_tasks.add(loop.create_task(self._run_job_in_scope(handler, job)))
        else:
            job._handle = self._tg.start_soon(self._run_job, handler, job)

    async def _run_job_in_scope(self, handler: _Handler, job: Job) -> None:
        """A job in a task of its own (asyncio): its cancel scope is how it is cancelled,
        so a handler's shielded section is respected as in any anyio task."""
        try:
            with anyio.CancelScope() as scope:
                job._handle = scope
                await self._run_job(handler, job)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._job_tasks.discard(task)

    async def _run_job(self, handler: _Handler, job: Job) -> None:
        status = JobStatus.COMPLETED
        response: dict[str, Any] = {}
        try:
            if job._answered:
                return  # cancelled before it started: answered then
            if self._observes_requests:
                await self.on_job_request(job)
            method = getattr(self, handler.attribute)
            model = handler.input_model
            args: tuple[Any, ...] = (job,)
            if model is not None:
                try:
                    args = (job, model.model_validate(job.payload))
                except ValidationError as exc:
                    message, fields = _payload_error(job, model, exc)
                    raise JobFailed(message, {"fields": fields}) from None
            self._runtime.job_started(job, self)  # type: ignore[union-attr]  # set at start
            if handler.streaming:
                response = await self._stream(method(*args), job)
            else:
                response = _as_response(await method(*args), self._name)
            if job._chunks >= 0 and not job._answered:
                await self._close_stream(job)
        except JobFailed as exc:
            status, response = JobStatus.FAILED, exc.response
            try:
                response = jsonable(response, "the JobFailed data")
            except NotJSONError as error:
                status, response = JobStatus.ERROR, {"error": f"{type(error).__name__}: {error}"}
        except Exception as exc:
            # The requester gets the error text; the traceback is for whoever debugs the
            # handler (INFO: `framework -v`, or a logging configuration).
            logger.info("worker %r: job %s raised", self._name, job.job_id, exc_info=True)
            cause = sole_cause(exc)  # a task group in the handler wraps what went wrong
            status, response = JobStatus.ERROR, {"error": f"{type(cause).__name__}: {cause}"}
        except BaseException:
            # Cancelled: by cancel_job or the worker's end (answered then, so this does
            # nothing), or from outside (the worker or the runner is cancelled): answer,
            # then let the cancellation unwind.
            if not job._answered:
                with anyio.move_on_after(1.0, shield=True):
                    await self._answer(job, JobStatus.CANCELLED, {"error": "cancelled"})
            raise
        finally:
            self._job_done(job)
        await self._answer(job, status, response)

    async def _stream(self, items: AsyncIterator[Any], job: Job) -> dict[str, Any]:
        """Run an async-generator handler: each item is a stream chunk, framed by start and
        end even when there is none. The generator is not resumed while the requester's
        buffer is full (see ``_send_chunk``)."""
        await self._open_stream(job)
        async for item in items:
            if job._answered:
                break
            await self._send_chunk(job, item)
        return {"chunks": job._chunks}

    async def _open_stream(self, job: Job) -> None:
        job._chunks = 0
        await self._running_runtime().bus.send(
            JobStreamStartMessage.build(source=self._name, target=job.requester, job_id=job.job_id)
        )
        if FULL:
            await job._wait_for_room()

    async def _close_stream(self, job: Job) -> None:
        await self._running_runtime().bus.send(
            JobStreamEndMessage.build(source=self._name, target=job.requester, job_id=job.job_id)
        )

    async def _send_chunk(self, job: Job, item: Any) -> None:
        """One stream chunk (``job.stream(item)`` or a yielded item), with its event.

        Backpressure: when the chunk filled the buffer of a requester in this process, wait
        for room there before the handler makes the next one (``Job._wait_for_room``). On the
        streaming hot path: no property lookups, and one check of an empty dict while no
        buffer is full.
        """
        if type(item) is not str:
            item = jsonable(item, "the stream item")
        elif not item.isascii():
            jsonable(item, "the stream item")
        if job._chunks < 0:
            await self._open_stream(job)
        runtime = self._runtime
        assert runtime is not None
        index = job._chunks
        await runtime.bus.send(
            JobStreamDataMessage.build(
                source=self._name, target=job.requester, job_id=job.job_id, data=item
            )
        )
        if runtime.events_enabled:
            runtime.stream_chunk(self._name, job.job_id, item, index)
        job._chunks = index = index + 1
        if FULL:
            await job._wait_for_room()
        if not index % _STREAM_FAIRNESS:
            await anyio.lowlevel.checkpoint()

    def _job_done(self, job: Job) -> None:
        self._running.pop(job.job_id, None)
        if not self._running and self._jobs_idle is not None:
            self._jobs_idle.set()

    async def _answer(
        self, job: Job, status: JobStatus, response: dict[str, Any], *, from_loop: bool = False
    ) -> None:
        """Send the job's one terminal response (later calls for the same job do nothing).

        ``from_loop``: called by the inbox loop, which must not wait for plugins: the
        ``on_job_completed`` hook then runs in its own task.
        """
        if job._answered:
            return
        job._answered = True
        message = JobResponseMessage.build(
            source=self._name,
            target=job.requester,
            job_id=job.job_id,
            status=status,
            response=response,
        )
        runtime = self._running_runtime()
        try:
            await runtime.bus.send(message)
        except UndeliverableError:
            logger.debug(
                "worker %r: requester %r of job %s is gone", self._name, job.requester, job.job_id
            )
        spawn = self._tg.start_soon if from_loop and self._tg is not None else None
        await runtime.job_answered(self, message, spawn)

    async def _refuse(
        self, message: JobRequestMessage, status: JobStatus, error: str, *, from_loop: bool = True
    ) -> None:
        job = Job(
            self, message.job_id, message.name, message.payload, message.source, time.monotonic()
        )
        await self._answer(job, status, {"error": error}, from_loop=from_loop)

    async def _send_update(self, job: Job, data: dict[str, Any]) -> None:
        data = jsonable(data, "the update")
        runtime = self._running_runtime()
        await runtime.bus.send(
            JobUpdateMessage.build(
                source=self._name, target=job.requester, job_id=job.job_id, data=data
            )
        )
        if runtime.events_enabled:
            runtime.job_updated(self._name, job.job_id, data)

    async def _answer_cancelled(self, job: Job, reason: str, *, from_loop: bool = True) -> None:
        """Cancel a running job and answer CANCELLED now, without waiting for its task to
        unwind: a handler that shields itself from cancellation cannot keep its requester
        waiting."""
        if job._handle is not None:
            job._handle.cancel()
        await self._answer(
            job, JobStatus.CANCELLED, {"error": reason or "cancelled"}, from_loop=from_loop
        )

    async def _on_job_cancel(self, message: JobCancelMessage) -> None:
        reason = message.reason or f"cancelled by {message.source}"
        job = self._running.get(message.job_id)
        if job is not None:
            if job.requester == message.source:
                await self._answer_cancelled(job, reason)
            return
        # Control messages overtake queued data: the request may still be on its way.
        # Remember the cancel so that the request is refused when it arrives.
        self._cancelled_early[(message.job_id, message.source)] = reason
        if len(self._cancelled_early) > _CANCELLED_EARLY_LIMIT:
            self._cancelled_early.popitem(last=False)

    async def _on_update_request(self, message: JobUpdateRequestMessage) -> None:
        job = self._running.get(message.job_id)
        if job is not None and self._tg is not None:
            self._tg.start_soon(self._guarded, self.on_job_update_requested, job)

    # ----------------------------------------------------------------- inbound: replies

    async def _on_reply(self, message: BusMessage) -> None:
        requester = self._requester
        if requester is not None:
            await requester.deliver(message)

    async def _observe_job_message(self, message: BusMessage) -> None:
        """Call this worker's job-side callbacks for a reply to one of its requests."""
        kind = type(message)
        if kind is JobResponseMessage:
            assert isinstance(message, JobResponseMessage)
            await self._guarded(self.on_job_response, message)
            specific = _RESPONSE_CALLBACKS[message.status]
            await self._guarded(getattr(self, specific), message)
        else:
            await self._guarded(getattr(self, _EVENT_CALLBACKS[kind]), message)

    async def _on_group_done(self, response: JobGroupResponse) -> None:
        await self._guarded(self.on_job_group_completed, response)

    # ----------------------------------------------------------------- inbound: control

    async def _on_activate(self, message: ActivateMessage) -> None:
        try:
            args = self.activation_args_type.from_dict(message.args)
        except ValidationError as exc:
            logger.error(
                "worker %r: activation from %r refused: its arguments do not fit %s: %s",
                self._name,
                message.source,
                self.activation_args_type.__name__,
                exc,
            )
            await self._guarded(self.on_error, exc)
            return
        await self._set_active(True, args)

    async def _on_deactivate(self, message: DeactivateMessage) -> None:
        await self._set_active(False, None)

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

    async def _on_end(self, message: EndMessage) -> None:
        if self._ending:
            return
        self._ending = True
        self._running_runtime().registry.leaving(self._name)
        assert self._tg is not None
        self._tg.start_soon(self._shutdown, False, message.grace_period, message.reason)

    async def _on_cancel(self, message: CancelMessage) -> None:
        if self._cancelling:
            return
        if not self._ending:
            self._running_runtime().registry.leaving(self._name)
        self._ending = True
        self._cancelling = True
        assert self._tg is not None
        self._tg.start_soon(self._shutdown, True, 0.0, message.reason)

    async def _force_cancel(self, reason: str) -> None:
        """Stop now, whatever the inbox loop is doing (a callback stuck on I/O, ``on_ready``
        still running): answer every running job CANCELLED, then cancel the worker's tasks.

        Used by ``runner.cancel()`` and when a graceful end overruns its grace period.
        """
        self._ending = True
        self._cancelling = True
        for job in list(self._running.values()):
            await self._answer_cancelled(job, reason)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _shutdown(self, cancel: bool, grace_period: float | None, reason: str) -> None:
        """End children first, give running jobs their grace, then stop the inbox.

        ``reason`` (from ``end(reason=...)`` / ``cancel(reason=...)``) is what requesters of
        cancelled jobs read in ``response["error"]``.
        """
        runtime = self._running_runtime()
        grace = runtime.grace_period if grace_period is None else grace_period
        deadline = anyio.current_time() + grace  # one grace period for the whole subtree
        for child in list(self._children):
            if cancel:
                await child.cancel(f"parent {self._name!r} cancelled")
            else:
                await child.end(f"parent {self._name!r} ended", grace_period=grace)
        for child in list(self._children):
            if child._finished is not None:
                await child._finished.wait()
        if self._running and not cancel:
            self._jobs_idle = anyio.Event()
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                await self._jobs_idle.wait()
        reason = reason or f"worker {self._name!r} {'cancelled' if cancel else 'ended'}"
        for job in list(self._running.values()):
            await self._answer_cancelled(job, reason, from_loop=False)
        await runtime.registry.unregister(self._name, reason)
        if self._inbox is not None:
            self._inbox.close()


def _as_response(result: Any, worker: str) -> dict[str, Any]:
    if isinstance(result, dict):
        response: dict[str, Any] = jsonable(result, "the response")
        return response
    if result is None:
        return {}
    if isinstance(result, BaseModel):
        dumped: dict[str, Any] = jsonable(result, "the response")
        return dumped
    raise TypeError(
        f"handler of worker {worker!r} returned {type(result).__name__}; "
        "return a dict, a pydantic model or None"
    )


def sole_cause(error: BaseException) -> BaseException:
    """``error`` without the exception groups wrapped around a single exception."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


def _describe(handler: _Handler, key: str) -> JobDescription:
    return JobDescription(
        name=None if key == _DEFAULT else key,
        description=handler.doc,
        input_schema=None if handler.input_model is None else _schema(handler.input_model),
        output_schema=None if handler.output_model is None else _schema(handler.output_model),
        streaming=handler.streaming,
    )


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def _callable_name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func)))


def _payload_error(
    job: Job, model: type[BaseModel], exc: ValidationError
) -> tuple[str, list[dict[str, str]]]:
    """What a payload that does not fit the handler's model gets: the error text, and the
    fields at fault (``{"field": "a.b", "error": ...}``)."""
    fields = [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "(payload)",
            "error": error["msg"],
        }
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
    shown = "; ".join(f"{f['field']}: {f['error']}" for f in fields)
    name = job.name or "(default)"
    return f"the payload of job {name!r} does not fit {model.__name__}: {shown}", fields


_RESPONSE_CALLBACKS = {
    JobStatus.COMPLETED: "on_job_completed",
    JobStatus.FAILED: "on_job_error",
    JobStatus.ERROR: "on_job_error",
    JobStatus.CANCELLED: "on_job_cancelled",
}
_EVENT_CALLBACKS: dict[type[BusMessage], str] = {
    JobUpdateMessage: "on_job_update",
    JobStreamStartMessage: "on_job_stream_start",
    JobStreamDataMessage: "on_job_stream_data",
    JobStreamEndMessage: "on_job_stream_end",
}
_DISPATCH: dict[type[BusMessage], Callable[[BaseWorker, Any], Awaitable[None]]] = {
    JobRequestMessage: BaseWorker._on_request,
    JobCancelMessage: BaseWorker._on_job_cancel,
    JobUpdateRequestMessage: BaseWorker._on_update_request,
    JobResponseMessage: BaseWorker._on_reply,
    JobUpdateMessage: BaseWorker._on_reply,
    JobStreamStartMessage: BaseWorker._on_reply,
    JobStreamDataMessage: BaseWorker._on_reply,
    JobStreamEndMessage: BaseWorker._on_reply,
    WorkerLostMessage: BaseWorker._on_reply,
    ActivateMessage: BaseWorker._on_activate,
    DeactivateMessage: BaseWorker._on_deactivate,
    EndMessage: BaseWorker._on_end,
    CancelMessage: BaseWorker._on_cancel,
}
"""Which method handles each message class: one lookup instead of an isinstance chain."""
