"""LLMWorker: a worker that thinks with a language model, calls tools, and streams its reply.

A job sent to it with ``payload={"messages": [...]}`` runs the model on those messages
(after the worker's instructions), streams the reply's text deltas as job stream chunks,
runs the tool calls the model makes (several in one turn concurrently), feeds the results
back, and loops until the model answers, within ``max_rounds`` rounds. The response is the
final assistant message and the usage figures.

Activation with ``LLMWorkerActivationArgs(messages=[...], run_llm=...)`` appends the
messages to the worker's own conversation (``self.context``) and, when ``run_llm``, runs the
model on it; the reply joins the conversation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import anyio
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from framework._handlers import class_summary
from framework._job_checks import did_you_mean
from framework.events import ContentType, Event, EventType
from framework.jobs import Job, JobFailed
from framework.llm._coalesce import Pending, try_next
from framework.llm.backend import (
    Finish,
    LLMBackend,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from framework.llm.calls import ModelCall, ToolCall
from framework.llm.tools import TOOL_REF, ToolSource, ToolSpec, method_tool, tool_name
from framework.registrars import RegistrationError
from framework.types import JobDescription, LLMWorkerActivationArgs, WorkerActivationArgs
from framework.urls import docs_url
from framework.worker import BaseWorker, job

if TYPE_CHECKING:
    from framework._hooks import RuntimeHooks
    from framework.runner import WorkerRunner

logger = logging.getLogger("framework.llm")

DEFAULT_BACKEND = "offline"
_MAX_JOINED = 256
"""At most this many back-to-back text deltas go out as one stream chunk."""
DEFAULT_MAX_ROUNDS = 10


class LLMError(RuntimeError):
    """The LLM worker cannot run: no such backend, bad options..."""


def _valid_tool_ref(ref: str) -> str:
    check_tool_ref(ref)
    return ref


def check_tool_ref(ref: str) -> tuple[str, str]:
    """``PREFIX:NAME`` split in two; ``ValueError`` for anything else."""
    match = TOOL_REF.match(ref) if isinstance(ref, str) else None
    if match is None:
        raise ValueError(
            f"{ref!r} is not a tool source entry: write 'PREFIX:NAME', like 'mcp:time' (the "
            "MCP server 'time' of agent-plugin-mcp)"
        )
    return match.group(1), match.group(2)


class LLMWorkerConfig(BaseModel):
    """The settings of an LLM worker from the run configuration (``[workers.config]``).

    A subclass with settings of its own derives its ``config_model`` from this one to keep
    them.
    """

    model_config = ConfigDict(extra="forbid")

    tools: list[Annotated[str, AfterValidator(_valid_tool_ref)]] = Field(
        default_factory=list,
        description="tools from tool sources, 'PREFIX:NAME' (mcp:time: the tools of the MCP "
        "server 'time' of agent-plugin-mcp)",
    )


CHAT_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "messages": {
            "type": "array",
            "description": "The conversation so far, oldest first (chat message dicts).",
            "items": {
                "type": "object",
                "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
                "required": ["role"],
            },
        }
    },
    "required": ["messages"],
}
"""The payload of an LLM worker's ``chat`` job, as ``describe()`` gives it."""

CHAT_DESCRIPTION = (
    'Chat with this assistant: send {"messages": [{"role": "user", "content": "..."}]}; '
    "its reply is streamed as text and returned as the response's message."
)
"""The ``chat`` job's description when the worker class has no docstring of its own."""


class LLMWorker(BaseWorker):
    """A worker with instructions, ``@tool`` methods and an LLM backend chosen by name.

    Args:
        name: the worker's name.
        instructions: the system message put before every conversation (default: the
            class attribute ``default_instructions``).
        backend: the backend's registered name (default: the run configuration's
            ``[llm] backend``, else ``"offline"``).
        backend_options: settings for the backend, validated by its ``options_model``
            (default: the run configuration's ``[llm] options`` when the backend is the
            configured one).
        max_rounds: how many model calls one run may make (each round that ends in tool
            calls leads to another); past it the job ends ``FAILED``.
        tools: tools from tool sources (``register_tool_sources``), as ``"PREFIX:NAME"``
            entries (``"mcp:time"``); default: the ``tools`` of ``config``.
        active, bridged, config: as for ``BaseWorker``; ``config`` is validated by
            ``config_model`` (``LLMWorkerConfig``: ``tools``).
    """

    activation_args_type = LLMWorkerActivationArgs
    config_model: ClassVar[type[BaseModel] | None] = LLMWorkerConfig
    default_instructions: ClassVar[str] = "You are a helpful assistant."
    """The instructions when none are given to the constructor; override in a subclass."""

    _tool_attributes: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        attributes: dict[str, str] = {}
        for base in reversed(cls.__mro__[1:]):
            if issubclass(base, LLMWorker):
                attributes.update(base._tool_attributes)
        own = vars(cls)
        attributes = {n: a for n, a in attributes.items() if a not in own}
        for attribute, member in own.items():
            name = tool_name(member)
            if name is not None:
                if name in attributes:
                    raise TypeError(
                        f"worker class {cls.__qualname__}: both {attributes[name]}() and "
                        f"{attribute}() are the tool {name!r}; keep one"
                    )
                attributes[name] = attribute
        cls._tool_attributes = attributes

    def __init__(
        self,
        name: str,
        *,
        instructions: str | None = None,
        backend: str | None = None,
        backend_options: dict[str, Any] | BaseModel | None = None,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
        tools: Sequence[str] | None = None,
        active: bool = True,
        bridged: bool = False,
        config: BaseModel | dict[str, Any] | None = None,
    ) -> None:
        super().__init__(name, active=active, bridged=bridged, config=config)
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        if tools is None:
            tools = getattr(self.config, "tools", None) or ()
        self.tool_refs: list[str] = list(tools)
        """The ``"PREFIX:NAME"`` entries whose tools the model is offered too."""
        for ref in self.tool_refs:
            check_tool_ref(ref)
        self._sources: list[tuple[str, str, ToolSource]] = []
        self.instructions = (
            instructions if instructions is not None else type(self).default_instructions
        )
        """The system message put before every conversation."""
        self.max_rounds = max_rounds
        self.context: list[dict[str, Any]] = []
        """The worker's own conversation (activation messages and the replies to them)."""
        self._backend_name = backend
        self._backend_options = backend_options
        self._backend: LLMBackend | None = None
        self._activation_lock: anyio.Lock | None = None
        self._options: Any = None
        self._tools = {
            tool: method_tool(self, attribute, tool)
            for tool, attribute in type(self)._tool_attributes.items()
        }

    # ----------------------------------------------------------------- backend

    @property
    def backend(self) -> LLMBackend:
        """The backend in use (resolved when the worker starts)."""
        if self._backend is None:
            self._backend, self._options = self._resolve_backend(self.runner)
        return self._backend

    def _resolve_backend(self, runner: WorkerRunner) -> tuple[LLMBackend, Any]:
        configured = runner.llm_config
        name = self._backend_name or configured.backend or DEFAULT_BACKEND
        backends = runner.llm_backends
        if name not in backends:
            known = ", ".join(sorted(backends.entries)) or "none"
            raise LLMError(
                f"worker {self.name!r}: no LLM backend named {name!r} (registered: {known}); "
                "install the plugin that provides it (agent-plugin-openai for 'openai'; how: "
                f"{docs_url('configuration.md#installing-plugins')}) and, in code, load it: "
                "WorkerRunner(plugins=[agent_plugin_openai])"
            )
        try:
            backend = backends.resolve(name)
        except RegistrationError as exc:
            raise LLMError(f"worker {self.name!r}: {exc}") from None
        if not isinstance(backend, LLMBackend):
            missing = [a for a in ("name", "options_model", "stream") if not hasattr(backend, a)]
            raise LLMError(
                f"worker {self.name!r}: {name!r} (plugin "
                f"{backends.entries[name].plugin!r}) is not an LLM backend: it lacks "
                f"{', '.join(missing)}"
            )
        options: Any = self._backend_options
        if options is None and name == configured.backend:
            options = configured.options
        model = getattr(backend, "options_model", None)
        if model is not None and not isinstance(options, model):
            try:
                options = model.model_validate(options or {})
            except ValidationError as exc:
                problem = exc.errors(include_url=False, include_input=False)[0]
                where = ".".join(map(str, problem["loc"]))
                raise LLMError(
                    f"worker {self.name!r}: option {where!r} of LLM backend {name!r}: "
                    f"{problem['msg']}"
                ) from None
        return backend, options

    async def on_ready(self) -> None:
        """Resolve the backend and the tool sources now, so a missing one fails the worker
        at start."""
        self._backend, self._options = self._resolve_backend(self.runner)
        self._sources = self._resolve_sources(self.runner)

    def _resolve_sources(self, runner: WorkerRunner) -> list[tuple[str, str, ToolSource]]:
        """``(entry, NAME, source)`` for each ``tools`` entry."""
        registered = runner.tool_sources
        sources = []
        for ref in self.tool_refs:
            prefix, name = check_tool_ref(ref)
            if prefix not in registered:
                why = unknown_tool_source(prefix, name, registered)
                raise LLMError(f"worker {self.name!r}: tools entry {ref!r}: {why}")
            try:
                source = registered.resolve(prefix)
            except RegistrationError as exc:
                raise LLMError(f"worker {self.name!r}: tools entry {ref!r}: {exc}") from None
            sources.append((ref, name, source))
        return sources

    async def _source_tools(self, job: Job | None, thread: str) -> list[ToolSpec]:
        """The tools of the ``tools`` entries, asked for now; an entry whose source fails
        is left out of this run, with a warning to the requester."""
        if self.tool_refs and not self._sources:  # started without on_ready (a subclass)
            self._sources = self._resolve_sources(self.runner)
        specs: list[ToolSpec] = []
        for ref, name, source in self._sources:
            try:
                specs.extend(await source.tools(name, self))
            except Exception as exc:
                await self._warn(
                    job,
                    thread,
                    {
                        "warning": f"worker {self.name!r}: the tools of {ref!r} are left out of "
                        f"this run: {type(exc).__name__}: {exc}",
                        "tools": ref,
                    },
                )
        return specs

    # ----------------------------------------------------------------- tools

    def tools(self) -> list[ToolSpec]:
        """The tools offered to the model: the ``@tool`` methods. Override to add more."""
        return list(self._tools.values())

    # ----------------------------------------------------------------- jobs and activation

    @job
    async def chat(self, job: Job) -> dict[str, Any]:
        """Run the model on ``payload["messages"]``; stream the reply; return it."""
        messages = job.payload.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise JobFailed(
                f'worker {self.name!r} needs payload {{"messages": [{{"role": "user", '
                '"content": "..."}]}'
            )
        conversation = self._with_instructions(list(messages))
        return await self.run_llm(conversation, job=job)

    def describe(self) -> list[JobDescription]:
        """The ``chat`` job as a consumer needs it: ``{"messages": [...]}`` in, the reply's
        text streamed, the reply returned; described by the worker class's docstring when
        it has one (``LLMWorker``'s own is about the framework, not about the worker)."""
        cls = type(self)
        text = (cls is not LLMWorker and class_summary(cls)) or CHAT_DESCRIPTION
        return [
            d.model_copy(
                update={"input_schema": CHAT_INPUT_SCHEMA, "streaming": True, "description": text}
            )
            if d.name is None and d.input_schema is None
            else d
            for d in super().describe()
        ]

    async def on_activated(self, args: WorkerActivationArgs | None) -> None:
        """Append the activation's messages to ``context``; run the model when asked.

        The run happens in a task of its own: the worker keeps taking jobs and replies
        (its tools may send jobs) while the model thinks.
        """
        if not isinstance(args, LLMWorkerActivationArgs) or not args.messages:
            return
        if self._activation_lock is None:
            self._activation_lock = anyio.Lock()
        if not args.run_llm and not self._activation_lock.locked():
            self.context.extend(args.messages)  # nothing running: take them now
        elif self._serving is not None:
            self.start_soon(self._activate, args.messages, bool(args.run_llm))

    async def _activate(self, messages: list[dict[str, Any]], run_llm: bool) -> None:
        """One activation at a time, in the order they came: its messages join the context
        after the previous run's reply, and the model runs on that."""
        assert self._activation_lock is not None
        async with self._activation_lock:
            self.context.extend(messages)
            if run_llm:
                conversation = self._with_instructions(self.context)
                start = len(conversation)
                await self.run_llm(conversation)
                self.context.extend(conversation[start:])  # tool calls, results, the answer

    def _with_instructions(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.instructions and not (messages and messages[0].get("role") == "system"):
            return [{"role": "system", "content": self.instructions}, *messages]
        return list(messages)

    # ----------------------------------------------------------------- the tool loop

    async def run_llm(
        self, messages: list[dict[str, Any]], *, job: Job | None = None
    ) -> dict[str, Any]:
        """Call the model until it answers without tool calls (at most ``max_rounds``).

        ``messages`` grows with each assistant message and tool result. Returns
        ``{"message": <final assistant message>, "usage": {...}, "rounds": n,
        "finish_reason": "..."}``, and ``"reasoning"`` when the model sent its thinking.

        Raises:
            JobFailed: the server's content filter stopped the reply, the token limit cut
                a tool call, or the model still called tools after ``max_rounds``.
        """
        backend = self.backend
        thread = job.job_id if job is not None else ""
        tools = {spec.name: spec for spec in self.tools()}
        if self.tool_refs:
            for spec in await self._source_tools(job, thread):
                tools.setdefault(spec.name, spec)  # the worker's own tools keep their names
        schemas = [spec.schema() for spec in tools.values()]
        usage = _UsageSum()
        reasoning: list[str] = []
        streamed_text = False
        for round_number in range(1, self.max_rounds + 1):
            calls: dict[int, dict[str, str]] = {}
            finish: str | None = None
            # The round's text; what is not sent yet goes out as one chunk on flush().
            pending = _TextBuffer(self, job, thread, "\n\n" if streamed_text else "")
            text = pending.text
            flush = pending.flush
            hooks = self._hooks_if("wants_model_call")
            failed = None
            if hooks is not None:  # told of the call when it ends, however it ends
                model_call = self._model_call(round_number, thread, messages)
                failed = partial(self._model_called, hooks, model_call)
            stream = backend.stream(messages, schemas, self._options)
            # The backend's connection closes with the round.
            async with _closing(stream, failed):
                deltas = stream.__aiter__()
                while True:
                    # Deltas that arrive back to back go out as one chunk: flush only when
                    # the backend is about to wait (see framework.llm._coalesce).
                    try:
                        chunk = try_next(deltas)
                        if type(chunk) is Pending:
                            try:
                                await flush()
                            except BaseException as exc:
                                chunk.abort(exc)
                                raise
                            chunk = await chunk.finish()
                    except StopAsyncIteration:
                        break
                    if type(chunk) is TextDelta:  # the per-token path: kept short
                        text.append(chunk.text)
                        if len(text) - pending.sent >= _MAX_JOINED:
                            await flush()
                        continue
                    await flush()
                    if type(chunk) is ToolCallDelta:
                        index = chunk.index
                        held = calls.get(index)
                        if held is not None and chunk.id and held["id"] and chunk.id != held["id"]:
                            index = max(calls) + 1  # a new call sent without its own index
                        call = calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                        call["id"] = chunk.id or call["id"]
                        call["name"] = chunk.name or call["name"]
                        call["arguments"] += chunk.arguments
                    elif type(chunk) is ReasoningDelta:
                        reasoning.append(chunk.text)
                    elif type(chunk) is Finish:
                        finish = chunk.reason
                    elif type(chunk) is Usage:
                        usage.add(chunk)
                await flush()
            round_usage = usage.end_round()
            message: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
            if text:
                streamed_text = True
            ordered = [calls[i] for i in sorted(calls)]
            for number, call in enumerate(ordered):
                call["id"] = call["id"] or f"call_{round_number}_{number}"
            if ordered:
                # Arguments that are not a JSON object (a call cut short, a model's slip) are
                # never sent back: servers refuse them in the history. The history carries
                # {} and the model gets the error as the tool's result.
                message["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {
                            "name": c["name"],
                            "arguments": c["arguments"] if _object(c["arguments"]) else "{}",
                        },
                    }
                    for c in ordered
                ]
            finish = finish or ("tool_calls" if ordered else "stop")
            if hooks is not None:
                model_call.message, model_call.finish_reason = message, finish
                self._model_called(hooks, model_call, usage=round_usage)
            self._check_finish(finish, ordered, text)
            messages.append(message)
            if not ordered:
                if finish == "length":
                    await self._warn_cut(job, thread)
                response = {
                    "message": message,
                    "usage": usage.totals(),
                    "rounds": round_number,
                    "finish_reason": finish,
                }
                if reasoning:
                    response["reasoning"] = "".join(reasoning)
                return response
            if round_number == self.max_rounds:
                break  # the results could never reach the model: do not run the tools
            messages.extend(await self._run_tools(ordered, tools, thread))
        raise JobFailed(
            f"worker {self.name!r}: the model was still calling tools after {self.max_rounds} "
            f"round{'s' if self.max_rounds != 1 else ''}; raise max_rounds or check what the "
            "tools return"
        )

    def _check_finish(self, finish: str, calls: list[dict[str, str]], text: list[str]) -> None:
        """Fail the run when the reply cannot be used: stopped by the server's content
        filter, or cut by the token limit while it asked for tools (never run a cut call)."""
        if finish == "content_filter":
            raise JobFailed(
                f"worker {self.name!r}: the server's content filter stopped the reply "
                f"(finish_reason 'content_filter', after {len(''.join(text))} characters); "
                "rephrase the request, or check the provider's content policy"
            )
        if finish == "length" and calls:
            names = ", ".join(sorted({c["name"] or "?" for c in calls}))
            raise JobFailed(
                f"worker {self.name!r}: the reply was cut by the token limit in the middle of "
                f"a tool call ({names}; finish_reason 'length'), so no tool was run; raise the "
                f"backend's {self._limit_option()} option, or shorten the conversation"
            )

    def _limit_option(self) -> str:
        """The backend's token-limit option to raise, for messages: the one its options set
        (``max_completion_tokens``, ``max_output_tokens``), else ``max_tokens``."""
        given = getattr(self._options, "model_fields_set", ())
        return next((name for name in _LIMIT_OPTIONS if name in given), "max_tokens")

    async def _warn_cut(self, job: Job | None, thread: str) -> None:
        """A text reply cut by the token limit still completes, with a warning."""
        warning = {
            "warning": f"worker {self.name!r}: the reply was cut by the token limit "
            f"(finish_reason 'length'); raise the backend's {self._limit_option()} option for a "
            "whole answer",
            "finish_reason": "length",
        }
        await self._warn(job, thread, warning)

    async def _warn(self, job: Job | None, thread: str, warning: dict[str, Any]) -> None:
        """A warning the run goes on after: logged, and an update to the job's requester
        (and its event), or an event for an activation run."""
        logger.warning("%s", warning["warning"])
        if job is not None:
            await job.update(warning)
            return
        runtime = None if self._serving is None else self._serving.runtime
        if runtime is not None and runtime.events_enabled:
            runtime.emit(
                Event.NODE_EXECUTION,
                EventType.UPDATE,
                ContentType.UPDATE,
                self.name,
                thread,
                data=warning,
            )

    async def _run_tools(
        self, calls: list[dict[str, str]], tools: dict[str, ToolSpec], thread: str
    ) -> list[dict[str, Any]]:
        """Run this turn's tool calls concurrently; one message per call, in order."""
        # Each call has a result whatever happens to its task (a tool that raises
        # CancelledError on its own is absorbed by the task group): the model must get one
        # tool message per call.
        results: list[dict[str, Any]] = [
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": json.dumps({"error": "the tool was cancelled"}),
            }
            for call in calls
        ]

        async def run(index: int, call: dict[str, str]) -> None:
            results[index] = {
                "role": "tool",
                "tool_call_id": call["id"],
                "content": await self._run_tool(call, tools, thread),
            }

        async with anyio.create_task_group() as tg:
            for index, call in enumerate(calls):
                tg.start_soon(run, index, call)
        return results

    async def _run_tool(self, call: dict[str, str], tools: dict[str, ToolSpec], thread: str) -> str:
        """One tool call; whatever happens, the model gets a JSON result (or an error)."""
        name = call["name"]
        self._emit_tool(EventType.START, ContentType.TOOL_CALL, thread, call)
        hooks = self._hooks_if("wants_tool_calls")
        if hooks is not None:
            record = ToolCall(name, call["id"], call["arguments"], thread)
            hooks.on_tool_call_started(record, self)
        content: str | None = None
        try:
            spec = tools.get(name)
            if spec is None:
                raise LookupError(f"there is no tool named {name!r}; tools: {sorted(tools)}")
            try:
                arguments = json.loads(call["arguments"] or "{}")
            except ValueError as exc:
                raise ValueError(
                    f"the arguments are not valid JSON ({exc}); the call may have been cut "
                    "short: call the tool again with a whole JSON object"
                ) from None
            if not isinstance(arguments, dict):
                raise TypeError("tool arguments must be a JSON object")
            result = await spec.call(arguments)
            content = _json(result)
        except Exception as exc:  # the model hears about it, the job goes on
            logger.info("worker %r: tool %r raised %s", self.name, name, exc)
            content = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
            if hooks is not None:
                record.error = f"{type(exc).__name__}: {exc}"
        finally:
            if hooks is not None:
                if content is None:
                    record.error = "cancelled"
                record.result = content
                hooks.on_tool_call_completed(record, self)
        self._emit_tool(
            EventType.RESULT, ContentType.TOOL_RESULT, thread, {**call, "result": content}
        )
        return content

    # ----------------------------------------------------------------- plugins

    def _hooks_if(self, wanted: str) -> RuntimeHooks | None:
        """The runner's hooks when a plugin implements the hooks ``wanted`` names."""
        runtime = None if self._serving is None else self._serving.runtime
        if runtime is None or not getattr(runtime.hooks, wanted):
            return None
        return runtime.hooks

    def _model_call(
        self, round_number: int, thread: str, messages: list[dict[str, Any]]
    ) -> ModelCall:
        model = getattr(self._options, "model", None)
        return ModelCall(
            backend=self.backend.name,
            model=model if isinstance(model, str) else None,
            round=round_number,
            job_id=thread,
            messages=list(messages),
            started_at=time.time(),
            ended_at=0.0,
        )

    def _model_called(
        self,
        hooks: RuntimeHooks,
        call: ModelCall,
        error: BaseException | None = None,
        *,
        usage: Usage | None = None,
    ) -> None:
        """Tell ``on_model_call`` the call has ended (``error``: it raised)."""
        call.ended_at = time.time()
        if usage is not None:
            call.input_tokens, call.output_tokens = usage.prompt_tokens, usage.completion_tokens
        if error is not None:
            call.error = f"{type(error).__name__}: {error}"
        hooks.on_model_call(call, self)

    async def _send_text(self, text: str, job: Job | None, thread: str) -> None:
        if job is not None:
            await job.stream(text)
        else:
            self._emit_delta(text, thread)

    # ----------------------------------------------------------------- events

    def _emit_delta(self, text: str, thread: str) -> None:
        runtime = None if self._serving is None else self._serving.runtime
        if runtime is not None and runtime.events_enabled:
            runtime.text_delta(self.name, thread, text)

    def _emit_tool(
        self, event_type: EventType, content_type: ContentType, thread: str, data: dict[str, Any]
    ) -> None:
        runtime = None if self._serving is None else self._serving.runtime
        if runtime is not None and runtime.events_enabled:
            runtime.tool_event(self.name, thread, event_type, content_type, data)


class _TextBuffer:
    """A round's text deltas; those not sent yet go out as one stream chunk (or one event,
    without a job). A round that follows streamed text starts with a paragraph break."""

    __slots__ = ("_job", "_prefix", "_thread", "_worker", "sent", "text")

    def __init__(self, worker: LLMWorker, job: Job | None, thread: str, prefix: str) -> None:
        self._worker = worker
        self._job = job
        self._thread = thread
        self._prefix = prefix
        self.text: list[str] = []
        self.sent = 0
        """How many of ``text`` went out already."""

    async def flush(self) -> None:
        """Send what waits, as one chunk."""
        if len(self.text) > self.sent:
            joined = self._prefix + "".join(self.text[self.sent :])
            self._prefix = ""
            self.sent = len(self.text)
            await self._worker._send_text(joined, self._job, self._thread)


@contextlib.asynccontextmanager
async def _closing(
    stream: Any, failed: Callable[[Exception], None] | None = None
) -> AsyncIterator[None]:
    """Close the backend's stream when the round ends, even when it is cancelled while the
    stream waits at a ``yield`` (an async generator otherwise closes only when collected);
    ``failed`` is told of an exception that ends the round."""
    try:
        yield
    except Exception as exc:
        if failed is not None:
            failed(exc)
        raise
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


_LIMIT_OPTIONS = ("max_completion_tokens", "max_output_tokens", "max_tokens")
"""Names backends give their reply's token limit, the most specific first."""


class _UsageSum:
    """The token counts of a run's rounds added up; a count is ``None`` (unknown) unless
    every round reported it."""

    _FIELDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")

    def __init__(self) -> None:
        self._sums: dict[str, int | None] = dict.fromkeys(self._FIELDS, 0)
        self._round: Usage | None = None

    def add(self, usage: Usage) -> None:
        """A round's ``Usage`` (several in one round add up)."""
        held = self._round
        if held is not None:
            usage = Usage(
                *(
                    None if a is None or b is None else a + b
                    for a, b in (
                        (getattr(held, name), getattr(usage, name)) for name in self._FIELDS
                    )
                )
            )
        self._round = usage

    def end_round(self) -> Usage | None:
        """Add the round's usage to the sums; returns it (None when none was reported)."""
        reported, self._round = self._round, None
        for name, total in self._sums.items():
            value = None if reported is None else getattr(reported, name)
            self._sums[name] = None if total is None or value is None else total + value
        return reported

    def totals(self) -> dict[str, int | None]:
        prompt, completion = self._sums["prompt_tokens"], self._sums["completion_tokens"]
        total = None if prompt is None or completion is None else prompt + completion
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": total,
            "cached_tokens": self._sums["cached_tokens"],
            "reasoning_tokens": self._sums["reasoning_tokens"],
        }


def _object(arguments: str) -> bool:
    """Whether a tool call's arguments are a JSON object (empty arguments are not: the
    history then carries ``{}``)."""
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


def _json(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return json.dumps(str(value))


def unknown_tool_source(prefix: str, name: str, registered: Any) -> str:
    """What to say about a ``tools`` entry ``PREFIX:NAME`` whose prefix no plugin
    registered: the entry it likely meant when the prefix is a typo of an installed one,
    else which plugin to install."""
    prefixes = sorted(registered.entries)
    known = ", ".join(f"'{p}:'" for p in prefixes) or "none"
    typo = did_you_mean(prefix, prefixes, f":{name}")
    if typo:
        return f"no tool source {prefix!r} is installed{typo} (installed: {known})"
    return (
        f"no tool source {prefix!r} is installed (installed: {known}); install the plugin "
        "that provides it (agent-plugin-mcp provides 'mcp:'; how: "
        f"{docs_url('configuration.md#installing-plugins')})"
    )


__all__ = ["DEFAULT_BACKEND", "LLMError", "LLMWorker", "LLMWorkerConfig"]
