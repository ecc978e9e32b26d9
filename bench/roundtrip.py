"""Round-trip benchmark of the job path, measured against a floor in one run.

The job path is the framework's hot path: every request, update, stream item and response
crosses it. This script measures, through the public API only, how far a job round trip
is from the cheapest possible hand-off between two asyncio tasks, and whether the runner
scales the way the design promises (targeted delivery, linear groups, cheap idle workers).
It prints the figures, the goals of issue 2 with a PASS or MISS marker each, and the
figures of pipecat-ai-subagents 0.6.0 (measured on the same kind of machine) for scale:

- floor: median round trip of a small dict between two asyncio tasks over a pair of
  ``asyncio.Queue`` (the bare cost of two task switches);
- rt: median sequential ``async with runner.job("echo", ...)`` round trip to a worker
  returning a small dict; goal at most 5x the floor;
- rt with 100 idle workers on the runner; goal at most 1.3x rt (delivery is targeted);
- median ``runner.job_group(...)`` to 10 and to 100 workers; goal: the 100-worker group at
  most 15x the 10-worker one (linear);
- streaming: chunks per second received by ``async for event in job`` from an
  async-generator handler yielding 20,000 small dicts; goal at least 300,000/s;
- a runner with 1,000 idle workers (in a fresh subprocess, so that peak RSS is its own):
  time from entering ``async with WorkerRunner()`` to ready, and the process's peak RSS;
  goals under 1 s and under 150 MiB.

Figures that are compared with each other are measured interleaved, in blocks, inside one
event loop (floor, rt and rt with 100 idle workers; the 10- and 100-worker groups), so a
drift of the machine's speed during the run moves both sides of a ratio alike. Each round
trip is timed on its own with ``time.perf_counter`` and the median is reported, after
warm-up rounds that are discarded. Everything runs under ``anyio.run`` on asyncio.

Run: ``python bench/roundtrip.py`` (about 10 s on a 2-CPU machine), ``--quick`` (about 3 s),
or ``tox -e bench``. It is a benchmark, not a test: it always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import anyio

from framework import BaseWorker, Job, JobEvent, WorkerRunner, job

PAYLOAD = {"x": 1}
STREAM_CHUNKS = 20_000
STARTUP_WORKERS = 1_000
IDLE_WORKERS = 100

# Goals (issue 2, "Speed").
GOAL_RT_FLOOR = 5.0
GOAL_IDLE_RT = 1.3
GOAL_GROUP_RATIO = 15.0
GOAL_STREAM_RATE = 300_000.0
GOAL_STARTUP_S = 1.0
GOAL_RSS_MIB = 150.0

# pipecat-ai-subagents 0.6.0, same kind of machine (issue 2).
REF_RT_US = 87.0
REF_RT_FLOOR = 14.0
REF_IDLE_RT_US = 1_189.0
REF_GROUP10_US = 748.0
REF_GROUP100_US = 42_500.0
REF_STREAM_RATE = 97_500.0


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``--quick`` shrinks every count."""

    rounds: int
    """Interleaved blocks per measured quantity (the first is warm-up, discarded)."""
    rt_block: int
    """Round trips per block for the floor and the two rt figures."""
    group10_block: int
    group100_block: int
    stream_reps: int
    """Streaming jobs of STREAM_CHUNKS items (plus one warm-up)."""
    startup_runs: int
    """Fresh subprocesses for the 1,000-worker startup."""


NORMAL = Settings(
    rounds=11, rt_block=2_000, group10_block=300, group100_block=40, stream_reps=9, startup_runs=3
)
QUICK = Settings(
    rounds=4, rt_block=1_000, group10_block=100, group100_block=12, stream_reps=3, startup_runs=1
)


# ----------------------------------------------------------------------------- workers


class Echo(BaseWorker):
    """Answers every job with a small dict."""

    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        return {"ok": True}


class Streamer(BaseWorker):
    """Streams ``payload["n"]`` small dicts."""

    @job
    async def handle(self, job: Job) -> AsyncIterator[dict[str, int]]:
        for i in range(job.payload["n"]):
            yield {"i": i}


# ----------------------------------------------------------------------------- helpers


async def timed_block(samples: list[float], n: int, once: Callable[[], Awaitable[None]]) -> None:
    """Run ``once`` ``n`` times, appending each duration (seconds) to ``samples``."""
    clock = time.perf_counter
    append = samples.append
    for _ in range(n):
        t0 = clock()
        await once()
        append(clock() - t0)


async def interleaved(
    settings_rounds: int, blocks: dict[str, tuple[int, Callable[[], Awaitable[None]]]]
) -> dict[str, list[float]]:
    """Run each named block once per round, in turn; the first round is warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in blocks}
    for round_index in range(settings_rounds):
        for name, (n, once) in blocks.items():
            gc.collect()
            if round_index == 0:
                await timed_block([], n, once)
            else:
                await timed_block(samples[name], n, once)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def spread(samples: list[float], scale: float, unit: str) -> str:
    """p10..p90 and the sample count, for judging how stable a median is."""
    q = statistics.quantiles(samples, n=10)
    return f"p10 {q[0] * scale:,.1f} / p90 {q[-1] * scale:,.1f} {unit}, n={len(samples):,}"


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


# ----------------------------------------------------------------------------- measurements


async def measure_roundtrips(settings: Settings) -> dict[str, list[float]]:
    """Floor, rt and rt with idle workers, interleaved in one event loop."""
    to_echo: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_echo: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def queue_echo() -> None:
        while True:
            message = await to_echo.get()
            from_echo.put_nowait(message)

    async def floor_once() -> None:
        to_echo.put_nowait({"x": 1})
        await from_echo.get()

    async with WorkerRunner() as runner, WorkerRunner() as crowded:
        await runner.add_worker(Echo("echo"))
        await crowded.add_worker(Echo("echo"))
        for i in range(IDLE_WORKERS):
            await crowded.add_worker(Echo(f"idle-{i:03d}"))

        for each in (runner, crowded):  # measure a path that works
            async with each.job("echo", payload=PAYLOAD) as check:
                pass
            if check.response != {"ok": True}:
                raise RuntimeError(f"unexpected response {check.response!r}")

        async def rt_once() -> None:
            async with runner.job("echo", payload=PAYLOAD):
                pass

        async def crowded_once() -> None:
            async with crowded.job("echo", payload=PAYLOAD):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(queue_echo)
            n = settings.rt_block
            samples = await interleaved(
                settings.rounds,
                {"floor": (n, floor_once), "rt": (n, rt_once), "rt_idle": (n, crowded_once)},
            )
            tg.cancel_scope.cancel()
    return samples


async def measure_groups(settings: Settings) -> dict[str, list[float]]:
    """One job_group to 10 workers and to 100, interleaved on one runner."""
    names = [f"w{i:03d}" for i in range(100)]
    async with WorkerRunner() as runner:
        for name in names:
            await runner.add_worker(Echo(name))
        ten, hundred = names[:10], names
        async with runner.job_group(*hundred, payload=PAYLOAD) as check:
            pass
        if check.responses != {name: {"ok": True} for name in hundred}:
            raise RuntimeError("a group member answered something unexpected")

        async def group10_once() -> None:
            async with runner.job_group(*ten, payload=PAYLOAD):
                pass

        async def group100_once() -> None:
            async with runner.job_group(*hundred, payload=PAYLOAD):
                pass

        return await interleaved(
            settings.rounds,
            {
                "group10": (settings.group10_block, group10_once),
                "group100": (settings.group100_block, group100_once),
            },
        )


async def measure_stream(settings: Settings) -> list[float]:
    """Chunks per second received by the requester, one figure per streaming job."""
    rates: list[float] = []
    async with WorkerRunner() as runner:
        await runner.add_worker(Streamer("stream"))
        for rep in range(settings.stream_reps + 1):
            gc.collect()
            received = 0
            t0 = time.perf_counter()
            async with runner.job("stream", payload={"n": STREAM_CHUNKS}) as stream:
                async for event in stream:
                    if event.type == JobEvent.STREAM_DATA:
                        received += 1
            elapsed = time.perf_counter() - t0
            if received != STREAM_CHUNKS:
                raise RuntimeError(f"received {received} chunks, expected {STREAM_CHUNKS}")
            if rep:  # the first job is warm-up
                rates.append(received / elapsed)
    return rates


async def startup_child(count: int) -> dict[str, float]:
    """In a fresh process: add ``count`` idle workers, time ``async with`` to ready."""
    rss_before = peak_rss_mib()
    runner = WorkerRunner()
    t_add = time.perf_counter()
    for i in range(count):
        await runner.add_worker(Echo(f"idle-{i:04d}"))
    t0 = time.perf_counter()
    async with runner:
        t1 = time.perf_counter()
        ready = len(runner.registry.local_workers)
        async with runner.job(f"idle-{count - 1:04d}", payload=PAYLOAD):
            pass
    t2 = time.perf_counter()
    if ready != count:
        raise RuntimeError(f"{ready} of {count} workers ready when 'async with' returned")
    return {
        "add_s": t0 - t_add,
        "ready_s": t1 - t0,
        "end_s": t2 - t1,
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_startup(count: int) -> dict[str, float]:
    """Measure the startup in a fresh interpreter (so its peak RSS is its own)."""
    done = subprocess.run(
        [sys.executable, __file__, "--startup-child", str(count)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"startup subprocess failed:\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ----------------------------------------------------------------------------- report


def row(label: str, value: str, ratio: str = "", goal: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else mark(ok)
    print(f"{label:<38} {value:>16}  {ratio:<17} {goal:<20} {verdict}".rstrip())


def detail(text: str) -> None:
    print(f"{'':<10}{text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a few seconds)")
    parser.add_argument("--startup-child", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.startup_child is not None:
        result = anyio.run(startup_child, args.startup_child, backend="asyncio")
        print(json.dumps(result))
        return

    settings = QUICK if args.quick else NORMAL
    started = time.perf_counter()
    print(
        f"agent-plugin-framework job path: Python {platform.python_version()}, "
        f"anyio {metadata.version('anyio')} (asyncio), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'normal'} run"
    )
    print()
    row("measure", "ours", "ratio", "goal", None)
    us = 1e6

    rt = anyio.run(measure_roundtrips, settings, backend="asyncio")
    floor, job_rt, idle_rt = median(rt["floor"]), median(rt["rt"]), median(rt["rt_idle"])
    row("floor: asyncio.Queue ping-pong", f"{floor * us:.2f} us")
    detail(spread(rt["floor"], us, "us"))
    ratio = job_rt / floor
    row(
        "rt: runner.job round trip",
        f"{job_rt * us:.2f} us",
        f"{ratio:.2f}x floor",
        f"<= {GOAL_RT_FLOOR:g}x floor",
        ratio <= GOAL_RT_FLOOR,
    )
    detail(spread(rt["rt"], us, "us"))
    ratio = idle_rt / job_rt
    row(
        f"rt with {IDLE_WORKERS} idle workers",
        f"{idle_rt * us:.2f} us",
        f"{ratio:.2f}x rt",
        f"<= {GOAL_IDLE_RT:g}x rt",
        ratio <= GOAL_IDLE_RT,
    )
    detail(spread(rt["rt_idle"], us, "us"))

    groups = anyio.run(measure_groups, settings, backend="asyncio")
    g10, g100 = median(groups["group10"]), median(groups["group100"])
    row("job_group to 10 workers", f"{g10 * us:,.1f} us")
    detail(spread(groups["group10"], us, "us"))
    ratio = g100 / g10
    row(
        "job_group to 100 workers",
        f"{g100 * us:,.1f} us",
        f"{ratio:.2f}x group10",
        f"<= {GOAL_GROUP_RATIO:g}x group10",
        ratio <= GOAL_GROUP_RATIO,
    )
    detail(spread(groups["group100"], us, "us"))

    rates = anyio.run(measure_stream, settings, backend="asyncio")
    rate = median(rates)
    row(
        f"stream: {STREAM_CHUNKS:,} chunks via async for",
        f"{rate:,.0f} /s",
        "",
        f">= {GOAL_STREAM_RATE:,.0f} /s",
        rate >= GOAL_STREAM_RATE,
    )
    detail(f"min {min(rates):,.0f} / max {max(rates):,.0f} chunks/s, n={len(rates)} jobs")

    startups = [run_startup(STARTUP_WORKERS) for _ in range(settings.startup_runs)]
    ready = median([s["ready_s"] for s in startups])
    rss = max(s["peak_rss_mib"] for s in startups)
    row(
        f"{STARTUP_WORKERS:,} idle workers: enter to ready",
        f"{ready * 1000:,.1f} ms",
        "",
        f"< {GOAL_STARTUP_S:g} s",
        ready < GOAL_STARTUP_S,
    )
    row(
        f"{STARTUP_WORKERS:,} idle workers: peak RSS",
        f"{rss:.1f} MiB",
        "",
        f"< {GOAL_RSS_MIB:g} MiB",
        rss < GOAL_RSS_MIB,
    )
    before = max(s["rss_before_mib"] for s in startups)
    add = median([s["add_s"] for s in startups])
    end = median([s["end_s"] for s in startups])
    detail(
        f"fresh subprocess (x{len(startups)}): {before:.1f} MiB after imports, "
        f"add_worker x{STARTUP_WORKERS:,} {add * 1000:.1f} ms, one job + end {end * 1000:,.1f} ms"
    )

    print()
    print("for scale, pipecat-ai-subagents 0.6.0 on the same kind of machine (issue 2):")
    detail(f"round trip {REF_RT_US:g} us ({REF_RT_FLOOR:g}x its floor); ours {job_rt * us:.1f} us")
    detail(f"with 100 idle agents {REF_IDLE_RT_US:,g} us; ours {idle_rt * us:.1f} us")
    detail(
        f"group of 10 {REF_GROUP10_US:g} us, of 100 {REF_GROUP100_US / 1000:g} ms "
        f"({REF_GROUP100_US / REF_GROUP10_US:.0f}x); ours {g10 * us:,.0f} us, "
        f"{g100 * 1000:.2f} ms ({g100 / g10:.1f}x)"
    )
    detail(f"streaming {REF_STREAM_RATE:,.0f} chunks/s; ours {rate:,.0f} chunks/s")
    print()
    print(f"measured in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
