"""Every hook a plugin may implement: the plugin author's manual.

A plugin is a module or an object holding functions marked ``@hookimpl`` whose names match
the specs below. A hookimpl may accept any subset of a spec's arguments, in any order, by
name (pluggy matches them by name). Unless a spec says otherwise a notification hookimpl
may be a plain function or an ``async def`` function: the runtime awaits a coroutine.

Isolation rules for notification hooks: a hookimpl that raises is logged with its plugin's
name; the other plugins' impls still run and the job's outcome stands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Mapping

    import click

    from framework.bus.messages import JobResponseMessage
    from framework.config import RunConfig
    from framework.events import EventModel
    from framework.jobs import Job
    from framework.llm.calls import ModelCall, ToolCall
    from framework.llm.worker import LLMWorker
    from framework.registrars import (
        BackendRegistrar,
        BusRegistrar,
        RouteRegistrar,
        ToolSourceRegistrar,
        WorkerRegistrar,
    )
    from framework.runner import WorkerRunner
    from framework.types import JobStatus, WorkerErrorData, WorkerReadyData
    from framework.worker import BaseWorker

PROJECT_NAME = "framework"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks a function in this module as a hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's function as the implementation of the hook of the same name."""


# --------------------------------------------------------------------------- notification


@hookspec
def on_worker_ready(data: WorkerReadyData, runner: WorkerRunner) -> None:
    """A worker became ready to take jobs.

    Called once each time a worker finishes starting (after its ``on_ready`` returned and it
    was added to the runner's registry), for workers hosted by this runner; on a network
    bus, also once for each worker another runner announces (``data.runner`` is then that
    runner's name). Sync or async.

    Args:
        data: the worker's name (``data.worker_name``) and its runner's name
            (``data.runner``).
        runner: the ``WorkerRunner`` hosting the worker; ``runner.registry`` lists every
            worker known so far.

    The return value is ignored. Raising is logged and changes nothing else.

    Not to be confused with the worker callback ``BaseWorker.on_worker_ready(data)``, which
    a worker gets for the workers it watches (``watch_worker``).
    """


@hookspec
def on_job_completed(response: JobResponseMessage, worker: BaseWorker) -> None:
    """A worker on this runner sent the terminal response of a job.

    Called once per job request a local worker answered, whatever the outcome: look at
    ``response.status`` (a ``JobStatus``: completed, cancelled, failed or error). Called
    after the response has been sent, so a slow hookimpl never delays the requester.
    Sync or async.

    Args:
        response: the response as sent: ``job_id``, ``status``, ``response`` (the dict the
            handler returned, or ``{"error": "..."}``), ``source`` (the worker's name) and
            ``target`` (the requester's name).
        worker: the ``BaseWorker`` that ran the job.

    The return value is ignored. Raising is logged and changes nothing else: the requester
    has its response already.

    Not to be confused with the worker callback ``BaseWorker.on_job_completed(result)``,
    which a *requesting* worker gets when a job it asked for ends ``COMPLETED``.
    """


@hookspec
def on_job_started(job: Job, worker: BaseWorker) -> None:
    """A local worker's handler is about to run a job.

    Called in the job's own task, just before the handler runs (after the typed payload,
    if any, validated; a request that is refused or does not validate never starts).
    Context variables an impl sets here are seen by the handler and by every job the
    handler requests: the seam for tracing and logging context. Read the request's
    context from ``job.headers`` (e.g. ``traceparent``). Sync only: an ``async def`` impl
    is refused when the plugin is registered. Keep it quick: it is on the job path.

    Args:
        job: the ``Job``: ``job_id``, ``name``, ``payload``, ``requester``, ``headers``.
        worker: the ``BaseWorker`` that runs it.

    The return value is ignored. Raising is logged and the job runs as if the impl were
    absent.
    """


@hookspec
def on_job_progress(job: Job, worker: BaseWorker, kind: str, index: int, data: Any) -> None:
    """A local worker's job sent a progress update or a stream chunk.

    Called in the job's own task, right after the update (``job.update(data)``) or the
    chunk (``job.stream(item)``, or an item a streaming handler yielded) was sent. Only
    when some plugin implements it: otherwise nothing is called per update or chunk, so
    a runner's jobs pay nothing for the hook existing. Sync only, and keep it very quick:
    for a stream it runs once per chunk (count, sample, hand off; never block).

    Args:
        job: the ``Job`` (``job_id``, ``name``, ``requester``, ``headers``...).
        worker: the ``BaseWorker`` running it.
        kind: ``"update"`` or ``"stream_chunk"``.
        index: the update's or the chunk's number within the job, from 0 (updates and
            chunks are counted apart).
        data: the update's dict, or the chunk as sent (a ``str``, or JSON-compatible
            data); do not change it.

    The return value is ignored. Raising is logged and changes nothing else.
    """


@hookspec
def add_request_headers(headers: dict[str, str], target: str) -> None:
    """A job request is about to be sent: add headers to it.

    Called in the requester's own task (so its context variables are visible) for every
    job request sent from this runner, one call per member of a group, with the mutable
    ``headers`` dict the request will carry. An impl may add or change entries, e.g. a
    ``traceparent`` for the current span. Names are lower-case ``[a-z0-9-]`` and values
    str; the prefix ``framework-`` is reserved. Sync only.

    Args:
        headers: the request's headers so far (those the caller passed, and what earlier
            impls added); change it in place.
        target: the name of the worker the request goes to.

    The return value is ignored. An impl that raises, or leaves headers that break the rules
    above (or the limits of 64 headers and 8 KiB), is logged with its plugin's name and its
    changes are undone; the request is sent without them.
    """


@hookspec
def on_request_completed(
    job_id: str,
    target: str,
    status: JobStatus,
    response: dict[str, Any],
    headers: Mapping[str, str],
) -> None:
    """A job request sent from this runner has its terminal response.

    The requester's side of ``on_job_completed``: called once per job request made on this
    runner (once per member of a group), whatever ended it: the worker's response arrived
    (from this runner or another), or the requester ended it itself (a timeout, a cancel, a
    lost worker, the runner ending; the request may then never have been sent). Sync only,
    and keep it quick: it runs where the response is applied, before the requester's code
    sees it, which may be outside any task (a network bus delivering from its socket's read
    callback): do not rely on the current task there.

    Args:
        job_id: the job's id (shared by the members of a group).
        target: the name of the worker the request went to.
        status: the ``JobStatus`` it ended with.
        response: the response dict (``{"error": "..."}`` when it did not complete).
        headers: the headers the request carried (after ``add_request_headers``), e.g. the
            ``traceparent`` an impl added there, to find what it started for this request.

    The return value is ignored. Raising is logged and changes nothing else.
    """


@hookspec
def on_model_call(call: ModelCall, worker: LLMWorker) -> None:
    """An LLM worker's call to its model has ended (one call per round of a run).

    Called in the run's own task (the job's, for a job), after the model's reply was read
    (or the backend raised), before the worker acts on it. Sync only, and keep it quick.

    Args:
        call: the ``ModelCall``: backend, model, round, job id, the messages sent, the
            reply, finish reason, token counts, start and end times, error.
        worker: the ``LLMWorker``.

    The return value is ignored. Raising is logged and changes nothing else.
    """


@hookspec
def on_tool_call_started(call: ToolCall, worker: LLMWorker) -> None:
    """An LLM worker is about to run a tool call the model asked for.

    Called in the tool call's own task, just before the tool runs: context variables an
    impl sets here are seen by the tool and by every job the tool requests (the seam for a
    tool span that is the parent of those jobs). Sync only, and keep it quick.

    Args:
        call: the ``ToolCall``: name, id, arguments, job id.
        worker: the ``LLMWorker``.

    The return value is ignored. Raising is logged and the tool runs as if the impl were
    absent.
    """


@hookspec
def on_tool_call_completed(call: ToolCall, worker: LLMWorker) -> None:
    """A tool call has run (or raised, or was cancelled): ``call.result`` and
    ``call.error`` say how.

    Called in the tool call's own task, once for every ``on_tool_call_started``. Sync only.

    Args:
        call: the same ``ToolCall`` object ``on_tool_call_started`` got, completed.
        worker: the ``LLMWorker``.

    The return value is ignored. Raising is logged and changes nothing else.
    """


@hookspec
def runner_service(runner: WorkerRunner) -> None:
    """Run something that lives as long as the runner: a server, an exporter, a poller.

    Started in the runner's task group once every configured worker is ready; cancelled
    when the runner ends, after its workers have ended. Async only (``async def``): run
    until cancelled, or return when the service has nothing more to do. Each impl runs in
    its own task.

    Args:
        runner: the ``WorkerRunner``: submit jobs with ``runner.job(...)``, read
            ``runner.registry``, ``runner.workers``.

    Raising is logged with the plugin's name, and the runner goes on without the service.
    """


@hookspec
def on_worker_failed(error: WorkerErrorData, runner: WorkerRunner) -> None:
    """A worker on this runner failed and was removed.

    A worker fails when its ``on_ready`` raises: it never becomes ready, is not registered,
    and requests sent to it wait for it (up to their timeout). A job handler that raises
    does not fail its worker (the job ends ``ERROR``), nor does a callback that raises
    later (that goes to the worker's ``on_error``). On a network bus it also fires for a
    remote worker whose runner was lost or became unreachable (its jobs here have ended
    ``ERROR``; ``error.error`` says why, e.g. ``runner <name> lost``). Sync or async.

    Args:
        error: the worker's name (``error.worker_name``) and the error text
            (``error.error``).
        runner: the ``WorkerRunner`` that hosted the worker (for a remote worker: this
            runner, which knew it).

    The return value is ignored. Raising is logged and changes nothing else.
    """


@hookspec
def publish_event(event: EventModel) -> None:
    """Publish one runtime event (to a console, a file, a queue, a dashboard...).

    Every ``publish_event`` impl receives every event, in order, from its own bounded
    buffer: a slow or stuck impl loses its own events once its buffer is full (counted in
    ``WorkerRunner.event_stats()``), and never delays a job or the other publishers. When no
    impl is registered no event is built at all.

    An ``async def`` impl runs on the event loop in a task of its own: it may await as long
    as it likes but must not block. A plain function never runs on the event loop: it is
    called in a thread of its own, one event after the other, so it may block (a slow file,
    a full pipe) and loses only its own events.

    Args:
        event: the ``EventModel``; frozen, so it can be kept or shared as it is.

    The return value is ignored. Raising is counted as a failed delivery and logged (the
    first time with its traceback); the impl keeps receiving the following events.
    """


# --------------------------------------------------------------------------- registration
# Called once per process by the plugin host (``framework`` command, ``framework.testing``),
# each impl with its own registrar, so that what it registers is recorded under its name.


@hookspec
def register_workers(register: WorkerRegistrar) -> None:
    """Register the worker classes this plugin provides.

    Called once per process, when plugins are loaded. Call ``register(WorkerClass)`` for
    each class, optionally with ``name="..."`` (the default is the class's ``worker_name``
    attribute when set, else its name in kebab case: ``EchoWorker`` -> ``echo-worker``),
    or ``register("package.module:ClassName", name="...")`` to have the module imported
    only when a runner starts the worker (``framework plugins`` and ``--help`` then never
    import it).
    ``framework run`` starts each registered worker under its registered name when no
    configuration names the workers. Plain function only (not async).

    Args:
        register: the registrar. It refuses anything but a ``BaseWorker`` subclass (or an
            import path), and a name another plugin registered already (the error names
            both plugins); a refusal is reported and the plugin's other registrations stand.
    """


@hookspec
def register_llm_backends(register: BackendRegistrar) -> None:
    """Register LLM backends (the protocol: ``framework.llm.LLMBackend``, docs/llm.md).

    Called once per process (and by a runner, for its LLM workers). Call
    ``register(backend, name="...")``; ``name`` defaults to the backend's ``name``
    attribute. Or ``register("package.module:Backend", name="...")``: imported (and a class
    instantiated without arguments) only when a worker uses it. Plain function only.

    Args:
        register: the registrar; a duplicate name is an error naming both plugins.
    """


@hookspec
def register_tool_sources(register: ToolSourceRegistrar) -> None:
    """Register where LLM workers' tools from outside come from, by prefix.

    Called once per process (and by a runner, for its LLM workers). Call
    ``register("prefix", source)``: an LLM worker whose ``tools`` setting lists
    ``"prefix:NAME"`` (``[workers.config] tools = ["mcp:time"]``) asks ``source`` for the
    tools ``NAME`` stands for (``source.tools(NAME, worker)``, a list of ``ToolSpec``) each
    time it runs the model, and ``framework run`` checks each entry before anything starts
    (``source.check(NAME, config)``). ``source`` follows ``framework.llm.ToolSource``; it
    may be an import path (``"pkg.module:Source"``, an object or a class instantiated
    without arguments), imported only when needed. Plain function only.

    Args:
        register: the registrar; a duplicate prefix is an error naming both plugins.
    """


@hookspec
def register_buses(register: BusRegistrar) -> None:
    """Register bus implementations by URL scheme.

    Called once per process. Call ``register("scheme", factory)`` where
    ``factory(url: str)`` returns a new bus (an object with the ``Bus`` methods:
    ``start``, ``stop``, ``subscribe``, ``unsubscribe``, ``send``). ``framework run --bus
    scheme://...`` then builds its bus with it. Plain function only.

    A network bus that signs its messages takes the secrets too: when ``factory`` has a
    ``secret`` keyword parameter, ``framework run`` calls ``factory(url, secret=secrets)``,
    ``secrets`` being ``framework.config.bus_secrets(config)`` (a list of ``SecretStr``,
    the first signs; empty when none is configured). A factory without it is called as
    ``factory(url)``; if a secret is configured and the bus it makes is a ``NetworkBus``,
    ``framework run`` exits with a configuration error rather than run unsigned.

    Args:
        register: the registrar; a duplicate scheme is an error naming both plugins.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``framework`` command.

    Called once per process, when the command line needs the list of commands (``--help``,
    or a command name that is not built in). Add commands with the ``click`` API:
    ``@cli.command()`` on a function. Keep the module that holds this hookimpl light: it is
    imported for ``framework --help``. Plain function only.

    Args:
        cli: the ``framework`` click group.
    """


@hookspec
def configure_runner(runner: WorkerRunner, config: RunConfig) -> None:
    """Adjust a runner that ``framework run`` built, before it starts.

    Called once per ``framework run``, after the configured workers were added and before
    the runner starts: add workers, register a plugin object (a publisher, say) with
    ``runner.add_plugin(obj)``, read your own settings from ``config.plugins["<name>"]``.
    Sync or async. For bad settings raise ``framework.config.ConfigError("the run
    configuration", "plugins.<name>.<key>", reason)``: ``framework run`` exits 2, naming
    the configuration file it loaded in place of "the run configuration".

    Args:
        runner: the ``WorkerRunner`` about to start.
        config: the validated run configuration (``framework.config.RunConfig``).
    """


@hookspec
def register_routes(register: RouteRegistrar) -> None:
    """Mount ASGI apps in the HTTP API that ``framework run`` serves.

    Call ``register(prefix, app)``: ``prefix`` is a path such as ``"/mcp"`` (a leading
    ``/``, no trailing one, not under ``/v1`` nor another plugin's prefix), ``app`` an ASGI
    application (a Starlette app, say). Requests under the prefix go to the app, behind the
    API's token check. A prefix another plugin holds is refused naming both plugins;
    ``framework plugins`` lists what each plugin mounted. Plain function only, and keep
    its module light: build the app cheaply (or lazily) here.

    Args:
        register: the route registrar, ``register(prefix, app)``.
    """
