"""A collector that is down, or slow, costs no job anything: jobs complete at their usual
pace, the spans that could not be sent are counted as lost, and a one-shot ``framework run
--job`` still exits promptly."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from agent_plugin_otel import OtelPlugin
from agent_plugin_otel._setup import SpanCounts, build_tracer_provider
from conftest import Receiver, free_port
from opentelemetry.sdk.metrics import MeterProvider
from test_processes import FRAMEWORK, TESTS

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


def test_a_one_shot_command_exits_promptly_with_no_collector_listening(tmp_path: Path) -> None:
    # The SDK's exporters retry an unreachable collector for OTEL_EXPORTER_OTLP_TIMEOUT
    # whatever their caller asks, and its own shutdown at exit waits for them: the
    # runner's end and the exit must not.
    (tmp_path / "framework.toml").write_text(
        '[[workers]]\ntype = "leaf"\nname = "leaf"\n\n[plugins.otel]\nflush_timeout = 0.5\n'
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRAMEWORK_", "OTEL_")) and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        PYTHONPATH=str(TESTS),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}",  # refused
        OTEL_EXPORTER_OTLP_TIMEOUT="30",
    )
    started = time.monotonic()
    try:
        result = subprocess.run(
            [FRAMEWORK, "-p", "otel_workers", "run", "--job", "leaf", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=25,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("framework run --job waited for the unreachable collector (over 25 s)")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert '"runner"' in result.stdout
    assert elapsed < 15, f"framework run --job took {elapsed:.1f} s with no collector"
