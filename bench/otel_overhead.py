"""What agent-plugin-otel costs the job path, as ratios to the same round trip without it,
measured in one run.

- off: median ``async with runner.job("echo", ...)`` round trip on a runner without the
  plugin (the floor);
- disabled: the plugin installed and loaded the way ``framework run`` loads it (its
  ``configure_runner`` called) with ``OTEL_SDK_DISABLED=true``; goal at most 1.05x off;
- on: the plugin tracing every job (the SDK's batch span processor and OTLP/HTTP exporter
  sending to a receiver on 127.0.0.1 that answers 200, and the job metrics); goal at most
  1.3x off;
- traces: the same with ``metrics = false`` (spans only), to tell the two costs apart.

The three are measured interleaved, in blocks, inside one event loop, so a drift of the
machine's speed moves all of them alike (the exporter is flushed between rounds of blocks,
so that its thread's work lands in no other kind's block); each round trip is timed on its
own and the median is reported. Run: ``python bench/otel_overhead.py`` (``--quick`` for
fewer rounds). It is a benchmark, not a test: it always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio

from framework import BaseWorker, Job, WorkerRunner, job
from framework.config import RunConfig


class Echo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"x": 1}


def start_receiver() -> str:
    """An OTLP/HTTP endpoint on 127.0.0.1 that reads each request and answers 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


async def block(runner: WorkerRunner, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        async with runner.job("echo", payload={"a": 1}):
            pass
        times.append(time.perf_counter() - started)
    return times


async def make(kind: str) -> WorkerRunner:
    import agent_plugin_otel

    if kind == "off":
        runner = WorkerRunner("bench")
    elif kind == "disabled":
        os.environ["OTEL_SDK_DISABLED"] = "true"
        runner = WorkerRunner("bench", plugins=[agent_plugin_otel])
        agent_plugin_otel.configure_runner(runner, RunConfig())
        del os.environ["OTEL_SDK_DISABLED"]
    else:
        config = RunConfig.model_validate({"plugins": {"otel": {"metrics": kind == "on"}}})
        runner = WorkerRunner("bench", plugins=[agent_plugin_otel])
        agent_plugin_otel.configure_runner(runner, config)  # providers from OTEL_*
    await runner.add_worker(Echo("echo"))
    return runner


def flush() -> None:
    from opentelemetry import metrics, trace

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        getattr(provider, "force_flush", lambda: None)()


async def main(quick: bool) -> None:
    os.environ.setdefault("OTEL_EXPORTER_OTLP_ENDPOINT", start_receiver())
    os.environ.setdefault("OTEL_SERVICE_NAME", "otel-bench")
    blocks, rounds, warmup = (4, 500, 200) if quick else (10, 1000, 500)
    kinds = ("off", "disabled", "on", "traces")
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    runners = {kind: await make(kind) for kind in kinds}
    async with runners["off"], runners["disabled"], runners["on"], runners["traces"]:
        for kind in kinds:
            await block(runners[kind], warmup)
        for _ in range(blocks):
            for kind in kinds:
                times[kind] += await block(runners[kind], rounds)
            # The exporter's thread sends what the "on" block queued before the next block
            # starts, so that its work is not charged to another kind.
            await anyio.to_thread.run_sync(flush)
    medians = {kind: statistics.median(values) * 1e6 for kind, values in times.items()}
    floor = medians["off"]
    print(f"job round trip, median of {blocks * rounds} each (us):")
    for kind, goal in (("off", None), ("disabled", 1.05), ("on", 1.3), ("traces", None)):
        ratio = medians[kind] / floor
        mark = "" if goal is None else f"  goal <= {goal}x: {'PASS' if ratio <= goal else 'MISS'}"
        print(f"  {kind:9} {medians[kind]:8.1f}  {ratio:5.2f}x{mark}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    anyio.run(main, parser.parse_args().quick)
