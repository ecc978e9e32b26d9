"""LLM workers: ``@tool`` schemas, the tool loop, activation, jobs, streaming, events,
backends chosen by name, the offline backend's documented forms, the ``assistant`` worker,
and ``framework run --job assistant`` / ``framework backends``."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import llm_plugin  # tests/ is on sys.path (pytest's rootdir conftest)
import pytest
import sample_plugin
from click.testing import CliRunner, Result
from publishers import Recorder
from pydantic import BaseModel, ConfigDict, Field

from framework import (
    BaseWorker,
    ContentType,
    Event,
    EventModel,
    EventType,
    JobError,
    JobEvent,
    JobStatus,
    LLMWorker,
    LLMWorkerActivationArgs,
    WorkerErrorData,
    WorkerRunner,
    hookimpl,
    tool,
)
from framework.cli import cli
from framework.config import LLMConfig
from framework.llm import (
    Chunk,
    Finish,
    LLMBackend,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from framework.llm.assistant import Assistant
from framework.llm.offline import OfflineBackend, OfflineOptions
from framework.llm.worker import DEFAULT_MAX_ROUNDS

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What OpenAI-compatible servers accept as a function name."""


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def chat(text: str) -> dict[str, Any]:
    """A job payload asking the model about ``text``."""
    return {"messages": [user(text)]}


async def wait_for(predicate: Any) -> None:
    """Poll until ``predicate()`` (the caller's ``fail_after`` bounds the wait)."""
    while not predicate():
        await anyio.sleep(0.005)


# ----------------------------------------------------------------- workers and plugins


class Tools(LLMWorker):
    """An LLM worker with sync, async, failing, delegating and handing-off tools."""

    default_instructions = "You are the test worker."

    @tool
    def add(self, a: int, b: int = 2) -> int:
        """Add two numbers.

        This second paragraph is for the reader of the code, not for the model.

        Args:
            a: the first number.
            b: the second number; the description
                goes on on a second line.
        """
        return a + b

    @tool
    async def shout(self, text: str) -> dict[str, str]:
        """Shout the text back."""
        await anyio.lowlevel.checkpoint()
        return {"text": text.upper()}

    @tool(name="fail")
    def broken(self, why: str = "no reason") -> str:
        """Always raises."""
        raise ValueError(f"broken on purpose: {why}")

    @tool
    async def ask(self, worker: str, text: str) -> dict[str, Any] | None:
        """Send a job to another worker and return its response."""
        async with self.job(worker, payload={"text": text}, timeout=5) as job:
            pass
        return job.response

    @tool
    async def transfer(self, to: str, note: str) -> str:
        """Hand the conversation over to another worker."""
        await self.handoff_to(to, LLMWorkerActivationArgs(messages=[user(note)]))
        return f"handed to {to}"


class Pair(LLMWorker):
    """Two tools that can only finish when they run at the same time."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.ping_called = anyio.Event()
        self.pong_called = anyio.Event()

    @tool
    async def ping(self) -> str:
        """Wait for pong."""
        self.ping_called.set()
        with anyio.fail_after(2):
            await self.pong_called.wait()
        return "met"

    @tool
    async def pong(self) -> str:
        """Wait for ping."""
        self.pong_called.set()
        with anyio.fail_after(2):
            await self.ping_called.wait()
        return "met"


class Observant(Tools):
    """Overrides a job-side callback, so replies to its requests go through its inbox."""

    async def on_job_completed(self, result: Any) -> None:
        pass


class ScriptOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reply: str = Field(default="done", description="the reply once the script is used up")


class Scripted:
    """A backend replying with the next scripted list of chunks on each call (an exception
    in the list is raised there), then with ``options.reply``; it records what it saw."""

    options_model = ScriptOptions

    def __init__(self, name: str, *replies: list[Any]) -> None:
        self.name = name
        self.replies = list(replies)
        self.seen: list[dict[str, Any]] = []

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], options: Any
    ) -> AsyncIterator[Chunk]:
        self.seen.append({"messages": copy.deepcopy(messages), "tools": tools, "options": options})
        reply = self.replies.pop(0) if self.replies else [TextDelta(options.reply), Usage(1, 1)]
        for chunk in reply:
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk


class Gate:
    """A backend whose first call waits until ``opened`` is set; later calls answer at once."""

    name = "gate"
    options_model = ScriptOptions

    def __init__(self) -> None:
        self.opened = anyio.Event()
        self.calls = 0

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], options: Any
    ) -> AsyncIterator[Chunk]:
        self.calls += 1
        if self.calls == 1:
            await self.opened.wait()
        yield TextDelta("answer")
        yield Usage(1, 1)


class Backends:
    """A plugin object registering the given backends."""

    def __init__(self, *backends: Any) -> None:
        self.backends = backends

    @hookimpl
    def register_llm_backends(self, register: Any) -> None:
        for backend in self.backends:
            register(backend)


class FailureWatch:
    """An ``on_worker_failed`` plugin keeping every failure."""

    def __init__(self) -> None:
        self.failures: list[WorkerErrorData] = []

    @hookimpl
    def on_worker_failed(self, error: WorkerErrorData, runner: WorkerRunner) -> None:
        self.failures.append(error)


async def run_job(runner: WorkerRunner, worker: str, payload: dict[str, Any]) -> Any:
    """Send one job; return the context (response, status) and the events it yielded."""
    events: list[JobEvent] = []
    async with runner.job(worker, payload=payload, timeout=10) as job:
        async for event in job:
            events.append(event)
    job.events = events  # type: ignore[attr-defined]
    return job


def content(job: Any) -> str:
    text: str = job.response["message"]["content"]
    return text


# ----------------------------------------------------------------- @tool and the schemas


def test_tool_schema_comes_from_type_hints_and_docstring() -> None:
    specs = {spec.name: spec for spec in Tools("t").tools()}
    assert set(specs) == {"add", "shout", "fail", "ask", "transfer"}
    schema = specs["add"].schema()
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == "add"
    assert function["description"] == "Add two numbers."  # the first paragraph only
    parameters = function["parameters"]
    assert parameters["type"] == "object"
    assert parameters["required"] == ["a"]  # b has a default
    assert parameters["additionalProperties"] is False
    a, b = parameters["properties"]["a"], parameters["properties"]["b"]
    assert a["type"] == "integer" and a["description"] == "the first number."
    assert b["type"] == "integer" and b["default"] == 2
    assert b["description"] == "the second number; the description goes on on a second line."
    json.dumps(schema)  # plain JSON, ready for a backend

    fail = specs["fail"].schema()["function"]
    assert fail["name"] == "fail"  # @tool(name=...) wins over the method name
    assert fail["description"] == "Always raises."
    assert fail["parameters"]["properties"]["why"]["default"] == "no reason"
    assert "required" not in fail["parameters"]
    shout = specs["shout"].schema()["function"]["parameters"]
    assert shout["required"] == ["text"] and shout["properties"]["text"]["type"] == "string"


def test_a_tool_without_docstring_gets_a_default_description() -> None:
    class Bare(LLMWorker):
        @tool
        def nothing(self) -> str:
            return "ok"

    (spec,) = Bare("b").tools()
    assert spec.description == "The nothing tool."
    assert spec.parameters["properties"] == {}


def test_subclasses_inherit_tools_and_can_remove_them() -> None:
    class More(Tools):
        @tool
        def extra(self, n: float) -> float:
            """One more."""
            return n

        async def ask(self, worker: str, text: str) -> dict[str, Any] | None:  # not a tool now
            return None

    names = {spec.name for spec in More("m").tools()}
    assert names == {"add", "shout", "fail", "transfer", "extra"}


def test_tool_definition_mistakes_are_errors_that_say_what_to_do() -> None:
    class NoHint(LLMWorker):
        @tool
        def untyped(self, x) -> str:  # type: ignore[no-untyped-def]
            return str(x)

    with pytest.raises(TypeError, match="parameter 'x' needs a type hint"):
        NoHint("n")

    class VarArgs(LLMWorker):
        @tool
        def many(self, *items: str) -> str:
            return ""

    with pytest.raises(TypeError, match=r"\*args and \*\*kwargs"):
        VarArgs("v")

    with pytest.raises(ValueError, match="1-64 letters"):
        tool(name="has space")(lambda self: None)
    with pytest.raises(TypeError, match="@tool\\(name='x'\\)"):
        tool("x")  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="both a1\\(\\) and a2\\(\\) are the tool 'same'"):

        class Twice(LLMWorker):
            @tool(name="same")
            def a1(self) -> str:
                return ""

            @tool(name="same")
            def a2(self) -> str:
                return ""


@pytest.mark.anyio
async def test_tool_calls_validate_their_arguments_sync_and_async() -> None:
    with anyio.fail_after(5):
        specs = {spec.name: spec for spec in Tools("t").tools()}
        assert await specs["add"].call({"a": 40}) == 42  # a sync method
        assert await specs["add"].call({"a": "1", "b": 1}) == 2  # lax mode, as pydantic
        assert await specs["shout"].call({"text": "hi"}) == {"text": "HI"}  # an async one
        with pytest.raises(ValueError, match="invalid arguments for add: a: Field required"):
            await specs["add"].call({"b": 1})
        with pytest.raises(ValueError, match="c: Extra inputs are not permitted"):
            await specs["add"].call({"a": 1, "c": 3})  # unknown arguments are refused


# ----------------------------------------------------------------- the tool loop


@pytest.mark.anyio
async def test_sync_and_async_tools_run_in_the_tool_loop_on_the_offline_backend() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Tools("t"))
            job = await run_job(
                runner, "t", chat('use add {"a": 1, "b": 2} and use shout {"text": "hi"}')
            )
        assert job.status is JobStatus.COMPLETED
        assert content(job) == 'add returned 3. shout returned {"text": "HI"}.'
        assert job.response["rounds"] == 2


@pytest.mark.anyio
async def test_a_tool_that_raises_gives_the_model_an_error_and_the_job_goes_on() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Tools("t"))
            job = await run_job(runner, "t", chat('use fail {"why": "testing"}'))
        assert job.status is JobStatus.COMPLETED
        assert content(job) == 'fail returned {"error": "ValueError: broken on purpose: testing"}.'


@pytest.mark.anyio
async def test_bad_arguments_and_unknown_tools_are_errors_for_the_model() -> None:
    with anyio.fail_after(10):
        backend = Scripted(
            "script",
            [
                ToolCallDelta(0, id="c1", name="add", arguments='{"a": "many"}'),
                ToolCallDelta(1, id="c2", name="ghost", arguments="{}"),
                ToolCallDelta(2, id="c3", name="add", arguments="[1, 2]"),
                ToolCallDelta(3, id="c4", name="add", arguments="{not json"),
                Usage(1, 4),
            ],
        )
        async with WorkerRunner(plugins=[Backends(backend)]) as runner:
            await runner.add_worker(Tools("t", backend="script"))
            job = await run_job(runner, "t", chat("go"))
        assert job.status is JobStatus.COMPLETED
        assert content(job) == "done"
        results = [m for m in backend.seen[1]["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in results] == ["c1", "c2", "c3", "c4"]
        errors = [json.loads(m["content"])["error"] for m in results]
        assert errors[0].startswith("ValueError: invalid arguments for add: a:")
        assert "errors.pydantic.dev" not in errors[0]  # short, for the model
        assert "no tool named 'ghost'" in errors[1] and "add" in errors[1]
        assert "JSON object" in errors[2]
        assert errors[3].startswith("ValueError: the arguments are not valid JSON")
        assert "cut short" in errors[3]


@pytest.mark.anyio
async def test_arguments_that_are_no_json_object_are_never_sent_back() -> None:
    """A call cut at '{"text' (a real model's, at the token limit) went back verbatim in the
    next round's history, and the server refused the whole request."""
    with anyio.fail_after(10):
        backend = Scripted(
            "script",
            [
                ToolCallDelta(0, id="c1", name="add", arguments='{"a'),
                ToolCallDelta(1, id="c2", name="add", arguments="[1]"),
                ToolCallDelta(2, id="c3", name="add", arguments=""),
                ToolCallDelta(3, id="c4", name="add", arguments='{"a": 2}'),
            ],
        )
        async with WorkerRunner(plugins=[Backends(backend)]) as runner:
            await runner.add_worker(Tools("t", backend="script"))
            job = await run_job(runner, "t", chat("go"))
        assert job.status is JobStatus.COMPLETED
        [assistant] = [m for m in backend.seen[1]["messages"] if m["role"] == "assistant"]
        sent = [c["function"]["arguments"] for c in assistant["tool_calls"]]
        assert sent == ["{}", "{}", "{}", '{"a": 2}']
        results = [json.loads(m["content"]) for m in backend.seen[1]["messages"][-4:]]
        assert "not valid JSON" in results[0]["error"]
        assert "JSON object" in results[1]["error"]
        assert results[3] == 4  # 2 + the default b


@pytest.mark.anyio
async def test_several_tool_calls_in_one_turn_run_concurrently() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Pair("p"))
            started = time.perf_counter()
            job = await run_job(runner, "p", chat("use ping and use pong"))
            elapsed = time.perf_counter() - started
        # Run one after the other, each would time out waiting for the other (2 s).
        assert content(job) == "ping returned met. pong returned met."
        assert elapsed < 1.5


@pytest.mark.anyio
async def test_tool_calls_split_across_deltas_are_put_together_in_order() -> None:
    with anyio.fail_after(10):
        backend = Scripted(
            "script",
            [
                TextDelta("Let me add."),
                ToolCallDelta(1, id="second", name="add", arguments='{"a": '),
                ToolCallDelta(0, id="first", name="shout", arguments='{"te'),
                ToolCallDelta(1, arguments="5}"),
                ToolCallDelta(0, arguments='xt": "x"}'),
                Usage(3, 4),
            ],
            [TextDelta("Five"), TextDelta(" and X."), Usage(10, 2)],
        )
        async with WorkerRunner(plugins=[Backends(backend)]) as runner:
            await runner.add_worker(Tools("t", backend="script"))
            job = await run_job(runner, "t", chat("go"))
        assert job.response == {
            "message": {"role": "assistant", "content": "Five and X."},
            "usage": {
                "prompt_tokens": 13,
                "completion_tokens": 6,
                "total_tokens": 19,
                "cached_tokens": None,
                "reasoning_tokens": None,
            },
            "rounds": 2,
            "finish_reason": "stop",
        }
        second_call = backend.seen[1]["messages"]
        assert second_call[0] == {"role": "system", "content": "You are the test worker."}
        assert second_call[2] == {
            "role": "assistant",
            "content": "Let me add.",
            "tool_calls": [
                {
                    "id": "first",
                    "type": "function",
                    "function": {"name": "shout", "arguments": '{"text": "x"}'},
                },
                {
                    "id": "second",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 5}'},
                },
            ],
        }
        assert second_call[3:] == [
            {"role": "tool", "tool_call_id": "first", "content": '{"text": "X"}'},
            {"role": "tool", "tool_call_id": "second", "content": "7"},
        ]
        assert {t["function"]["name"] for t in backend.seen[0]["tools"]} == {
            "add",
            "shout",
            "fail",
            "ask",
            "transfer",
        }


@pytest.mark.anyio
async def test_the_tool_loop_is_bounded_by_default_to_10_rounds() -> None:
    with anyio.fail_after(10):
        loop = llm_plugin.LoopBackend()
        assert LLMWorker("x").max_rounds == DEFAULT_MAX_ROUNDS == 10
        async with WorkerRunner(plugins=[Backends(loop)]) as runner:
            await runner.add_worker(Tools("t", backend="loop"))
            with pytest.raises(JobError) as caught:
                await run_job(runner, "t", chat("go"))
        assert caught.value.status is JobStatus.FAILED
        error = caught.value.response["error"]
        assert "still calling tools after 10 rounds" in error and "max_rounds" in error
        assert loop.calls == 10


@pytest.mark.anyio
async def test_max_rounds_is_configurable() -> None:
    with anyio.fail_after(10):
        loop = llm_plugin.LoopBackend()
        async with WorkerRunner(plugins=[Backends(loop)]) as runner:
            await runner.add_worker(Tools("looping", backend="loop", max_rounds=3))
            await runner.add_worker(Tools("one", max_rounds=1))
            await runner.add_worker(Tools("two", max_rounds=2))
            with pytest.raises(JobError, match="after 3 rounds") as caught:
                await run_job(runner, "looping", chat("go"))
            assert caught.value.status is JobStatus.FAILED
            assert loop.calls == 3
            # A tool call and the answer to its result take two rounds.
            with pytest.raises(JobError, match="after 1 round;"):
                await run_job(runner, "one", chat('use add {"a": 1}'))
            job = await run_job(runner, "two", chat('use add {"a": 1}'))
            assert content(job) == "add returned 3."
        with pytest.raises(ValueError, match="max_rounds must be at least 1"):
            LLMWorker("x", max_rounds=0)


# ----------------------------------------------------------------- delegation and handoff


@pytest.mark.anyio
async def test_a_tool_delegates_a_job_to_another_worker() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(llm_plugin.Shout("shout"))
            await runner.add_worker(Tools("t"))
            job = await run_job(runner, "t", chat('use ask {"worker": "shout", "text": "hi"}'))
            assert content(job) == 'ask returned {"text": "HI"}.'
            # A delegated job that fails is an error result for the model, not a crash.
            job = await run_job(runner, "t", chat('use ask {"worker": "ghost", "text": "hi"}'))
            assert job.status is JobStatus.COMPLETED
            assert 'ask returned {"error": "JobError:' in content(job)


@pytest.mark.anyio
async def test_a_tool_hands_off_to_another_worker() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            front = Tools("front")
            back = LLMWorker("back", active=False)
            await runner.add_worker(front)
            await runner.add_worker(back)
            job = await run_job(
                runner, "front", chat('use transfer {"to": "back", "note": "over to you"}')
            )
            assert content(job) == "transfer returned handed to back."
            await wait_for(lambda: len(back.context) == 2)
            assert not front.active and back.active
            assert back.context == [
                user("over to you"),
                {"role": "assistant", "content": "You said: over to you"},
            ]
            with pytest.raises(JobError, match="inactive"):
                await run_job(runner, "front", chat("hello?"))


# ----------------------------------------------------------------- activation


async def activate(runner: WorkerRunner, name: str, args: LLMWorkerActivationArgs) -> None:
    """Activate ``name`` from a plain worker (the way another worker would)."""
    boss = runner.workers.get("boss")
    if boss is None:
        boss = BaseWorker("boss")
        await runner.add_worker(boss)
    await boss.activate_worker(name, args)


@pytest.mark.anyio
async def test_activation_appends_the_messages_and_runs_the_model() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            worker = Tools("t", active=False)
            await runner.add_worker(worker)
            await activate(
                runner, "t", LLMWorkerActivationArgs(messages=[user('use add {"a": 5}')])
            )
            await wait_for(lambda: len(worker.context) == 4)
            assert worker.active
            # The whole exchange joins the conversation: the call, its result, the answer.
            first, call, result, answer = worker.context
            assert first == user('use add {"a": 5}')
            assert call["tool_calls"][0]["function"]["name"] == "add"
            assert result == {"role": "tool", "tool_call_id": "call_0", "content": "7"}
            assert answer == {"role": "assistant", "content": "add returned 7."}


@pytest.mark.anyio
async def test_activation_with_run_llm_false_only_appends_the_messages() -> None:
    with anyio.fail_after(10):
        backend = Scripted("script")
        async with WorkerRunner(plugins=[Backends(backend)]) as runner:
            worker = LLMWorker("llm", active=False, backend="script", instructions="Be brief.")
            await runner.add_worker(worker)
            await activate(
                runner, "llm", LLMWorkerActivationArgs(messages=[user("first")], run_llm=False)
            )
            await wait_for(lambda: worker.context == [user("first")])
            await activate(runner, "llm", LLMWorkerActivationArgs())  # no messages: no run
            await activate(runner, "llm", LLMWorkerActivationArgs(messages=[user("second")]))
            await wait_for(lambda: len(worker.context) == 3)
        assert worker.context == [
            user("first"),
            user("second"),
            {"role": "assistant", "content": "done"},
        ]
        assert len(backend.seen) == 1  # only the last activation ran the model
        assert backend.seen[0]["messages"] == [
            {"role": "system", "content": "Be brief."},
            user("first"),
            user("second"),
        ]


@pytest.mark.anyio
async def test_a_tool_can_delegate_a_job_during_an_activation_run() -> None:
    # The activation run must not hold up the worker's inbox: replies to the jobs its
    # tools send (here through the inbox, as on a network bus) have to get in.
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(llm_plugin.Shout("shout"))
            worker = Observant("t", active=False)
            await runner.add_worker(worker)
            message = user('use ask {"worker": "shout", "text": "hi"}')
            await activate(runner, "t", LLMWorkerActivationArgs(messages=[message]))
            await wait_for(lambda: len(worker.context) == 4)
        assert worker.context[-1] == {
            "role": "assistant",
            "content": 'ask returned {"text": "HI"}.',
        }


@pytest.mark.anyio
async def test_the_worker_takes_jobs_while_an_activation_run_is_thinking() -> None:
    with anyio.fail_after(10):
        gate = Gate()
        async with WorkerRunner(plugins=[Backends(gate)]) as runner:
            worker = LLMWorker("llm", active=False, backend="gate")
            await runner.add_worker(worker)
            try:
                await activate(runner, "llm", LLMWorkerActivationArgs(messages=[user("think")]))
                await wait_for(lambda: gate.calls == 1)
                with anyio.fail_after(2):
                    job = await run_job(runner, "llm", chat("quick question"))
                assert content(job) == "answer"
            finally:
                gate.opened.set()
            await wait_for(lambda: len(worker.context) == 2)


# ----------------------------------------------------------------- jobs


@pytest.mark.anyio
async def test_a_job_streams_token_deltas_and_responds_with_the_message_and_usage() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            # With a delay between words the backend waits before each one: each delta goes
            # out at once, as its own chunk.
            slow = LLMWorker("llm", instructions="Be kind.", backend_options={"delay": 0.001})
            await runner.add_worker(slow)
            job = await run_job(runner, "llm", chat("hello big world"))
            # Without a delay the deltas arrive back to back: they go out as one chunk.
            await runner.add_worker(LLMWorker("fast", instructions="Be kind."))
            fast = await run_job(runner, "fast", chat("hello big world"))
        assert job.status is JobStatus.COMPLETED
        types = [event.type for event in job.events]
        assert types[0] == JobEvent.STREAM_START and types[-1] == JobEvent.STREAM_END
        deltas = [e.data for e in job.events if e.type == JobEvent.STREAM_DATA]
        assert deltas == ["You", " said:", " hello", " big", " world"]
        joined = [e.data for e in fast.events if e.type == JobEvent.STREAM_DATA]
        assert joined == ["You said: hello big world"]
        assert fast.response == job.response
        assert job.response == {
            "message": {"role": "assistant", "content": "You said: hello big world"},
            "usage": {
                "prompt_tokens": 5,
                "completion_tokens": 5,
                "total_tokens": 10,
                "cached_tokens": None,
                "reasoning_tokens": None,
            },
            "rounds": 1,
            "finish_reason": "stop",
        }


# ----------------------------------------------------------------- finish reasons and usage


async def run_scripted(*replies: list[Any], worker: str = "t") -> tuple[Any, Scripted]:
    """One job to a ``Tools`` worker on a ``Scripted`` backend: the job (or its JobError)."""
    backend = Scripted("script", *replies)
    async with WorkerRunner(plugins=[Backends(backend)]) as runner:
        await runner.add_worker(Tools(worker, backend="script"))
        try:
            job = await run_job(runner, worker, chat("go"))
        except JobError as exc:
            return exc, backend
    return job, backend


@pytest.mark.anyio
async def test_a_text_reply_cut_by_the_token_limit_completes_with_a_warning() -> None:
    with anyio.fail_after(10):
        job, _ = await run_scripted([TextDelta("Once upon a"), Finish("length"), Usage(3, 4)])
        assert job.status is JobStatus.COMPLETED
        assert job.response["finish_reason"] == "length"
        assert content(job) == "Once upon a"
        [update] = [e.data for e in job.events if e.type == JobEvent.UPDATE]
        assert update["finish_reason"] == "length" and "max_tokens" in update["warning"]


@pytest.mark.anyio
async def test_a_tool_call_cut_by_the_token_limit_is_not_run() -> None:
    with anyio.fail_after(10):
        cut = [ToolCallDelta(0, id="c1", name="add", arguments='{"a": 1}'), Finish("length")]
        error, backend = await run_scripted(cut)
        assert isinstance(error, JobError) and error.status is JobStatus.FAILED
        message = error.response["error"]
        assert "cut by the token limit in the middle of a tool call (add" in message
        assert "no tool was run" in message and "max_tokens" in message
        assert len(backend.seen) == 1  # the model was not called again


@pytest.mark.anyio
async def test_a_reply_stopped_by_the_content_filter_fails_the_job() -> None:
    with anyio.fail_after(10):
        error, _ = await run_scripted([TextDelta("I"), Finish("content_filter")])
        assert isinstance(error, JobError) and error.status is JobStatus.FAILED
        assert "content filter stopped the reply" in error.response["error"]


@pytest.mark.anyio
async def test_the_finish_reason_is_inferred_and_a_server_word_is_kept() -> None:
    with anyio.fail_after(10):
        job, _ = await run_scripted([TextDelta("hi")])  # no Finish, no Usage
        assert job.response["finish_reason"] == "stop"
        assert job.response["usage"] == {
            "prompt_tokens": None,
            "completion_tokens": None,
            "total_tokens": None,
            "cached_tokens": None,
            "reasoning_tokens": None,
        }
        job, _ = await run_scripted([TextDelta("hi"), Finish("eos"), Usage(1, 1)])
        assert job.status is JobStatus.COMPLETED and job.response["finish_reason"] == "eos"


@pytest.mark.anyio
async def test_usage_adds_up_cached_and_reasoning_tokens_and_unknown_stays_unknown() -> None:
    with anyio.fail_after(10):
        call = ToolCallDelta(0, id="c1", name="add", arguments='{"a": 1}')
        job, _ = await run_scripted(
            [call, Finish("tool_calls"), Usage(10, 5, cached_tokens=8, reasoning_tokens=3)],
            [ReasoningDelta("think"), ReasoningDelta("ing"), TextDelta("3"), Usage(20, 2, 16)],
        )
        assert job.response["usage"] == {
            "prompt_tokens": 30,
            "completion_tokens": 7,
            "total_tokens": 37,
            "cached_tokens": 24,
            "reasoning_tokens": None,  # the second round did not say
        }
        assert job.response["reasoning"] == "thinking"
        assert content(job) == "3"  # the thinking is not part of the answer
        assert "reasoning" not in job.response["message"]
        job, _ = await run_scripted([call], [TextDelta("3"), Usage(20, 2)])
        assert job.response["usage"]["prompt_tokens"] is None  # the first round said nothing


@pytest.mark.anyio
async def test_a_job_runs_on_its_own_messages_not_the_workers_context() -> None:
    with anyio.fail_after(10):
        backend = Scripted("script")
        async with WorkerRunner(plugins=[Backends(backend)]) as runner:
            worker = LLMWorker("llm", backend="script")
            await runner.add_worker(worker)
            system = {"role": "system", "content": "Answer in French."}
            await run_job(runner, "llm", {"messages": [system, user("hi")]})
        assert backend.seen[0]["messages"] == [system, user("hi")]  # its own system message
        assert worker.context == []


@pytest.mark.parametrize(
    "payload",
    [{}, {"messages": "hello"}, {"messages": ["hello"]}, {"text": "hello"}],
    ids=["empty", "string", "list-of-strings", "other-key"],
)
@pytest.mark.anyio
async def test_a_bad_payload_fails_the_job_with_a_clear_message(payload: dict[str, Any]) -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(LLMWorker("llm"))
            with pytest.raises(JobError) as caught:
                await run_job(runner, "llm", payload)
        assert caught.value.status is JobStatus.FAILED
        error = caught.value.response["error"]
        assert "worker 'llm' needs payload" in error
        assert '{"messages": [{"role": "user", "content": "..."}]}' in error


@pytest.mark.anyio
async def test_a_job_that_times_out_while_the_model_streams_is_cancelled() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            worker = LLMWorker("slow", backend_options={"delay": 0.05})
            await runner.add_worker(worker)
            received: list[str] = []
            with pytest.raises(JobError) as caught:
                async with runner.job(
                    "slow", payload=chat("a b c d e f g h i j"), timeout=0.2
                ) as job:
                    async for event in job:
                        if event.type == JobEvent.STREAM_DATA:
                            received.append(event.data)
            assert caught.value.status is JobStatus.CANCELLED and caught.value.timed_out
            assert 0 < len(received) < 13
            await wait_for(lambda: not worker.active_jobs)
            # The worker carries on.
            assert content(await run_job(runner, "slow", chat("again"))) == "You said: again"


@pytest.mark.anyio
async def test_a_backend_that_raises_ends_the_job_error_with_its_message() -> None:
    with anyio.fail_after(10):
        backend = Scripted(
            "script", [TextDelta("Hal"), RuntimeError("the server said 401: check your key")]
        )
        async with WorkerRunner(plugins=[Backends(backend)]) as runner:
            await runner.add_worker(LLMWorker("llm", backend="script"))
            with pytest.raises(JobError) as caught:
                await run_job(runner, "llm", chat("hi"))
        assert caught.value.status is JobStatus.ERROR
        assert caught.value.response["error"] == "RuntimeError: the server said 401: check your key"


# ----------------------------------------------------------------- backends by name


@pytest.mark.anyio
async def test_an_unknown_backend_fails_the_worker_at_start_naming_the_registered_ones() -> None:
    with anyio.fail_after(10):
        watch = FailureWatch()
        async with WorkerRunner(plugins=[watch, Backends(Scripted("script"))]) as runner:
            await runner.add_worker(LLMWorker("llm", backend="nope"))
            assert "llm" not in runner.registry
            assert "llm" not in runner.workers
        (failure,) = watch.failures
        assert failure.worker_name == "llm"
        assert "no LLM backend named 'nope'" in failure.error
        assert "registered: offline, script" in failure.error
        assert "install the plugin" in failure.error


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"tokens": -1}, "option 'tokens' of LLM backend 'offline': Input should be greater"),
        ({"temperature": 0.2}, "option 'temperature' of LLM backend 'offline': Extra inputs"),
        ({"delay": "slow"}, "option 'delay' of LLM backend 'offline': Input should be a valid"),
    ],
)
@pytest.mark.anyio
async def test_bad_backend_options_fail_the_worker_at_start(
    options: dict[str, Any], expected: str
) -> None:
    with anyio.fail_after(10):
        watch = FailureWatch()
        async with WorkerRunner(plugins=[watch]) as runner:
            await runner.add_worker(LLMWorker("llm", backend_options=options))
            assert "llm" not in runner.registry
        (failure,) = watch.failures
        assert expected in failure.error
        assert "worker 'llm'" in failure.error


@pytest.mark.anyio
async def test_the_run_configuration_chooses_the_default_backend_and_its_options() -> None:
    with anyio.fail_after(10):
        backend = Scripted("script")
        async with WorkerRunner(plugins=[Backends(backend)]) as runner:
            runner.llm_config = LLMConfig(backend="script", options={"reply": "configured"})
            await runner.add_worker(LLMWorker("default"))
            await runner.add_worker(LLMWorker("own", backend_options={"reply": "my own"}))
            # The [llm] options belong to the configured backend only.
            await runner.add_worker(LLMWorker("offline", backend="offline"))
            assert content(await run_job(runner, "default", chat("hi"))) == "configured"
            assert content(await run_job(runner, "own", chat("hi"))) == "my own"
            assert content(await run_job(runner, "offline", chat("hi"))) == "You said: hi"


@pytest.mark.anyio
async def test_a_backend_registered_by_import_path_is_imported_when_used() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[llm_plugin]) as runner:
            assert runner.llm_backends.entries["loop-by-path"].value == "llm_plugin:LoopBackend"
            await runner.add_worker(Tools("t", backend="loop-by-path", max_rounds=2))
            assert isinstance(runner.llm_backends.get("loop-by-path"), llm_plugin.LoopBackend)
            with pytest.raises(JobError, match="after 2 rounds"):
                await run_job(runner, "t", chat("go"))


@pytest.mark.anyio
async def test_a_registered_object_that_is_no_backend_fails_the_worker_at_start() -> None:
    # sample_plugin registers a bare object() as "sample-llm": it has no stream().
    with anyio.fail_after(10):
        watch = FailureWatch()
        async with WorkerRunner(plugins=[watch, sample_plugin]) as runner:
            await runner.add_worker(LLMWorker("llm", backend="sample-llm"))
            assert "llm" not in runner.registry
        (failure,) = watch.failures
        assert "sample-llm" in failure.error and "stream" in failure.error


def test_the_offline_backend_satisfies_the_protocol() -> None:
    assert isinstance(OfflineBackend(), LLMBackend)
    assert OfflineBackend.name == "offline"
    assert OfflineBackend.options_model is OfflineOptions


# ----------------------------------------------------------------- events


def of_kind(events: list[EventModel], event: Event) -> list[EventModel]:
    return [e for e in events if e.event is event]


@pytest.mark.anyio
async def test_events_for_token_deltas_tool_calls_and_tool_results() -> None:
    with anyio.fail_after(10):
        recorder = Recorder()
        async with WorkerRunner(plugins=[recorder]) as runner:
            await runner.add_worker(Tools("t"))
            job = await run_job(runner, "t", chat('use shout {"text": "hi"}'))
        thread = job.job_id
        tools = of_kind(recorder.events, Event.TOOL_EXECUTION)
        assert [(e.event_type, e.content_type) for e in tools] == [
            (EventType.START, [ContentType.TOOL_CALL]),
            (EventType.RESULT, [ContentType.TOOL_RESULT]),
        ]
        call, result = tools
        for event in tools:
            assert event.node_name == "t" and event.thread_id == thread
        assert call.data["name"] == "shout"
        assert json.loads(call.data["arguments"]) == {"text": "hi"}
        assert result.data["name"] == "shout"
        assert json.loads(result.data["result"]) == {"text": "HI"}

        deltas = of_kind(recorder.events, Event.STREAMING)
        assert "".join(e.content for e in deltas) == 'shout returned {"text": "HI"}.'
        for event in deltas:
            assert event.event_type is EventType.PROGRESS
            assert event.content_type == [ContentType.TEXT]
            assert event.delta is True and event.delta_type == "text"
            assert event.node_name == "t" and event.thread_id == thread
        assert [e.chunk_index for e in deltas] == list(range(len(deltas)))
        # The tool ran before the answer was streamed, inside the job.
        order = [e.sequence_id for e in (call, result, deltas[0])]
        assert order == sorted(order)
        started = next(e for e in recorder.events if e.event_type is EventType.START)
        finished = [e for e in recorder.events if e.event_type is EventType.RESULT][-1]
        assert started.sequence_id < call.sequence_id
        assert finished.event is Event.NODE_EXECUTION and finished.thread_id == thread
        assert finished.sequence_id > deltas[-1].sequence_id


@pytest.mark.anyio
async def test_events_of_an_activation_run() -> None:
    with anyio.fail_after(10):
        recorder = Recorder()
        async with WorkerRunner(plugins=[recorder]) as runner:
            worker = Tools("t", active=False)
            await runner.add_worker(worker)
            await activate(
                runner, "t", LLMWorkerActivationArgs(messages=[user('use add {"a": 1}')])
            )
            await wait_for(lambda: len(worker.context) == 4)
        tools = of_kind(recorder.events, Event.TOOL_EXECUTION)
        assert [e.event_type for e in tools] == [EventType.START, EventType.RESULT]
        assert tools[1].data["result"] == "3"
        deltas = of_kind(recorder.events, Event.STREAMING)
        assert "".join(e.content for e in deltas) == "add returned 3."
        for event in [*tools, *deltas]:
            assert event.node_name == "t"
            assert event.thread_id == ""  # no job: the worker's own conversation
        assert all(e.delta and e.content_type == [ContentType.TEXT] for e in deltas)


@pytest.mark.anyio
async def test_an_activation_run_cut_by_the_token_limit_publishes_a_warning() -> None:
    with anyio.fail_after(10):
        recorder = Recorder()
        backend = Scripted("script", [TextDelta("Once upon"), Finish("length")])
        async with WorkerRunner(plugins=[recorder, Backends(backend)]) as runner:
            worker = Tools("t", active=False, backend="script")
            await runner.add_worker(worker)
            await activate(runner, "t", LLMWorkerActivationArgs(messages=[user("a story")]))
            await wait_for(lambda: len(worker.context) == 2)
        [warning] = [e for e in recorder.events if e.data and "warning" in e.data]
        assert (warning.event, warning.event_type) == (Event.NODE_EXECUTION, EventType.UPDATE)
        assert warning.data["finish_reason"] == "length" and warning.node_name == "t"
        assert worker.context[-1] == {"role": "assistant", "content": "Once upon"}


# ----------------------------------------------------------------- the offline backend


def function(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": "", "parameters": {}}}


async def offline(
    messages: list[dict[str, Any]], tools: tuple[str, ...] = (), **options: Any
) -> list[Chunk]:
    backend = OfflineBackend()
    schemas = [function(name) for name in tools]
    return [chunk async for chunk in backend.stream(messages, schemas, OfflineOptions(**options))]


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


def usage_is_last(chunks: list[Chunk]) -> Usage:
    usages = [c for c in chunks if isinstance(c, Usage)]
    assert len(usages) == 1 and chunks[-1] is usages[0]
    return usages[0]


@pytest.mark.anyio
async def test_offline_replies_word_by_word() -> None:
    with anyio.fail_after(5):
        chunks = await offline([user("hello big world")])
        assert chunks[:-1] == [
            TextDelta("You"),
            TextDelta(" said:"),
            TextDelta(" hello"),
            TextDelta(" big"),
            TextDelta(" world"),
        ]
        assert usage_is_last(chunks) == Usage(prompt_tokens=3, completion_tokens=5)
        # The last user message counts, and a conversation without one gets a greeting.
        messages = [user("first"), {"role": "assistant", "content": "ok"}, user("second")]
        assert text_of(await offline(messages)) == "You said: second"
        assert text_of(await offline([])).startswith("Hello! Say something")
        assert 'use NAME {"arg": "value"}' in text_of(await offline([]))


@pytest.mark.anyio
async def test_offline_calls_a_tool_with_its_arguments_split_across_two_deltas() -> None:
    with anyio.fail_after(5):
        chunks = await offline([user('use shout {"text": "hi"}')], ("shout",))
        calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
        assert len(calls) == 2
        assert (calls[0].index, calls[0].id, calls[0].name) == (0, "call_0", "shout")
        assert (calls[1].index, calls[1].id, calls[1].name) == (0, None, None)
        assert calls[0].arguments and calls[1].arguments
        assert calls[0].arguments + calls[1].arguments == '{"text": "hi"}'
        assert text_of(chunks) == ""
        assert usage_is_last(chunks).completion_tokens == 1


@pytest.mark.anyio
async def test_offline_calls_several_tools_in_one_turn() -> None:
    with anyio.fail_after(5):
        message = 'use add {"a": 1} and use shout {"text": "a and b"}\nuse count'
        chunks = await offline([user(message)], ("add", "shout", "count"))
        calls: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            if isinstance(chunk, ToolCallDelta):
                call = calls.setdefault(chunk.index, {"name": "", "arguments": ""})
                call["name"] = chunk.name or call["name"]
                call["arguments"] += chunk.arguments
        assert calls == {
            0: {"name": "add", "arguments": '{"a": 1}'},
            1: {"name": "shout", "arguments": '{"text": "a and b"}'},
            2: {"name": "count", "arguments": "{}"},  # no JSON: no arguments
        }
        assert usage_is_last(chunks).completion_tokens == 3


@pytest.mark.anyio
async def test_offline_braces_that_are_not_json_become_a_text_argument() -> None:
    with anyio.fail_after(5):
        chunks = await offline([user("use shout {hi there}")], ("shout",))
        arguments = "".join(c.arguments for c in chunks if isinstance(c, ToolCallDelta))
        assert json.loads(arguments) == {"text": "{hi there}"}


@pytest.mark.anyio
async def test_offline_answers_an_unknown_tool_with_the_list_of_tools() -> None:
    with anyio.fail_after(5):
        chunks = await offline([user("use nope {}")], ("add", "shout"))
        assert not any(isinstance(c, ToolCallDelta) for c in chunks)
        assert text_of(chunks) == "I have no tool named nope; my tools are: add, shout."
        assert text_of(await offline([user("use nope")])).endswith("my tools are: none.")


@pytest.mark.anyio
async def test_offline_reports_the_tool_results_of_the_turn() -> None:
    with anyio.fail_after(5):
        messages = [
            user("use add and use shout"),
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_0",
                        "type": "function",
                        "function": {"name": "add", "arguments": "{}"},
                    },
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "shout", "arguments": "{}"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_0", "content": "3"},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"text": "HI"}'},
        ]
        chunks = await offline(messages, ("add", "shout"))
        assert text_of(chunks) == 'add returned 3. shout returned {"text": "HI"}.'
        assert chunks[0] == TextDelta("add") and chunks[1] == TextDelta(" returned")
        assert usage_is_last(chunks).completion_tokens == 7  # words


@pytest.mark.anyio
async def test_offline_tokens_option_emits_exactly_n_tokens() -> None:
    with anyio.fail_after(5):
        chunks = await offline([user("ignored")], ("add",), tokens=5)
        deltas = [c for c in chunks if isinstance(c, TextDelta)]
        assert len(deltas) == 5
        assert usage_is_last(chunks).completion_tokens == 5
        assert "".join(d.text for d in deltas) == "tok tok tok tok tok"
        assert usage_is_last(await offline([user("x")], tokens=0)).completion_tokens == 0


@pytest.mark.anyio
async def test_offline_delay_option_sleeps_between_deltas() -> None:
    with anyio.fail_after(5):
        started = time.perf_counter()
        chunks = await offline([user("one two three")], delay=0.02)
        assert text_of(chunks) == "You said: one two three"
        assert time.perf_counter() - started >= 5 * 0.02 * 0.9


# ----------------------------------------------------------------- the assistant


@pytest.mark.anyio
async def test_the_assistant_calls_another_worker_as_a_tool() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(llm_plugin.Shout("shout"))
            await runner.add_worker(Assistant("assistant"))
            job = await run_job(runner, "assistant", chat('use shout {"text": "hi"}'))
            assert content(job) == 'shout returned {"text": "HI"}.'
            deltas = "".join(e.data for e in job.events if e.type == JobEvent.STREAM_DATA)
            assert deltas == content(job)
            # A worker that fails the job is an error result; the assistant's job completes.
            job = await run_job(runner, "assistant", chat("use shout {}"))
            assert job.status is JobStatus.COMPLETED
            assert 'shout needs a string \\"text\\"' in content(job)
            # It does not offer itself.
            job = await run_job(runner, "assistant", chat("use assistant {}"))
            assert content(job) == "I have no tool named assistant; my tools are: shout."


@pytest.mark.anyio
async def test_the_assistant_offers_only_tool_names_a_model_accepts() -> None:
    with anyio.fail_after(10):
        backend = Scripted("script")
        async with WorkerRunner(plugins=[Backends(backend)]) as runner:
            await runner.add_worker(llm_plugin.Shout("shout"))
            await runner.add_worker(llm_plugin.Shout("team.shout"))
            await runner.add_worker(llm_plugin.Shout("shout two"))
            await runner.add_worker(Assistant("assistant", backend="script"))
            await run_job(runner, "assistant", chat("hi"))
        names = [t["function"]["name"] for t in backend.seen[0]["tools"]]
        assert "shout" in names
        assert all(TOOL_NAME.match(name) for name in names), names


# ----------------------------------------------------------------- the command line

ENV = {"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1", "FRAMEWORK_PLUGINS": None}
ASK_SHOUT = json.dumps(chat('use shout {"text": "hi"}'))


@pytest.fixture
def in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no framework.toml or pyproject.toml around
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV, catch_exceptions=False)


def test_cli_run_job_assistant_streams_its_answer_to_a_tool_call(in_empty_directory: Path) -> None:
    result = invoke("-p", "llm_plugin", "run", "--job", "assistant", "--payload", ASK_SHOUT)
    assert result.exit_code == 0, result.output
    (streamed,) = result.stdout.splitlines()  # stdout: the stream's text only
    assert streamed == 'shout returned {"text": "HI"}.'
    response = result.stderr.split("response: ", 1)[1].splitlines()[0]  # the response: stderr
    assert json.loads(response)["message"] == {"role": "assistant", "content": streamed}
    assert json.loads(response)["rounds"] == 2


def test_cli_run_job_assistant_json_lines(in_empty_directory: Path) -> None:
    result = invoke(
        "-p", "llm_plugin", "run", "--job", "assistant", "--payload", ASK_SHOUT, "--json"
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0] == {"type": "stream_start", "data": {}}
    assert lines[-2] == {"type": "stream_end", "data": {}}
    data = [line["data"] for line in lines if line["type"] == "stream_data"]
    assert "".join(data) == 'shout returned {"text": "HI"}.'
    assert lines[-1]["type"] == "response" and lines[-1]["status"] == "completed"
    assert set(lines[-1]["response"]["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "reasoning_tokens",
    }


def test_cli_llm_table_of_framework_toml_chooses_the_backend(in_empty_directory: Path) -> None:
    (in_empty_directory / "framework.toml").write_text(
        '[llm]\nbackend = "loop"\noptions = { tool = "shout" }\n'
    )
    result = invoke("-p", "llm_plugin", "run", "--job", "assistant", "--payload", ASK_SHOUT)
    assert result.exit_code == 1
    assert "job to worker 'assistant' ended failed" in result.stderr
    assert "still calling tools after 10 rounds" in result.stderr


@pytest.mark.parametrize(
    ("llm_table", "key", "reason"),
    [
        ('backend = "nope"', "llm.backend", "no LLM backend named 'nope'"),
        ("options = { tokenz = 3 }", "llm.options.tokenz", "unknown key"),
    ],
)
def test_cli_a_bad_llm_table_is_a_configuration_error(
    in_empty_directory: Path, llm_table: str, key: str, reason: str
) -> None:
    (in_empty_directory / "framework.toml").write_text(f"[llm]\n{llm_table}\n")
    result = invoke("run", "--job", "assistant", "--payload", ASK_SHOUT)
    assert result.exit_code == 2, result.output
    assert f"framework.toml: {key}" in result.stderr
    assert reason in result.stderr


def test_cli_backends_lists_the_backends_and_their_options(in_empty_directory: Path) -> None:
    result = invoke("backends")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "offline (plugin offline)",
        "  delay: seconds to sleep between deltas",
        "  tokens: emit exactly this many tokens",
    ]
    result = invoke("-p", "llm_plugin", "backends", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) == {"offline", "loop", "loop-by-path"}
    assert rows["loop"] == {
        "name": "loop",
        "plugin": "llm_plugin",
        "options": {"tool": "the tool it calls, every round"},
        "error": None,
    }
    assert rows["loop-by-path"]["options"] == rows["loop"]["options"]
    result = invoke("-p", "no:offline", "backends")
    assert result.exit_code == 0 and result.stdout == ""


@pytest.mark.anyio
async def test_activations_in_quick_succession_run_one_after_the_other() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            worker = LLMWorker("t", active=False)
            await runner.add_worker(worker)
            await activate(runner, "t", LLMWorkerActivationArgs(messages=[user("first")]))
            await activate(runner, "t", LLMWorkerActivationArgs(messages=[user("second")]))
            await wait_for(lambda: len(worker.context) == 4)
        assert [m["content"] for m in worker.context] == [
            "first",
            "You said: first",
            "second",
            "You said: second",
        ]


class _AwaitableStep:
    """An awaitable that is not a coroutine (valid for __anext__ under the protocol)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Any:
        if False:  # pragma: no cover - makes this a generator
            yield
        if self.value is None:
            raise StopAsyncIteration
        return self.value


class _IteratorBackend:
    """A backend whose stream is an async iterator class, not an async generator."""

    name = "iterator"
    options_model = None

    def stream(self, messages: Any, tools: Any, options: Any) -> Any:
        chunks = iter([TextDelta("hello"), TextDelta(" world"), Usage(1, 2)])

        class Stream:
            def __aiter__(self) -> Any:
                return self

            def __anext__(self) -> Any:
                return _AwaitableStep(next(chunks, None))

        return Stream()


@pytest.mark.anyio
async def test_a_backend_whose_stream_is_a_plain_async_iterator() -> None:
    class Plugin:
        @hookimpl
        def register_llm_backends(self, register: Any) -> None:
            register(_IteratorBackend())

    with anyio.fail_after(5):
        async with WorkerRunner(plugins=[Plugin()]) as runner:
            await runner.add_worker(LLMWorker("t", backend="iterator"))
            job = await run_job(runner, "t", chat("hi"))
        assert job.status is JobStatus.COMPLETED
        assert content(job) == "hello world"


class _NoIndexBackend:
    """Sends two whole tool calls in one turn, both without an index (index 0)."""

    name = "no-index"
    options_model = None

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, messages: Any, tools: Any, options: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            yield ToolCallDelta(0, id="a", name="add", arguments='{"a": 1}')
            yield ToolCallDelta(0, id="b", name="add", arguments='{"a": 10}')
        else:
            results = [m["content"] for m in messages if m.get("role") == "tool"]
            yield TextDelta(f"results {results}")
        yield Usage(1, 1)


@pytest.mark.anyio
async def test_tool_calls_sent_without_their_own_index_stay_apart() -> None:
    backend = _NoIndexBackend()

    class Plugin:
        @hookimpl
        def register_llm_backends(self, register: Any) -> None:
            register(backend)

    with anyio.fail_after(5):
        async with WorkerRunner(plugins=[Plugin()]) as runner:
            await runner.add_worker(Tools("t", backend="no-index"))
            job = await run_job(runner, "t", chat("go"))
        assert content(job) == "results ['3', '12']"
