"""A collector that is down, or slow, costs no job anything: jobs complete at their usual
pace, and the spans that could not be sent are counted as lost."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from agent_plugin_otel import OtelPlugin
from agent_plugin_otel._setup import SpanCounts, build_tracer_provider
from conftest import Receiver, free_port
from opentelemetry.sdk.metrics import MeterProvider

from framework import BaseWorker, Job, WorkerRunner, job

pytestmark = pytest.mark.anyio


class Echo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return job.payload


async def run_jobs(plugin: OtelPlugin, count: int) -> float:
    with anyio.fail_after(20):
        async with WorkerRunner("main", plugins=[plugin]) as runner:
            await runner.add_worker(Echo("echo"))
            started = time.perf_counter()
            for number in range(count):
                async with runner.job("echo", payload={"n": number}):
                    pass
            return time.perf_counter() - started


@pytest.mark.parametrize("collector", ["down", "slow"])
async def test_a_collector_down_or_slow_costs_jobs_nothing(
    collector: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    if collector == "down":
        endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    else:
        receiver.delay = 3.0  # every export takes 3 s to be answered
        endpoint = receiver.url
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "50")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    counts = SpanCounts()
    provider = build_tracer_provider(counts)
    plugin = OtelPlugin(
        tracer_provider=provider,
        meter_provider=MeterProvider(),
        settings={"flush_timeout": 0.5},
    )
    plugin.span_counts = counts
    elapsed = await run_jobs(plugin, 500)
    assert elapsed < 5, f"500 jobs took {elapsed:.1f} s with the collector {collector}"
    stats = plugin.stats()
    assert stats["ended"] == 500
    assert stats["exported"] < 500 and stats["lost"] == 500 - stats["exported"]
    provider.shutdown()
