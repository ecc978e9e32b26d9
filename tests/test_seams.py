"""The seams for plugins: headers, typed payloads and descriptions, the same values on every
bus, ``start_soon``, ``add_plugin``, and the hooks ``on_job_started``,
``on_job_progress``, ``add_request_headers``, ``on_request_completed``, ``runner_service`` and
``register_routes``."""

from __future__ import annotations

import contextvars
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pluggy
import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from framework import (
    BaseWorker,
    Job,
    JobError,
    JobEvent,
    JobStatus,
    WorkerRunner,
    hookimpl,
)
from framework import job as job_handler
from framework.cli import cli
from framework.plugins import PluginHost
from framework.registrars import RouteRegistrar

pytestmark = pytest.mark.anyio


class Echo(BaseWorker):
    @job_handler
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"echo": job.payload, "headers": dict(job.headers)}


# ----------------------------------------------------------------- headers


async def test_headers_reach_the_handler_read_only_for_single_groups_and_fire_and_forget() -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    done = anyio.Event()

    class Keeper(BaseWorker):
        @job_handler
        async def keep(self, job: Job) -> dict[str, Any]:
            seen.append((self.name, dict(job.headers)))
            with pytest.raises(TypeError):
                job.headers["x"] = "y"  # type: ignore[index]
            if len(seen) == 4:
                done.set()
            return {}

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            for name in ("a", "b", "c"):
                await runner.add_worker(Keeper(name))
            async with runner.job("a", headers={"tenant-id": "t1"}):
                pass
            async with runner.job_group("a", "b", headers={"idempotency-key": "k"}):
                pass
            await runner.request_job("c", headers={"traceparent": "00-abc"})
            await done.wait()
            async with runner.job("a") as plain:
                pass
    assert sorted(seen[:1]) == [("a", {"tenant-id": "t1"})]
    assert sorted(seen[1:3]) == [("a", {"idempotency-key": "k"}), ("b", {"idempotency-key": "k"})]
    assert seen[3] == ("c", {"traceparent": "00-abc"})
    assert seen[4] == ("a", {})
    assert plain.status is JobStatus.COMPLETED


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"Tenant": "x"}, "lower-case"),
        ({"a b": "x"}, "lower-case"),
        ({"framework-job": "x"}, "reserved"),
        ({"n": 1}, "must be a str"),
        ({f"h{i}": "x" for i in range(65)}, "at most 64 headers"),
        ({"big": "x" * 9000}, "at most 8192"),
    ],
)
async def test_bad_headers_are_a_value_error_at_the_call(
    headers: dict[str, Any], match: str
) -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Echo("echo"))
            with pytest.raises(ValueError, match=match):
                runner.job("echo", headers=headers)
            with pytest.raises(ValueError, match=match):
                await runner.request_job("echo", headers=headers)
            with pytest.raises(ValueError, match=match):
                runner.job_group("echo", headers=headers)
            # Nothing was sent: the worker still answers the next job at once.
            async with runner.job("echo", headers={"ok": "1"}) as j:
                pass
    assert j.response == {"echo": {}, "headers": {"ok": "1"}}


# ----------------------------------------------------------------- context across jobs

TRACE: contextvars.ContextVar[str] = contextvars.ContextVar("trace", default="")


class Tracing:
    """Context from the request's headers (``on_job_started``) onto the requests the
    handler sends (``add_request_headers``): the way a tracing plugin works."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str]] = []
        self.targets: list[str] = []

    @hookimpl
    def on_job_started(self, job: Job, worker: BaseWorker) -> None:
        self.started.append((worker.name, job.headers.get("trace", "")))
        TRACE.set(job.headers.get("trace", "") + f"/{worker.name}")

    @hookimpl
    def add_request_headers(self, headers: dict[str, str], target: str) -> None:
        self.targets.append(target)
        if TRACE.get():
            headers["trace"] = TRACE.get()


class Outer(BaseWorker):
    @job_handler
    async def outer(self, job: Job) -> dict[str, Any]:
        seen_here = TRACE.get()
        async with self.job_group("inner-1", "inner-2") as group:
            pass
        return {"here": seen_here, "inner": group.responses}


class Inner(BaseWorker):
    @job_handler
    async def inner(self, job: Job) -> dict[str, Any]:
        return {"trace": job.headers.get("trace"), "context": TRACE.get()}


async def test_hook_on_job_started() -> None:
    tracing = Tracing()
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[tracing]) as runner:
            await runner.add_worker(Outer("outer"))
            await runner.add_worker(Inner("inner-1"))
            await runner.add_worker(Inner("inner-2"))
            async with runner.job("outer", headers={"trace": "t"}) as j:
                pass
    # The handler saw the context its on_job_started set, and so did the jobs it requested.
    assert j.response is not None
    assert j.response["here"] == "t/outer"
    assert j.response["inner"] == {
        "inner-1": {"trace": "t/outer", "context": "t/outer/inner-1"},
        "inner-2": {"trace": "t/outer", "context": "t/outer/inner-2"},
    }
    assert sorted(tracing.started) == [
        ("inner-1", "t/outer"),
        ("inner-2", "t/outer"),
        ("outer", "t"),
    ]


class Progress:
    """Records ``on_job_progress`` calls, and the context ``on_job_started`` set, which
    they see because they run in the job's own task."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, Any, str]] = []
        self.job_ids: set[str] = set()

    @hookimpl
    def on_job_started(self, job: Job, worker: BaseWorker) -> None:
        TRACE.set(f"in {worker.name}")

    @hookimpl
    def on_job_progress(
        self, job: Job, worker: BaseWorker, kind: str, index: int, data: Any
    ) -> None:
        self.job_ids.add(job.job_id)
        self.calls.append((worker.name, kind, index, data, TRACE.get()))


class Chatty(BaseWorker):
    @job_handler
    async def chatty(self, job: Job) -> dict[str, Any]:
        await job.update({"step": 1})
        await job.stream("a")
        await job.update({"step": 2})
        await job.stream({"b": 2})
        return {}


class Yielder(BaseWorker):
    @job_handler
    async def count(self, job: Job) -> AsyncIterator[str]:
        for number in range(3):
            yield str(number)


async def test_hook_on_job_progress() -> None:
    progress = Progress()
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[progress]) as runner:
            await runner.add_worker(Chatty("chatty"))
            await runner.add_worker(Yielder("yielder"))
            async with runner.job("chatty") as j:
                chunks = [e.data async for e in j if e.type == JobEvent.STREAM_DATA]
            async with runner.job("yielder") as y:
                pass
    assert chunks == ["a", {"b": 2}]
    assert y.status is JobStatus.COMPLETED
    assert progress.calls == [
        ("chatty", "update", 0, {"step": 1}, "in chatty"),
        ("chatty", "stream_chunk", 0, "a", "in chatty"),
        ("chatty", "update", 1, {"step": 2}, "in chatty"),
        ("chatty", "stream_chunk", 1, {"b": 2}, "in chatty"),
        ("yielder", "stream_chunk", 0, "0", "in yielder"),
        ("yielder", "stream_chunk", 1, "1", "in yielder"),
        ("yielder", "stream_chunk", 2, "2", "in yielder"),
    ]
    assert progress.job_ids == {j.job_id, y.job_id}


async def test_a_raising_on_job_progress_is_logged_and_the_stream_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        @hookimpl
        def on_job_progress(self, kind: str) -> None:
            raise RuntimeError(f"boom in {kind}")

    with anyio.fail_after(10), caplog.at_level(logging.ERROR):
        async with WorkerRunner(plugins=[Broken()]) as runner:
            await runner.add_worker(Chatty("chatty"))
            async with runner.job("chatty") as j:
                chunks = [e.data async for e in j if e.type == JobEvent.STREAM_DATA]
    assert chunks == ["a", {"b": 2}] and j.status is JobStatus.COMPLETED
    assert "'Broken'" in caplog.text and "on_job_progress raised" in caplog.text


async def test_hook_add_request_headers() -> None:
    class PerTarget:
        @hookimpl
        def add_request_headers(self, headers: dict[str, str], target: str) -> None:
            headers["to"] = target

    tracing = Tracing()
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[tracing, PerTarget()]) as runner:
            await runner.add_worker(Echo("a"))
            await runner.add_worker(Echo("b"))
            async with runner.job_group("a", "b", headers={"tenant-id": "t"}) as group:
                pass
    # One call per member, each on its own copy of the caller's headers.
    assert sorted(tracing.targets) == ["a", "b"]
    assert group.responses["a"]["headers"] == {"tenant-id": "t", "to": "a"}
    assert group.responses["b"]["headers"] == {"tenant-id": "t", "to": "b"}


class Slow(BaseWorker):
    @job_handler
    async def slow(self, job: Job) -> dict[str, Any]:
        await anyio.sleep(30)
        return {}


async def test_hook_on_request_completed() -> None:
    class Requests:
        def __init__(self) -> None:
            self.ended: list[tuple[str, str, JobStatus, dict[str, Any], dict[str, str]]] = []

        @hookimpl
        def add_request_headers(self, headers: dict[str, str], target: str) -> None:
            headers["sent-to"] = target

        @hookimpl
        def on_request_completed(
            self,
            job_id: str,
            target: str,
            status: JobStatus,
            response: dict[str, Any],
            headers: dict[str, str],
        ) -> None:
            self.ended.append((job_id, target, status, response, dict(headers)))

    requests = Requests()
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[requests]) as runner:
            await runner.add_worker(Echo("a"))
            await runner.add_worker(Echo("b"))
            await runner.add_worker(Slow("slow"))
            async with runner.job_group("a", "b", payload={"n": 1}) as group:
                pass
            with pytest.raises(JobError):
                async with runner.job("slow", timeout=0.05) as timed_out:
                    pass
    # Once per member, with the headers that member's request carried; a request the
    # requester ended itself (the timeout) is reported too.
    by_target = {target: rest for _, target, *rest in requests.ended}
    assert sorted(by_target) == ["a", "b", "slow"]
    assert {job_id for job_id, target, *_ in requests.ended if target != "slow"} == {group.job_id}
    status, response, headers = by_target["a"]
    assert status is JobStatus.COMPLETED
    assert response == {"echo": {"n": 1}, "headers": {"sent-to": "a"}}
    assert headers == {"sent-to": "a"}
    assert by_target["b"][2] == {"sent-to": "b"}
    status, response, headers = by_target["slow"]
    assert status is JobStatus.CANCELLED and "error" in response
    assert headers == {"sent-to": "slow"}
    assert [job_id for job_id, target, *_ in requests.ended if target == "slow"] == [
        timed_out.job_id
    ]

    class AsyncCompleted:
        @hookimpl
        async def on_request_completed(self, job_id: str) -> None: ...

    with pytest.raises(pluggy.PluginValidationError, match="on_request_completed"):
        WorkerRunner().add_plugin(AsyncCompleted())


CALL_CONTEXT = contextvars.ContextVar("call_context", default="")


class LLMCalls:
    """Records the LLM hooks, and sets a context variable for each tool call."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @hookimpl
    def on_model_call(self, call: Any, worker: BaseWorker) -> None:
        self.seen.append(("model", call))

    @hookimpl
    def on_tool_call_started(self, call: Any) -> None:
        CALL_CONTEXT.set(f"tool {call.name} {call.id}")
        self.seen.append(("started", call.name))

    @hookimpl
    def on_tool_call_completed(self, call: Any) -> None:
        self.seen.append(("completed", call))


async def test_hook_on_model_call() -> None:
    from framework import LLMWorker, tool

    class Helper(LLMWorker):
        @tool
        async def lookup(self, key: str) -> dict[str, Any]:
            """Look a key up (by asking the echo worker)."""
            async with self.job("echo", payload={"key": key}) as j:
                pass
            assert j.response is not None
            return {"context": CALL_CONTEXT.get(), "echoed": j.response["echo"]}

    class Seen(Echo):
        @job_handler
        async def echo(self, job: Job) -> dict[str, Any]:
            return {"echo": job.payload, "context": CALL_CONTEXT.get()}

    calls = LLMCalls()
    messages = [{"role": "user", "content": 'use lookup {"key": "k"}'}]
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[calls]) as runner:
            await runner.add_worker(Helper("helper"))
            await runner.add_worker(Seen("echo"))
            async with runner.job("helper", payload={"messages": messages}) as j:
                pass
    kinds = [kind for kind, _ in calls.seen]
    assert kinds == ["model", "started", "completed", "model"]
    first, second = calls.seen[0][1], calls.seen[3][1]
    assert (first.backend, first.model, first.round, first.job_id) == ("offline", None, 1, j.job_id)
    assert first.finish_reason == "tool_calls" and first.error is None
    assert first.messages[-1] == messages[0]
    assert first.message["tool_calls"][0]["function"]["name"] == "lookup"
    assert first.input_tokens is not None and first.output_tokens is not None
    assert first.started_at <= first.ended_at <= second.started_at
    assert second.round == 2 and second.finish_reason == "stop"
    assert second.message["content"] == j.response["message"]["content"]


async def test_hook_on_tool_call_started() -> None:
    from framework import LLMWorker, tool

    class Helper(LLMWorker):
        @tool
        async def lookup(self, key: str) -> dict[str, Any]:
            """Look a key up."""
            return {"context": CALL_CONTEXT.get()}

    calls = LLMCalls()
    messages = [{"role": "user", "content": 'use lookup {"key": "k"}'}]
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[calls]) as runner:
            await runner.add_worker(Helper("helper"))
            async with runner.job("helper", payload={"messages": messages}):
                pass
    (completed,) = [call for kind, call in calls.seen if kind == "completed"]
    # The context the started hook set is the tool's own.
    assert json.loads(completed.result) == {"context": f"tool lookup {completed.id}"}
    assert CALL_CONTEXT.get() == ""


async def test_hook_on_tool_call_completed() -> None:
    from framework import LLMWorker, tool

    class Helper(LLMWorker):
        @tool
        async def broken(self) -> dict[str, Any]:
            """Always raises."""
            raise RuntimeError("tool broke")

    calls = LLMCalls()
    messages = [{"role": "user", "content": "use broken"}]
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[calls]) as runner:
            await runner.add_worker(Helper("helper"))
            async with runner.job("helper", payload={"messages": messages}):
                pass
    (completed,) = [call for kind, call in calls.seen if kind == "completed"]
    assert completed.name == "broken" and completed.arguments in ("", "{}")
    assert completed.error == "RuntimeError: tool broke"
    assert json.loads(completed.result) == {"error": "RuntimeError: tool broke"}


async def test_a_raising_job_path_hook_is_logged_and_the_job_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        @hookimpl
        def on_job_started(self, job: Job) -> None:
            raise RuntimeError("boom in on_job_started")

        @hookimpl
        def add_request_headers(self, headers: dict[str, str]) -> None:
            headers["early"] = "1"
            raise RuntimeError("boom in add_request_headers")

    with anyio.fail_after(10), caplog.at_level(logging.ERROR):
        async with WorkerRunner(plugins=[Broken()]) as runner:
            await runner.add_worker(Echo("echo"))
            async with runner.job("echo", payload={"x": 1}) as j:
                pass
    # What the raising impl added is undone: the request carries no half-made headers.
    assert j.response == {"echo": {"x": 1}, "headers": {}}
    text = caplog.text
    assert "'Broken'" in text and "on_job_started raised" in text
    assert "add_request_headers raised" in text


def test_async_impls_of_sync_only_hooks_and_sync_services_are_refused() -> None:
    class AsyncStarted:
        @hookimpl
        async def on_job_started(self, job: Job) -> None: ...

    class AsyncHeaders:
        @hookimpl
        async def add_request_headers(self, headers: dict[str, str]) -> None: ...

    class AsyncProgress:
        @hookimpl
        async def on_job_progress(self, job: Job) -> None: ...

    class SyncService:
        @hookimpl
        def runner_service(self, runner: WorkerRunner) -> None: ...

    runner = WorkerRunner()
    for plugin, hook in (
        (AsyncStarted(), "on_job_started"),
        (AsyncProgress(), "on_job_progress"),
        (AsyncHeaders(), "add_request_headers"),
        (SyncService(), "runner_service"),
    ):
        with pytest.raises(pluggy.PluginValidationError, match=hook):
            runner.add_plugin(plugin)
        assert not runner.plugin_manager.is_registered(plugin)


# ----------------------------------------------------------------- add_plugin


def test_add_plugin_validates_like_the_constructor_and_names_the_closest_hook() -> None:
    class Typo:
        @hookimpl
        def on_job_startd(self, job: Job) -> None: ...

    runner = WorkerRunner()
    with pytest.raises(pluggy.PluginValidationError, match="did you mean 'on_job_started'"):
        runner.add_plugin(Typo())
    good = Tracing()
    assert runner.add_plugin(good, name="tracing") == "tracing"
    assert runner.plugin_manager.get_plugin("tracing") is good
    with pytest.raises(ValueError, match="given twice"):
        runner.add_plugin(good)


# ----------------------------------------------------------------- runner_service


async def test_hook_runner_service(caplog: pytest.LogCaptureFixture) -> None:
    events: list[str] = []

    class Service:
        @hookimpl
        async def runner_service(self, runner: WorkerRunner) -> None:
            # Started once every configured worker is ready: it can use them at once.
            events.append(f"started, echo ready: {'echo' in runner.registry}")
            async with runner.job("echo", payload={"from": "service"}) as j:
                pass
            events.append(f"job {j.status}")
            try:
                await anyio.sleep_forever()
            finally:
                events.append(f"cancelled, workers left: {sorted(runner.workers)}")

    class Failing:
        @hookimpl
        async def runner_service(self) -> None:
            raise RuntimeError("the service broke")

    with anyio.fail_after(10), caplog.at_level(logging.ERROR):
        runner = WorkerRunner(plugins=[Service(), Failing()])
        await runner.add_worker(Echo("echo"))
        async with runner:
            while len(events) < 2:
                await anyio.sleep(0.01)
            # The failing service did not take the runner down.
            async with runner.job("echo") as j:
                pass
            assert j.status is JobStatus.COMPLETED
    assert events == [
        "started, echo ready: True",
        "job completed",
        "cancelled, workers left: []",  # cancelled after the workers ended
    ]
    assert "'Failing'" in caplog.text and "the service broke" in caplog.text


# ----------------------------------------------------------------- register_routes


async def _asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """A stand-in ASGI app: registration only checks that it is callable."""


class Routes:
    @hookimpl
    def register_routes(self, register: RouteRegistrar) -> None:
        register("/mcp", _asgi_app)


def test_hook_register_routes() -> None:
    class Clash:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/mcp", _asgi_app)  # held by Routes
            register("/mcp/inner", _asgi_app)  # inside Routes' prefix
            register("/v1/mine", _asgi_app)  # the API's own
            register("bad/", _asgi_app)
            register("/fine", object())  # not an app
            register("/a2a", _asgi_app)

    # pluggy calls the plugin registered last first: Routes registers before Clash.
    host = PluginHost(plugins=[Clash(), Routes()], report=False)
    host.collect_registrations()
    assert sorted(host.routes.entries) == ["/a2a", "/mcp"]
    assert host.routes.entries["/mcp"].plugin == "Routes"
    errors = "\n".join(host.registration_errors)
    assert "'/mcp' is registered by both plugin 'Routes' and plugin 'Clash'" in errors
    assert "overlaps '/mcp' of plugin 'Routes'" in errors
    assert "which the HTTP API serves itself" in errors
    assert "leading '/'" in errors
    assert "must be an ASGI application" in errors
    by_name = {info.name: info for info in host.plugin_infos()}
    assert by_name["Routes"].registered["routes"] == ["/mcp"]
    assert by_name["Clash"].registered["routes"] == ["/a2a"]
    # A runner built in code collects its own plugins' routes.
    assert list(WorkerRunner(plugins=[Routes()]).routes.entries) == ["/mcp"]
    assert host.routes.public == set()


def test_register_routes_public_marks_a_prefix_that_needs_no_token() -> None:
    class Card:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/.well-known/agent-card.json", _asgi_app, public=True)
            register("/a2a", _asgi_app)
            register("/v1/card", _asgi_app, public=True)  # refused: not made public

    routes = WorkerRunner(plugins=[Card()]).routes
    assert sorted(routes.entries) == ["/.well-known/agent-card.json", "/a2a"]
    assert routes.public == {"/.well-known/agent-card.json"}


def test_framework_plugins_lists_the_routes_a_plugin_mounted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys
    import types

    module = types.ModuleType("routes_plugin_for_test")
    module.register_routes = Routes().register_routes  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "routes_plugin_for_test", module)
    result = CliRunner().invoke(cli, ["-p", "routes_plugin_for_test", "plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    assert listed["routes_plugin_for_test"]["registered"]["routes"] == ["/mcp"]


# ----------------------------------------------------------------- typed payloads


class ReverseIn(BaseModel):
    text: str
    times: int = 1


class ReverseOut(BaseModel):
    text: str


class Typed(BaseWorker):
    ran: list[ReverseIn]

    @job_handler
    async def reverse(self, job: Job, data: ReverseIn) -> ReverseOut:
        """Reverse the text, ``times`` times over."""
        self.ran.append(data)
        return ReverseOut(text=data.text[::-1] * data.times)

    @job_handler(name="count")
    async def count(self, job: Job) -> AsyncIterator[int]:
        """Count to three."""
        for i in range(3):
            yield i


async def test_a_typed_payload_is_validated_before_the_handler_runs() -> None:
    worker = Typed("typed")
    worker.ran = []
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(worker)
            async with runner.job("typed", payload={"text": "abc", "times": 2}) as ok:
                pass
            with pytest.raises(JobError) as bad:
                async with runner.job("typed", payload={"times": "many"}):
                    pass
            # A pydantic model is a payload too, on the requester's side.
            async with runner.job("typed", payload=ReverseIn(text="xy")) as model_payload:  # type: ignore[arg-type]
                pass
    assert ok.response == {"text": "cbacba"}
    assert model_payload.response == {"text": "yx"}
    assert bad.value.status is JobStatus.FAILED  # the requester's mistake, not a crash
    error = bad.value.response["error"]
    assert "does not fit ReverseIn" in error and "text: Field required" in error
    assert "times: Input should be a valid integer" in error
    assert bad.value.response["fields"] == [
        {"field": "text", "error": "Field required"},
        {
            "field": "times",
            "error": "Input should be a valid integer, unable to parse string as an integer",
        },
    ]
    assert [d.text for d in worker.ran] == ["abc", "xy"]  # never ran for the bad payload


async def test_describe_lists_jobs_with_docstrings_and_schemas_and_the_registry_keeps_it() -> None:
    described = {d.name: d for d in Typed("t").describe()}
    assert set(described) == {None, "count"}
    default = described[None]
    assert default.description == "Reverse the text, ``times`` times over."
    assert default.input_schema == ReverseIn.model_json_schema()
    assert default.output_schema == ReverseOut.model_json_schema()
    assert not default.streaming
    count = described["count"]
    assert (count.input_schema, count.output_schema, count.streaming) == (None, None, True)
    assert Echo("e").describe()[0].input_schema is None  # untyped: any object
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            worker = Typed("typed")
            worker.ran = []
            await runner.add_worker(worker)
            data = runner.registry.get("typed")
    assert data is not None and list(data.jobs) == worker.describe()


def test_a_default_job_without_docstring_is_described_by_its_worker_class_own_docstring() -> None:
    class Shouter(BaseWorker):
        """Answers {"text": "hi"} with {"text": "HI"}:
        the payload's text in capitals.

        Details a tool's description does not need.
        """

        @job_handler
        async def shout(self, job: Job) -> dict[str, Any]:
            return {"text": str(job.payload.get("text", "")).upper()}

        @job_handler(name="whisper")
        async def whisper(self, job: Job) -> dict[str, Any]:
            return {}

    described = {d.name: d.description for d in Shouter("s").describe()}
    assert described == {
        None: 'Answers {"text": "hi"} with {"text": "HI"}: the payload\'s text in capitals.',
        "whisper": "",  # a named job is not the worker: no class docstring for it
    }

    class Undocumented(BaseWorker):
        @job_handler
        async def handle(self, job: Job) -> dict[str, Any]:
            return {}

    class Loud(Shouter):
        pass

    # A docstring the class inherits (BaseWorker's, or a base worker's) does not describe it.
    assert [d.description for d in Undocumented("u").describe()] == [""]
    assert [d.description for d in Loud("l").describe() if d.name is None] == [""]


def test_a_typed_payload_must_be_a_model_and_a_handler_takes_at_most_two_arguments() -> None:
    with pytest.raises(TypeError, match="must be annotated with a pydantic model"):

        class NotAModel(BaseWorker):
            @job_handler
            async def handle(self, job: Job, data: dict) -> None:  # type: ignore[type-arg]
                pass

    with pytest.raises(TypeError, match=r"takes \(self, job\) or \(self, job, data"):

        class TooMany(BaseWorker):
            @job_handler
            async def handle(self, job: Job, a: ReverseIn, b: ReverseIn) -> None:
                pass


async def test_a_model_defined_in_a_function_is_found() -> None:
    class Local(BaseModel):
        n: int

    class LocalTyped(BaseWorker):
        @job_handler
        async def handle(self, job: Job, data: Local) -> dict[str, int]:
            return {"twice": data.n * 2}

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(LocalTyped("w"))
            async with runner.job("w", payload={"n": 4}) as j:
                pass
    assert j.response == {"twice": 8}


async def test_the_assistant_tells_the_model_each_workers_input_schema() -> None:
    from framework.llm.assistant import Assistant as AssistantWorker

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            worker = Typed("reverse")
            worker.ran = []
            await runner.add_worker(worker)
            await runner.add_worker(Echo("echo"))
            assistant = AssistantWorker("assistant")
            await runner.add_worker(assistant)
            tools = {t.name: t for t in assistant.tools()}
    assert tools["reverse"].parameters == ReverseIn.model_json_schema()
    assert "Reverse the text" in tools["reverse"].description
    assert tools["echo"].parameters == {"type": "object", "additionalProperties": True}


# ----------------------------------------------------------------- the same values on every bus


class Hostile(BaseWorker):
    @job_handler(name="object")
    async def returns_object(self, job: Job) -> dict[str, Any]:
        return {"ok": [1, {"bad": object()}]}

    @job_handler(name="circular")
    async def returns_circular(self, job: Job) -> dict[str, Any]:
        loop: dict[str, Any] = {}
        loop["self"] = loop
        return loop

    @job_handler(name="bytes-update")
    async def updates_bytes(self, job: Job) -> dict[str, Any]:
        await job.update({"raw": b"\xff\xfe"})
        return {}

    @job_handler(name="nan")
    async def returns_nan(self, job: Job) -> dict[str, Any]:
        return {"x": math.nan}

    @job_handler(name="surrogate")
    async def streams_surrogate(self, job: Job) -> AsyncIterator[str]:
        yield "fine"
        yield "bad \ud800"

    @job_handler(name="failed-with-object")
    async def fails_with_object(self, job: Job) -> dict[str, Any]:
        from framework import JobFailed

        raise JobFailed("nope", {"detail": object()})

    @job_handler(name="model-inside")
    async def nests_a_model(self, job: Job) -> dict[str, Any]:
        return {"out": ReverseOut(text="x")}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("object", "the response at $.ok[1].bad is a builtins.object"),
        ("circular", "nested deeper than 100 levels"),
        ("bytes-update", "the update at $.raw is a builtins.bytes"),
        ("nan", "the response at $.x is nan"),
        ("surrogate", "the stream item at $ is a str with lone surrogates"),
        ("failed-with-object", "the JobFailed data at $.detail is a builtins.object"),
    ],
)
async def test_a_value_json_cannot_carry_ends_the_job_error_naming_path_and_type(
    name: str, expected: str
) -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Hostile("hostile"))
            await runner.add_worker(Echo("echo"))
            with pytest.raises(JobError) as info:
                async with runner.job("hostile", name=name):
                    pass
            # Nothing else is touched: the worker and its neighbours go on.
            async with runner.job("echo", payload={"after": name}) as after:
                pass
            async with runner.job("hostile", name="model-inside") as nested:
                pass
    assert info.value.status is JobStatus.ERROR
    assert expected in info.value.response["error"]
    assert "NotJSONError" in info.value.response["error"]
    assert after.status is JobStatus.COMPLETED
    assert nested.response == {"out": {"text": "x"}}  # a model inside is dumped


async def test_a_payload_json_cannot_carry_is_refused_at_the_call() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Echo("echo"))
            with pytest.raises(TypeError, match=r"the payload at \$.when is a builtins.object"):
                async with runner.job("echo", payload={"when": object()}):
                    pass
            with pytest.raises(TypeError, match=r"the payload at \$\[1\] has a int key"):
                await runner.request_job("echo", payload={1: "x"})  # type: ignore[dict-item]
            with pytest.raises(TypeError, match="payload is a dict"):
                async with runner.job("echo", payload=[1, 2]):  # type: ignore[arg-type]
                    pass
            async with runner.job("echo", payload={"fine": (1, 2)}) as ok:
                pass
    assert ok.response == {"echo": {"fine": [1, 2]}, "headers": {}}


# ----------------------------------------------------------------- start_soon


async def test_start_soon_runs_a_task_owned_by_the_worker() -> None:
    log: list[str] = []
    errors: list[BaseException] = []

    class Background(BaseWorker):
        async def on_ready(self) -> None:
            self.start_soon(self.tick, "tick")
            self.start_soon(self.crash)

        async def tick(self, word: str) -> None:
            try:
                while True:
                    log.append(word)
                    await anyio.sleep(0.01)
            finally:
                log.append("stopped")

        async def crash(self) -> None:
            raise RuntimeError("background crash")

        async def on_error(self, error: BaseException) -> None:
            errors.append(error)

        @job_handler
        async def handle(self, job: Job) -> dict[str, Any]:
            return {"ticks": log.count("tick") > 0}

    worker = Background("bg")
    with pytest.raises(RuntimeError, match="is not running"):
        worker.start_soon(worker.crash)
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(worker)
            while "tick" not in log:
                await anyio.sleep(0.01)
            async with runner.job("bg") as j:  # a crashed task did not stop the worker
                pass
            await worker.end()
            while "stopped" not in log:
                await anyio.sleep(0.01)
    assert j.response == {"ticks": True}
    assert [str(e) for e in errors] == ["background crash"]
    assert log[-1] == "stopped"


# ----------------------------------------------------------------- review findings


async def test_headers_a_hook_adds_follow_the_rules_or_are_undone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Bad:
        @hookimpl
        def add_request_headers(self, headers: dict[str, str]) -> None:
            headers["X-Upper"] = "v"

    class NotStr:
        @hookimpl
        def add_request_headers(self, headers: dict[str, Any]) -> None:
            headers["n"] = 5

    class Good:
        @hookimpl
        def add_request_headers(self, headers: dict[str, str]) -> None:
            headers["fine"] = "yes"

    with anyio.fail_after(10), caplog.at_level(logging.ERROR):
        async with WorkerRunner(plugins=[Good(), Bad(), NotStr()]) as runner:
            await runner.add_worker(Echo("echo"))
            async with runner.job("echo", headers={"mine": "1"}) as j:
                pass
    assert j.response == {"echo": {}, "headers": {"mine": "1", "fine": "yes"}}
    assert "'Bad'" in caplog.text and "'NotStr'" in caplog.text


async def test_enum_values_and_keys_travel_as_their_plain_values() -> None:
    import enum

    class Colour(str, enum.Enum):  # noqa: UP042 - the mixin whose str() is its name
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    class Enums(BaseWorker):
        @job_handler
        async def handle(self, job: Job) -> dict[str, Any]:
            await job.update({"colour": Colour.RED})
            return {"colour": Colour.RED, Colour.RED: Level.HIGH}

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Enums("enums"))
            async with runner.job("enums") as j:
                updates = [event.data async for event in j]
    assert updates == [{"colour": "red"}]
    assert j.response == {"colour": "red", "red": 3}
    assert type(j.response["colour"]) is str


async def test_an_int_too_large_for_json_readers_ends_the_job_error() -> None:
    class Huge(BaseWorker):
        @job_handler
        async def handle(self, job: Job) -> dict[str, Any]:
            return {"n": 10**5000}

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Huge("huge"))
            with pytest.raises(JobError) as info:
                async with runner.job("huge"):
                    pass
    assert "the response at $.n is an int too large" in info.value.response["error"]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"ok": 1, "s": "bad \ud800"}, "the stream item at $.s is a str with lone surrogates"),
        ({"ok": 1, "n": 10**5000}, "the stream item at $.n is an int too large"),
        ({"ok": 1, "x": math.inf}, "the stream item at $.x is inf"),
        ({"ok": 1, "raw": b"x"}, "the stream item at $.raw is a builtins.bytes"),
        ({"ok": 1, "deep": {"x": math.nan}}, "the stream item at $.deep.x is nan"),
        ({"\ud800": 1}, r"the stream item at $['\ud800'] is a str with lone surrogates"),
    ],
)
async def test_a_flat_dict_stream_item_json_cannot_carry_ends_the_job_error(
    item: dict[str, Any], expected: str
) -> None:
    class Streams(BaseWorker):
        @job_handler
        async def handle(self, job: Job) -> AsyncIterator[dict[str, Any]]:
            yield {"ok": 1, "s": "fine", "n": 2, "x": 0.5, "b": True, "none": None}
            yield item
            yield {"never": "sent"}

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Streams("streams"))
            with pytest.raises(JobError) as info:
                async with runner.job("streams") as stream:
                    items = [event.data async for event in stream if event.type == "stream_data"]
    assert info.value.status is JobStatus.ERROR
    assert expected in info.value.response["error"]
    assert items == [{"ok": 1, "s": "fine", "n": 2, "x": 0.5, "b": True, "none": None}]


def test_handler_signatures_keyword_only_payload_refused_optional_parameters_allowed() -> None:
    with pytest.raises(TypeError, match="both positional"):

        class KeywordOnly(BaseWorker):
            @job_handler
            async def handle(self, job: Job, *, data: ReverseIn) -> None:
                pass

    class Optional(BaseWorker):
        @job_handler
        async def handle(self, job: Job, verbose: bool = False) -> dict[str, Any]:
            return {"verbose": verbose}

    (described,) = Optional("o").describe()
    assert described.input_schema is None


async def test_a_task_group_error_in_a_handler_is_reported_as_itself() -> None:
    class Grouped(BaseWorker):
        @job_handler
        async def handle(self, job: Job) -> dict[str, Any]:
            async def fail() -> None:
                raise ValueError("boom in child")

            async with anyio.create_task_group() as tg:
                tg.start_soon(fail)
            return {}

    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Grouped("g"))
            with pytest.raises(JobError) as info:
                async with runner.job("g"):
                    pass
    assert info.value.response["error"] == "ValueError: boom in child"


async def test_one_job_event_type_for_single_jobs_and_groups() -> None:
    from framework import JobEvent, JobEventType, JobGroupEvent

    class Streams(BaseWorker):
        @job_handler
        async def handle(self, job: Job) -> AsyncIterator[int]:
            await job.update({"p": 1})
            yield 1

    assert JobEvent.UPDATE is JobEventType.UPDATE is JobGroupEvent.UPDATE
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(Streams("s"))
            async with runner.job("s") as j:
                kinds = [event.type async for event in j]
            async with runner.job_group("s") as g:
                group_kinds = [event.type async for event in g]
    expected = [
        JobEventType.STREAM_START,
        JobEventType.UPDATE,
        JobEventType.STREAM_DATA,
        JobEventType.STREAM_END,
    ]
    assert kinds == group_kinds == expected
    assert all(type(kind) is JobEventType for kind in kinds)
    assert kinds[1] == "update"  # a StrEnum: equal to its value


async def test_an_llm_worker_describes_its_chat_job_and_named_only_workers_are_no_tools() -> None:
    from framework import LLMWorker
    from framework.llm.assistant import Assistant as AssistantWorker

    class OnlyNamed(BaseWorker):
        @job_handler(name="ping")
        async def ping(self, job: Job) -> dict[str, Any]:
            return {}

    (chat,) = LLMWorker("writer").describe()
    assert chat.name is None and chat.streaming
    assert chat.input_schema is not None and chat.input_schema["required"] == ["messages"]
    assert chat.description.startswith('Chat with this assistant: send {"messages"')

    class Poet(LLMWorker):
        """Writes short poems on any topic.

        More details that a tool description does not need.
        """

    (poem,) = Poet("poet").describe()
    assert poem.description == "Writes short poems on any topic."
    with anyio.fail_after(10):
        async with WorkerRunner() as runner:
            await runner.add_worker(LLMWorker("writer"))
            await runner.add_worker(OnlyNamed("pinger"))
            assistant = AssistantWorker("assistant")
            await runner.add_worker(assistant)
            tools = {t.name: t for t in assistant.tools()}
    assert tools["writer"].parameters["required"] == ["messages"]
    assert "pinger" not in tools  # its only job is named: a plain job would fail


async def test_a_typed_payload_is_found_for_a_worker_with_a_metaclass() -> None:
    import abc

    class Local(BaseModel):
        n: int

    class Meta(abc.ABCMeta):
        def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
            return super().__new__(mcs, name, bases, ns)

    class WithMeta(BaseWorker, metaclass=Meta):
        @job_handler
        async def handle(self, job: Job, data: Local) -> dict[str, int]:
            return {"n": data.n}

    (described,) = WithMeta("m").describe()
    assert described.input_schema == Local.model_json_schema()
