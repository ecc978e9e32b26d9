"""The handler table of a worker class: ``@job`` and ``@worker_ready``, and what a handler's
signature says (its typed payload and response models, its docstring).

``BaseWorker.__init_subclass__`` builds one ``HandlerTable`` per class from the marked
methods; the serving engine (``_serving``) looks handlers up in it, and ``describe()``
turns it into ``JobDescription`` records.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from framework._values import jsonable
from framework.types import JobDescription

if TYPE_CHECKING:
    from framework.jobs import Job

F = TypeVar("F", bound=Callable[..., Any])

JOB_MARK = "__framework_job__"
DURABLE_MARK = "__framework_job_durable__"
"""On a durable handler: its ``max_attempts``."""
READY_MARK = "__framework_worker_ready__"
DEFAULT = "\x00default"
"""Key of the default handler in a handler table."""
DEFAULT_MAX_ATTEMPTS = 3
"""How many times a durable job runs at most when ``@job(durable=True)`` says no more."""


@overload
def job(func: F, /) -> F: ...
@overload
def job(
    *, name: str | None = None, durable: bool = False, max_attempts: int | None = None
) -> Callable[[F], F]: ...
def job(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    durable: bool = False,
    max_attempts: int | None = None,
) -> Any:
    """Mark a worker method as a job handler: ``@job`` (the default) or ``@job(name="...")``.

    The method is ``async def handler(self, job: Job)``. It returns the response (a dict or
    a pydantic model), raises ``JobFailed`` for a logical failure, or is an async generator
    whose yielded items are streamed to the requester.

    A typed payload: ``async def handler(self, job: Job, data: SomeModel)``, where
    ``SomeModel`` is a pydantic model. The payload is validated into it before the handler
    runs; one that does not validate ends the job ``FAILED`` naming the field, and the
    handler does not run. A return annotation that is a pydantic model is the response's
    schema. Both appear in ``BaseWorker.describe()``; the docstring is the job's description.

    ``durable=True`` asks a network bus that keeps requests (the Redis bus) for
    at-least-once delivery: the request is kept until its response is written, and when the
    runner running it is lost, a live replica runs it again (``job.attempt`` says which
    run it is), at most ``max_attempts`` times in all (default 3). On the in-process bus it
    changes nothing.

    Raises:
        TypeError: the method is not ``async def``, ``durable`` is not a bool, or
            ``max_attempts`` is given without ``durable=True``.
        ValueError: ``max_attempts`` is not a whole number of at least 1.
    """
    if isinstance(func, str):
        raise TypeError(f"write @job(name={func!r}): the job's name is a keyword argument")
    attempts = _max_attempts(durable, max_attempts)

    def mark(f: F) -> F:
        if not (inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f)):
            raise TypeError(
                f"@job handler {f.__qualname__} must be 'async def' (or an async generator)"
            )
        setattr(f, JOB_MARK, name if name is not None else DEFAULT)
        if attempts:
            setattr(f, DURABLE_MARK, attempts)
        return f

    if func is not None:
        return mark(func)
    return mark


def _max_attempts(durable: object, max_attempts: object) -> int:
    """A durable handler's ``max_attempts`` (0 for a plain one), checked."""
    if not isinstance(durable, bool):
        raise TypeError(f"@job(durable=...) takes True or False, got {durable!r}")
    if max_attempts is None:
        return DEFAULT_MAX_ATTEMPTS if durable else 0
    if not durable:
        raise TypeError(
            f"@job(max_attempts={max_attempts!r}) applies to durable jobs only: write "
            f"@job(durable=True, max_attempts={max_attempts!r})"
        )
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(
            f"@job(max_attempts=...) is how many times a durable job may run in all: a whole "
            f"number of at least 1, got {max_attempts!r}"
        )
    return max_attempts


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
        setattr(f, READY_MARK, (*getattr(f, READY_MARK, ()), *names))
        return f

    return mark


@dataclass(frozen=True, slots=True)
class Handler:
    """One ``@job`` method: its attribute name and what its signature declares."""

    attribute: str
    streaming: bool
    input_model: type[BaseModel] | None = None
    output_model: type[BaseModel] | None = None
    doc: str = ""
    max_attempts: int = 0
    """How many times a durable job may run in all; 0 for a plain (not durable) one."""


def _resolve(annotation: Any, func: Callable[..., Any], localns: Mapping[str, Any]) -> Any:
    """An annotation as an object (a string one is evaluated where the handler was written)."""
    if not isinstance(annotation, str):
        return annotation
    return eval(annotation, func.__globals__, dict(localns))


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def make_handler(
    owner: type, attribute: str, func: Callable[..., Any], localns: Mapping[str, Any]
) -> Handler:
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
    return Handler(
        attribute,
        streaming,
        input_model,
        output_model,
        inspect.getdoc(func) or "",
        getattr(func, DURABLE_MARK, 0),
    )


def as_response(result: Any, worker: str) -> dict[str, Any]:
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


def class_summary(cls: type) -> str:
    """The first paragraph of the docstring written on ``cls`` itself, on one line ("" when
    it has none).

    Only the class's own docstring counts: one inherited from a base (the framework's
    ``BaseWorker`` or ``LLMWorker``, say) is about the base, not about this worker.
    """
    own = vars(cls).get("__doc__")
    if not isinstance(own, str):
        return ""
    return " ".join(inspect.cleandoc(own).split("\n\n")[0].split())


def describe_handler(handler: Handler, key: str, summary: str = "") -> JobDescription:
    """``handler``'s record; ``summary`` describes the default job when its handler has no
    docstring."""
    return JobDescription(
        name=None if key == DEFAULT else key,
        description=handler.doc or (summary if key == DEFAULT else ""),
        input_schema=None if handler.input_model is None else _schema(handler.input_model),
        output_schema=None if handler.output_model is None else _schema(handler.output_model),
        streaming=handler.streaming,
        durable=handler.max_attempts > 0,
        max_attempts=handler.max_attempts or None,
    )


def _schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def payload_error(
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


@dataclass(slots=True)
class HandlerTable:
    """A worker class's handlers by job name (``DEFAULT`` for the default one), its
    ``@worker_ready`` methods, and which optional callbacks it overrides."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    ready_watches: dict[str, tuple[str, ...]] = field(default_factory=dict)
    observes_jobs: bool = False
    """Whether it overrides a job-side callback of the requester (``on_job_completed``...)."""
    observes_requests: bool = False
    """Whether it overrides ``on_job_request``."""
    summary: str = ""
    """The first paragraph of the class's own docstring (``class_summary``): the default
    job's description when its handler has no docstring."""
    descriptions: tuple[JobDescription, ...] | None = None
    """``describe()``'s records, built on first use."""

    def handler_for(self, name: str | None) -> Handler | None:
        """The handler a request named ``name`` goes to: the named one, else the default."""
        handlers = self.handlers
        found = handlers.get(name) if name is not None else None
        return found if found is not None else handlers.get(DEFAULT)

    def describe(self) -> tuple[JobDescription, ...]:
        """One ``JobDescription`` per handler (schemas built once per class)."""
        if self.descriptions is None:
            self.descriptions = tuple(
                describe_handler(h, n, self.summary) for n, h in self.handlers.items()
            )
        return self.descriptions


def scan_class(
    cls: type, inherited: HandlerTable, localns: Mapping[str, Any]
) -> tuple[dict[str, Handler], dict[str, tuple[str, ...]]]:
    """The handlers and ready-watches of ``cls``: what it inherits (``inherited``, merged
    from its bases) minus what it redefines, plus its own marked methods."""
    own = vars(cls)
    handlers = {k: h for k, h in inherited.handlers.items() if h.attribute not in own}
    watches = {k: n for k, n in inherited.ready_watches.items() if k not in own}
    for attribute, member in own.items():
        job_name = getattr(member, JOB_MARK, None)
        if job_name is not None:
            if job_name in handlers:
                shown = "the default job" if job_name == DEFAULT else f"job {job_name!r}"
                raise TypeError(
                    f"worker class {cls.__qualname__}: both {handlers[job_name].attribute}() "
                    f"and {attribute}() handle {shown}; keep one"
                )
            handlers[job_name] = make_handler(cls, attribute, member, localns)
        names = getattr(member, READY_MARK, None)
        if names:
            watches[attribute] = names
    return handlers, watches
