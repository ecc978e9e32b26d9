"""Round-trip benchmark of the job path, measured against a floor in one run.

The job path is the framework's hot path: every request, update, stream item and response
crosses it. This script measures, through the public API only, how far a job round trip
is from the cheapest possible hand-off between two asyncio tasks, and whether the runner
scales the way the design promises (targeted delivery, linear groups, cheap idle workers,
typed payloads that cost little, memory and tasks that do not pile up over many jobs).
It prints the figures, the goals with a PASS or MISS marker each, and the figures of
pipecat-ai-subagents 0.6.0 (measured on the same kind of machine) for scale:

- floor: median round trip of a small dict between two asyncio tasks over a pair of
  ``asyncio.Queue`` (the bare cost of two task switches);
- rt: median sequential ``async with runner.job("echo", ...)`` round trip to a worker
  returning a small dict; goal at most 4x the floor;
- rt with 100 idle workers on the runner; goal at most 1.1x rt (delivery is targeted);
- rt typed: the same round trip to a handler ``echo(self, job, data: Small) -> Small``
  (the payload is validated into a small pydantic model before the handler runs, the
  returned model is dumped); goal at most 1.3x rt (typing a handler is affordable);
- median ``runner.job_group(...)`` to 10 and to 100 workers; goal: the 100-worker group at
  most 12x the 10-worker one (linear);
- stream floor: items per second handed from one asyncio task to another through an
  ``asyncio.Queue(maxsize=256)`` (the bare cost of a bounded producer/consumer pair, with
  the requester's buffer size), 20,000 small dicts;
- streaming: chunks per second received by ``async for event in job`` from an
  async-generator handler yielding 20,000 small dicts; goal at least 0.35x the stream
  floor, measured interleaved with it (the floor streams about 1.14 million items/s when
  the ping-pong floor is 7.7 us, so the goal is 400,000 chunks/s there);
- a runner with 1,000 idle workers (in a fresh subprocess, so that peak RSS is its own):
  time from entering ``async with WorkerRunner()`` to ready, and the process's peak RSS;
  goals under 1 s and under 150 MiB;
- memory flat over many jobs (in a fresh subprocess, so that its RSS is its own): 1,000,000
  sequential round trips (100,000 with ``--quick``); the resident set size is sampled after
  the first 10% (allocator pools and caches have grown by then) and at the end; goal: it
  grows by less than 5 MiB in between (a finished job leaves nothing behind);
- fire and forget, in the same subprocess: a tenth as many ``request_job(...,
  timeout=3600)`` jobs that finish at once, sent in waves of 1,000; the number of live
  asyncio tasks once they have all finished; goal: back to the count before them, within
  3 (a finished job's deadline leaves no timer or task behind).

Figures that are compared with each other are measured interleaved, in blocks, inside one
event loop (floor, rt, rt with 100 idle workers and rt typed; the 10- and 100-worker
groups; the stream floor and the streaming jobs), so a drift of the machine's speed during
the run moves both sides of a ratio alike. Each round trip is timed on its own with
``time.perf_counter`` and the median is reported, after warm-up rounds that are discarded.
Everything runs under ``anyio.run`` on asyncio.

Run: ``python bench/roundtrip.py`` (about 1 min on a 2-CPU machine, most of it the
1,000,000 jobs), ``--quick`` (under 10 s), or ``tox -e bench``. It is a benchmark, not a
test: it always exits 0 when it ran.
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
from pydantic import BaseModel

from framework import BaseWorker, Job, JobEvent, WorkerRunner, job
from framework.bus.messages import JobResponseMessage

PAYLOAD = {"x": 1}
STREAM_CHUNKS = 20_000
STREAM_FLOOR_BUFFER = 256
"""The stream floor's queue size: the requester's buffer of unread events
(``framework._pending.EVENT_BUFFER``)."""
STARTUP_WORKERS = 1_000
IDLE_WORKERS = 100
FIRE_WAVE = 1_000
"""Fire-and-forget jobs sent before waiting for them: bounds the jobs in flight, so that
the figure is about what finished jobs leave behind, not about a peak."""
FIRE_TIMEOUT = 3600.0
"""A deadline far beyond the run: every fire-and-forget job finishes long before it."""

# Goals.
GOAL_RT_FLOOR = 4.0
GOAL_IDLE_RT = 1.1
GOAL_TYPED_RT = 1.3
GOAL_GROUP_RATIO = 12.0
GOAL_STREAM_FLOOR = 0.35
"""Streaming, as a share of the stream floor's rate: 400,000 chunks/s where the floor
streams 1.14 million items/s (its rate when the ping-pong floor is 7.7 us)."""
GOAL_STARTUP_S = 1.0
GOAL_RSS_MIB = 150.0
GOAL_MEMORY_GROWTH_MIB = 5.0
GOAL_TASKS_LEFT = 3

# pipecat-ai-subagents 0.6.0, measured on the same kind of machine.
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
    """Streaming jobs of STREAM_CHUNKS items, each after a stream floor of as many items
    (plus one warm-up of each)."""
    startup_runs: int
    """Fresh subprocesses for the 1,000-worker startup."""
    memory_jobs: int
    """Sequential jobs for the memory figure (a tenth as many fire-and-forget ones)."""


NORMAL = Settings(
    rounds=11,
    rt_block=2_000,
    group10_block=300,
    group100_block=40,
    stream_reps=9,
    startup_runs=3,
    memory_jobs=1_000_000,
)
QUICK = Settings(
    rounds=4,
    rt_block=1_000,
    group10_block=100,
    group100_block=12,
    stream_reps=3,
    startup_runs=1,
    memory_jobs=100_000,
)


# ----------------------------------------------------------------------------- workers


class Echo(BaseWorker):
    """Answers every job with a small dict."""

    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        return {"ok": True}


class Small(BaseModel):
    """The typed payload: as small as ``PAYLOAD``, plus a defaulted field."""

    x: int
    label: str = ""


class TypedEcho(BaseWorker):
    """Validates the payload into ``Small`` and answers with it (dumped by the worker)."""

    @job
    async def echo(self, job: Job, data: Small) -> Small:
        return data


class Firer(BaseWorker):
    """Fires jobs and forgets them; counts the outcomes its callbacks hear of."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.completed = 0
        self.other = 0
        self.expected = 0
        self.all_done = anyio.Event()

    def expect(self, total: int) -> None:
        """Wake ``all_done`` once ``total`` outcomes have been heard of in all."""
        self.expected = total
        self.all_done = anyio.Event()
        if self.completed + self.other >= total:
            self.all_done.set()

    def _heard(self) -> None:
        if self.completed + self.other >= self.expected:
            self.all_done.set()

    async def on_job_completed(self, result: JobResponseMessage) -> None:
        self.completed += 1
        self._heard()

    async def on_job_error(self, response: JobResponseMessage) -> None:
        self.other += 1
        self._heard()

    async def on_job_cancelled(self, response: JobResponseMessage) -> None:
        self.other += 1
        self._heard()


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


def rss_mib() -> float:
    """This process's resident set size now, in MiB (Linux); elsewhere its peak so far,
    which grows as soon as the resident size does and so still shows a growth."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
    except OSError:
        return peak_rss_mib()
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def settle() -> None:
    """Let tasks that have just been told to end run to their end."""
    await anyio.sleep(0.05)  # many loop iterations: every ready task runs to its end


# ----------------------------------------------------------------------------- measurements


async def measure_roundtrips(settings: Settings) -> dict[str, list[float]]:
    """Floor, rt, rt with idle workers and rt typed, interleaved in one event loop."""
    to_echo: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_echo: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def queue_echo() -> None:
        while True:
            message = await to_echo.get()
            from_echo.put_nowait(message)

    async def floor_once() -> None:
        to_echo.put_nowait({"x": 1})
        await from_echo.get()

    async with WorkerRunner() as runner, WorkerRunner() as crowded, WorkerRunner() as typed:
        await runner.add_worker(Echo("echo"))
        await crowded.add_worker(Echo("echo"))
        for i in range(IDLE_WORKERS):
            await crowded.add_worker(Echo(f"idle-{i:03d}"))
        await typed.add_worker(TypedEcho("echo"))

        echoed: dict[str, Any] = {"ok": True}
        typed_echoed = {"x": 1, "label": ""}  # the payload, validated, then dumped
        for each, expected in ((runner, echoed), (crowded, echoed), (typed, typed_echoed)):
            async with each.job("echo", payload=PAYLOAD) as check:  # measure a path that works
                pass
            if check.response != expected:
                raise RuntimeError(f"unexpected response {check.response!r}")

        async def rt_once() -> None:
            async with runner.job("echo", payload=PAYLOAD):
                pass

        async def crowded_once() -> None:
            async with crowded.job("echo", payload=PAYLOAD):
                pass

        async def typed_once() -> None:
            async with typed.job("echo", payload=PAYLOAD):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(queue_echo)
            n = settings.rt_block
            samples = await interleaved(
                settings.rounds,
                {
                    "floor": (n, floor_once),
                    "rt": (n, rt_once),
                    "rt_idle": (n, crowded_once),
                    "rt_typed": (n, typed_once),
                },
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


async def stream_floor(n: int) -> float:
    """Items per second from a producer task to this one through a bounded asyncio.Queue."""
    queue: asyncio.Queue[dict[str, int] | None] = asyncio.Queue(maxsize=STREAM_FLOOR_BUFFER)

    async def produce() -> None:
        for i in range(n):
            await queue.put({"i": i})
        await queue.put(None)

    received = 0
    t0 = time.perf_counter()
    producer = asyncio.create_task(produce())
    while await queue.get() is not None:
        received += 1
    await producer
    elapsed = time.perf_counter() - t0
    if received != n:
        raise RuntimeError(f"the stream floor received {received} items, expected {n}")
    return received / elapsed


async def measure_stream(settings: Settings) -> dict[str, list[float]]:
    """Items per second of the stream floor and chunks per second received by the
    requester, one figure each per round (a floor, then a streaming job)."""
    rates: dict[str, list[float]] = {"floor": [], "stream": []}
    async with WorkerRunner() as runner:
        await runner.add_worker(Streamer("stream"))
        for rep in range(settings.stream_reps + 1):
            gc.collect()
            floor = await stream_floor(STREAM_CHUNKS)
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
            if rep:  # the first round is warm-up
                rates["floor"].append(floor)
                rates["stream"].append(received / elapsed)
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


async def memory_child(jobs: int) -> dict[str, float]:
    """In a fresh process: RSS over ``jobs`` sequential round trips, then the live asyncio
    tasks before and after ``jobs // 10`` fire-and-forget jobs with a long deadline."""
    mark_at = jobs // 10
    fired = jobs // 10
    firer = Firer("firer")
    async with WorkerRunner() as runner:
        await runner.add_worker(Echo("echo"))
        await runner.add_worker(firer)

        gc.collect()
        rss_start = rss_mib()
        rss_mark = t_mark = 0.0
        t0 = time.perf_counter()
        for done in range(1, jobs + 1):
            async with runner.job("echo", payload=PAYLOAD):
                pass
            if done == mark_at:
                t_mark = time.perf_counter()
                gc.collect()
                rss_mark = rss_mib()
        t_end = time.perf_counter()
        gc.collect()
        rss_end = rss_mib()

        await settle()
        tasks_before = len(asyncio.all_tasks())
        in_flight = 0
        t_fire = time.perf_counter()
        for start in range(0, fired, FIRE_WAVE):
            wave = min(FIRE_WAVE, fired - start)
            firer.expect(start + wave)
            for _ in range(wave):
                await firer.request_job("echo", payload=PAYLOAD, timeout=FIRE_TIMEOUT)
            in_flight = max(in_flight, len(asyncio.all_tasks()))
            await firer.all_done.wait()
        t_fired = time.perf_counter()
        await settle()
        tasks_after = len(asyncio.all_tasks())
        gc.collect()
        rss_fired = rss_mib()
    if firer.completed != fired:
        raise RuntimeError(f"{firer.completed} of {fired} fire-and-forget jobs completed")
    return {
        "jobs": jobs,
        "mark_at": mark_at,
        "rss_start_mib": rss_start,
        "rss_mark_mib": rss_mark,
        "rss_end_mib": rss_end,
        "job_s": (t_end - t0) / jobs,
        "late_job_s": (t_end - t_mark) / (jobs - mark_at),
        "fired": fired,
        "fire_job_s": (t_fired - t_fire) / fired,
        "tasks_before": tasks_before,
        "tasks_in_flight": in_flight,
        "tasks_after": tasks_after,
        "rss_fired_mib": rss_fired,
    }


def run_child(flag: str, count: int) -> dict[str, float]:
    """Run a measurement in a fresh interpreter (so its RSS is its own); its JSON result."""
    done = subprocess.run(
        [sys.executable, __file__, flag, str(count)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"subprocess {flag} {count} failed:\n{done.stderr}")
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
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under 10 s)")
    parser.add_argument("--startup-child", type=int, metavar="N", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", type=int, metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.startup_child is not None:
        result = anyio.run(startup_child, args.startup_child, backend="asyncio")
        print(json.dumps(result))
        return
    if args.memory_child is not None:
        result = anyio.run(memory_child, args.memory_child, backend="asyncio")
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
    typed_rt = median(rt["rt_typed"])
    ratio = typed_rt / job_rt
    row(
        "rt typed: Small in, Small out",
        f"{typed_rt * us:.2f} us",
        f"{ratio:.2f}x rt",
        f"<= {GOAL_TYPED_RT:g}x rt",
        ratio <= GOAL_TYPED_RT,
    )
    detail(spread(rt["rt_typed"], us, "us"))

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

    streams = anyio.run(measure_stream, settings, backend="asyncio")
    floor_rate, rate = median(streams["floor"]), median(streams["stream"])
    row(f"stream floor: asyncio.Queue({STREAM_FLOOR_BUFFER})", f"{floor_rate:,.0f} /s")
    detail(
        f"min {min(streams['floor']):,.0f} / max {max(streams['floor']):,.0f} items/s, "
        f"n={len(streams['floor'])} runs of {STREAM_CHUNKS:,}"
    )
    ratio = rate / floor_rate
    row(
        f"stream: {STREAM_CHUNKS:,} chunks via async for",
        f"{rate:,.0f} /s",
        f"{ratio:.2f}x floor",
        f">= {GOAL_STREAM_FLOOR:g}x floor",
        ratio >= GOAL_STREAM_FLOOR,
    )
    rates = streams["stream"]
    detail(f"min {min(rates):,.0f} / max {max(rates):,.0f} chunks/s, n={len(rates)} jobs")

    startups = [run_child("--startup-child", STARTUP_WORKERS) for _ in range(settings.startup_runs)]
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

    memory = run_child("--memory-child", settings.memory_jobs)
    jobs, mark_at = int(memory["jobs"]), int(memory["mark_at"])
    growth = memory["rss_end_mib"] - memory["rss_mark_mib"]
    row(
        f"{jobs:,} jobs: RSS growth 10% to end",
        f"{growth:+.2f} MiB",
        f"{growth / ((jobs - mark_at) / 100_000):+.3f} MiB/100k",
        f"< {GOAL_MEMORY_GROWTH_MIB:g} MiB",
        growth < GOAL_MEMORY_GROWTH_MIB,
    )
    detail(
        f"fresh subprocess: RSS {memory['rss_start_mib']:.1f} MiB at start, "
        f"{memory['rss_mark_mib']:.1f} at {mark_at:,} jobs, {memory['rss_end_mib']:.1f} at "
        f"{jobs:,}; {memory['job_s'] * us:.1f} us per job ({memory['late_job_s'] * us:.1f} "
        "after the 10% mark)"
    )
    fired = int(memory["fired"])
    before, after = int(memory["tasks_before"]), int(memory["tasks_after"])
    row(
        f"fire-and-forget x{fired:,}: tasks left",
        f"{after:,} tasks",
        f"{after - before:+d} vs before",
        f"<= before + {GOAL_TASKS_LEFT}",
        after - before <= GOAL_TASKS_LEFT,
    )
    detail(
        f"request_job(timeout={FIRE_TIMEOUT:g}) in waves of {FIRE_WAVE:,}: {before} tasks "
        f"before, up to {int(memory['tasks_in_flight']):,} once a wave was sent, {after} after; "
        f"{memory['fire_job_s'] * us:.1f} us per job; RSS {memory['rss_fired_mib']:.1f} MiB after"
    )

    print()
    print("for scale, pipecat-ai-subagents 0.6.0, measured on the same kind of machine:")
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
