"""Spans of jobs on one runner, exported over OTLP/HTTP to a real receiver: names, kinds,
parents, attributes, status, sampled events, and what is never exported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from agent_plugin_otel import OtelPlugin
from conftest import Receiver
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from framework import BaseWorker, Job, JobError, JobFailed, LLMWorker, WorkerRunner, job, tool

pytestmark = pytest.mark.anyio

Providers = tuple[TracerProvider, MeterProvider]


class Leaf(BaseWorker):
    @job
    async def leaf(self, job: Job) -> dict[str, Any]:
        if job.payload.get("fail"):
            raise JobFailed("bad input")
        if job.payload.get("crash"):
            raise ValueError("it broke")
        await job.update({"step": 1})
        return {"ok": True}


class Planner(BaseWorker):
    @job
    async def plan(self, job: Job) -> dict[str, Any]:
        async with self.job_group("a", "b", payload={"secret": "hunter2"}) as group:
            pass
        return group.responses


class Streamer(BaseWorker):
    @job
    async def stream(self, job: Job) -> AsyncIterator[str]:
        for number in range(int(job.payload["n"])):
            yield f"chunk {number}"


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in spans}


async def run_jobs(plugin: OtelPlugin, jobs: list[tuple[str, dict[str, Any]]]) -> None:
    with anyio.fail_after(10):
        async with WorkerRunner("main", plugins=[plugin]) as runner:
            for worker in (Leaf("a"), Leaf("b"), Planner("plan"), Streamer("stream")):
                await runner.add_worker(worker)
            for worker, payload in jobs:
                try:
                    async with runner.job(
                        worker, payload=payload, headers={"authorization": "Bearer s3cr3t"}
                    ):
                        pass
                except JobError:
                    pass


async def test_a_group_is_one_trace_of_internal_spans(
    providers: Providers, receiver: Receiver
) -> None:
    tracer_provider, meter_provider = providers
    plugin = OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    await run_jobs(plugin, [("plan", {})])
    spans = by_name(receiver.wait_for(lambda spans: len(spans) == 3))
    plan, a, b = spans["invoke_agent plan"], spans["invoke_agent a"], spans["invoke_agent b"]
    assert {span["kind"] for span in spans.values()} == {"INTERNAL"}
    assert plan["parent"] is None
    assert a["parent"] == b["parent"] == plan["span_id"]
    assert a["trace_id"] == b["trace_id"] == plan["trace_id"]
    assert a["attributes"]["framework.job.id"] == b["attributes"]["framework.job.id"]
    assert plan["attributes"] == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "plan",
        "framework.job.id": plan["attributes"]["framework.job.id"],
        "framework.job.status": "completed",
        "framework.job.requester": "main",
        "framework.runner": "main",
    }
    assert a["attributes"]["framework.job.requester"] == "plan"
    assert plan["status"] == "UNSET"
    assert plan["schema_url"] == "https://opentelemetry.io/schemas/1.41.0"
    assert a["events"] == [("framework.job.update", {"framework.event.index": 0})]
    # Neither the caller's headers nor payloads nor updates' content are exported.
    text = repr(receiver.spans)
    assert "s3cr3t" not in text and "hunter2" not in text and "step" not in text


async def test_failed_and_errored_jobs_set_the_error_status(
    providers: Providers, receiver: Receiver
) -> None:
    tracer_provider, meter_provider = providers
    plugin = OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    await run_jobs(plugin, [("a", {"fail": True}), ("b", {"crash": True})])
    spans = by_name(receiver.wait_for(lambda spans: len(spans) == 2))
    failed, errored = spans["invoke_agent a"], spans["invoke_agent b"]
    assert failed["status"] == errored["status"] == "ERROR"
    assert failed["description"] == "bad input"
    assert failed["attributes"]["framework.job.status"] == "failed"
    assert failed["attributes"]["error.type"] == "failed"
    assert errored["description"] == "ValueError: it broke"
    assert errored["attributes"]["framework.job.status"] == "error"


async def test_stream_chunks_are_sampled_span_events(
    providers: Providers, receiver: Receiver
) -> None:
    tracer_provider, meter_provider = providers
    plugin = OtelPlugin(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        settings={"stream_events": 3},
    )
    await run_jobs(plugin, [("stream", {"n": 1000})])
    (span,) = receiver.wait_for(lambda spans: len(spans) == 1)
    assert span["attributes"]["framework.job.stream_chunks"] == 1000
    indexes = [attributes["framework.event.index"] for _, attributes in span["events"]]
    # The first 3, then the chunks whose number (from 1) is a power of two.
    assert indexes == [0, 1, 2, 3, 7, 15, 31, 63, 127, 255, 511]
    assert "chunk 0" not in repr(span)


async def test_content_is_recorded_only_when_opted_in(
    providers: Providers, receiver: Receiver
) -> None:
    tracer_provider, meter_provider = providers
    plugin = OtelPlugin(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        settings={"capture_content": True, "stream_events": 2},
    )
    await run_jobs(plugin, [("stream", {"n": 2})])
    (span,) = receiver.wait_for(lambda spans: len(spans) == 1)
    assert [a["framework.event.content"] for _, a in span["events"]] == ["chunk 0", "chunk 1"]


async def test_jobs_that_neither_update_nor_stream_build_no_runtime_events(
    providers: Providers, receiver: Receiver
) -> None:
    # Updates and chunks come from on_job_progress: the plugin listens to no runtime
    # events, so the runner builds none (an event per happening costs every job).
    tracer_provider, meter_provider = providers
    plugin = OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    with anyio.fail_after(10):
        async with WorkerRunner("main", plugins=[plugin]) as runner:
            await runner.add_worker(Streamer("stream"))
            for _ in range(3):  # the runner's services are running by now
                async with runner.job("stream", payload={"n": 2}):
                    pass
            assert not runner.events_enabled
    spans = receiver.wait_for(lambda spans: len(spans) == 3)
    assert [span["attributes"]["framework.job.stream_chunks"] for span in spans] == [2, 2, 2]


async def test_jobs_in_flight_is_read_when_metrics_are_collected(
    providers: Providers, receiver: Receiver
) -> None:
    tracer_provider, meter_provider = providers
    plugin = OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    started, release = anyio.Event(), anyio.Event()

    class Holder(BaseWorker):
        @job
        async def hold(self, job: Job) -> dict[str, Any]:
            started.set()
            await release.wait()
            return {}

    def in_flight() -> dict[str, int]:
        with receiver.lock:
            receiver.metrics.clear()
        meter_provider.force_flush()
        return {
            p["attributes"]["framework.worker"]: p["value"]
            for p in receiver.metrics["framework.jobs.in_flight"]
        }

    with anyio.fail_after(10):
        async with WorkerRunner("main", plugins=[plugin]) as runner:
            await runner.add_worker(Holder("holder"))
            await runner.add_worker(Leaf("a"))
            async with runner.job("a"):
                pass
            async with runner.job("holder"):
                await started.wait()
                assert await anyio.to_thread.run_sync(in_flight) == {"holder": 1, "a": 0}
                release.set()
            assert await anyio.to_thread.run_sync(in_flight) == {"holder": 0, "a": 0}


async def test_job_metrics(providers: Providers, receiver: Receiver) -> None:
    tracer_provider, meter_provider = providers
    plugin = OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    await run_jobs(plugin, [("a", {}), ("a", {}), ("b", {"fail": True})])
    meter_provider.force_flush()
    durations = receiver.metrics["framework.job.duration"]
    counts = {
        (p["attributes"]["framework.worker"], p["attributes"]["framework.job.status"]): p["count"]
        for p in durations
    }
    assert counts == {("a", "completed"): 2, ("b", "failed"): 1}
    in_flight = {
        p["attributes"]["framework.worker"]: p["value"]
        for p in receiver.metrics["framework.jobs.in_flight"]
    }
    assert in_flight == {"a": 0, "b": 0}


class Assistant(LLMWorker):
    @tool
    async def lookup(self, key: str) -> dict[str, Any]:
        """Look a key up by asking worker a."""
        async with self.job("a", payload={"key": key}) as j:
            pass
        return j.response or {}


async def test_an_llm_job_is_one_trace_of_job_chat_tool_job(
    providers: Providers, receiver: Receiver
) -> None:
    tracer_provider, meter_provider = providers
    plugin = OtelPlugin(tracer_provider=tracer_provider, meter_provider=meter_provider)
    secret = 'use lookup {"key": "the-secret-key"}'
    with anyio.fail_after(10):
        async with WorkerRunner("main", plugins=[plugin]) as runner:
            await runner.add_worker(Leaf("a"))
            await runner.add_worker(Assistant("helper"))
            async with runner.job(
                "helper", payload={"messages": [{"role": "user", "content": secret}]}
            ):
                pass
    meter_provider.force_flush()
    spans = receiver.wait_for(lambda spans: len(spans) == 5)
    by_id = {span["span_id"]: span for span in spans}
    assert len({span["trace_id"] for span in spans}) == 1
    tree = sorted(
        (span["name"], span["kind"], by_id[span["parent"]]["name"] if span["parent"] else None)
        for span in spans
    )
    assert tree == [
        ("chat offline", "CLIENT", "invoke_agent helper"),
        ("chat offline", "CLIENT", "invoke_agent helper"),
        ("execute_tool lookup", "INTERNAL", "invoke_agent helper"),
        ("invoke_agent a", "INTERNAL", "execute_tool lookup"),
        ("invoke_agent helper", "INTERNAL", None),
    ]
    chats = sorted(
        (s for s in spans if s["name"] == "chat offline"),
        key=lambda s: s["attributes"]["gen_ai.response.finish_reasons"],
    )
    first = chats[-1]["attributes"]
    assert first["gen_ai.operation.name"] == "chat"
    assert first["gen_ai.provider.name"] == "offline"
    assert first["gen_ai.response.finish_reasons"] == ["tool_calls"]
    assert first["gen_ai.usage.input_tokens"] > 0 and first["gen_ai.usage.output_tokens"] > 0
    tool_span = next(s for s in spans if s["name"] == "execute_tool lookup")
    assert tool_span["attributes"]["gen_ai.tool.name"] == "lookup"
    assert tool_span["attributes"]["gen_ai.operation.name"] == "execute_tool"
    # Message content and tool arguments are not exported unless opted in.
    assert "the-secret-key" not in repr(receiver.spans)
    usage = receiver.metrics["gen_ai.client.token.usage"]
    assert {p["attributes"]["gen_ai.token.type"] for p in usage} == {"input", "output"}
