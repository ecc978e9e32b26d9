"""LLM streaming benchmark: tokens per second from a backend to a requester, through a job.

An LLM worker's reply is the hottest stream the framework carries: every token delta the
backend yields crosses the job path (the worker's tool loop, a stream chunk on the bus, the
requester's ``async for``). This script measures, through the public API only, how much of
a backend's speed the framework keeps. The backend is the built-in ``offline`` one told to
emit ``TOKENS`` tokens as fast as it can (``backend_options={"tokens": TOKENS}``), so the
backend itself costs as little as a backend can:

- backend: tokens per second of ``OfflineBackend().stream(...)`` iterated directly (an
  ``async for`` over the async generator, nothing else): the ceiling;
- job: tokens per second received by ``async for event in job`` of a job sent with
  ``runner.job(...)`` to an ``LLMWorker`` on a ``WorkerRunner`` (in-process bus, no event
  publisher), counting the tokens in the text of the stream chunks, from entering the job's
  ``async with`` to its response; goals: at least half the backend's rate, and at least
  150,000 tokens per second.

The two are measured interleaved, in rounds, inside one event loop (a backend run, then a
job, per round), so a drift of the machine's speed moves both sides of the ratio alike; the
first round is warm-up and discarded, and the medians are reported. Every job is checked:
``TOKENS`` tokens received and ``completion_tokens == TOKENS`` in its response.
Everything runs under ``anyio.run`` on asyncio.

Run: ``python bench/llm_stream.py`` (about 4 s on a 2-CPU machine), ``--quick`` (about
2 s), ``--profile`` (one job under cProfile, the top functions by own time), or
``tox -e bench``. It is a benchmark, not a test: it always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import statistics
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import anyio

from framework import JobEvent, LLMWorker, WorkerRunner
from framework.llm import TextDelta
from framework.llm.offline import OfflineBackend, OfflineOptions

TOKENS = 100_000
MESSAGES: list[dict[str, Any]] = [{"role": "user", "content": "go"}]
PAYLOAD = {"messages": MESSAGES}
WORD = "tok"
"""The word the offline backend emits in ``tokens`` mode: tokens are counted by it, so a
framework that joins several deltas into one chunk is measured fairly."""

# Goals (issue 4, "Speed").
GOAL_SHARE = 0.5
GOAL_RATE = 150_000.0


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``--quick`` shrinks the count of rounds."""

    rounds: int
    """Rounds of (backend run, job); the first is warm-up, discarded."""


NORMAL = Settings(rounds=9)
QUICK = Settings(rounds=3)


# ----------------------------------------------------------------------------- measurements


async def backend_once(backend: OfflineBackend, options: OfflineOptions) -> float:
    """One direct run of the backend; returns its tokens per second."""
    received = 0
    t0 = time.perf_counter()
    async for chunk in backend.stream(MESSAGES, [], options):
        if type(chunk) is TextDelta:
            received += chunk.text.count(WORD)
    elapsed = time.perf_counter() - t0
    if received != TOKENS:
        raise RuntimeError(f"the backend emitted {received} tokens, expected {TOKENS}")
    return received / elapsed


async def job_once(runner: WorkerRunner) -> tuple[float, int]:
    """One job to the LLM worker; returns the tokens per second its requester received,
    and the number of stream chunks they came in."""
    received = chunks = 0
    t0 = time.perf_counter()
    async with runner.job("llm", payload=PAYLOAD) as job:
        async for event in job:
            if event.type == JobEvent.STREAM_DATA:
                received += event.data.count(WORD)
                chunks += 1
    elapsed = time.perf_counter() - t0
    if received != TOKENS:
        raise RuntimeError(f"the requester received {received} tokens, expected {TOKENS}")
    usage = (job.response or {}).get("usage", {})
    if usage.get("completion_tokens") != TOKENS:
        raise RuntimeError(f"unexpected usage in the response: {usage!r}")
    return received / elapsed, chunks


async def measure(settings: Settings) -> dict[str, list[float]]:
    """Backend runs and jobs, interleaved in one event loop."""
    backend = OfflineBackend()
    options = OfflineOptions(tokens=TOKENS)
    samples: dict[str, list[float]] = {"backend": [], "job": [], "chunks": []}
    async with WorkerRunner() as runner:
        await runner.add_worker(LLMWorker("llm", backend_options={"tokens": TOKENS}))
        for round_index in range(settings.rounds):
            gc.collect()
            backend_rate = await backend_once(backend, options)
            gc.collect()
            job_rate, chunks = await job_once(runner)
            if round_index:  # the first round is warm-up
                samples["backend"].append(backend_rate)
                samples["job"].append(job_rate)
                samples["chunks"].append(float(chunks))
    return samples


async def profile_job() -> str:
    """One job under cProfile: the top functions by own time, as text."""
    async with WorkerRunner() as runner:
        await runner.add_worker(LLMWorker("llm", backend_options={"tokens": TOKENS}))
        await job_once(runner)  # warm-up
        profiler = cProfile.Profile()
        profiler.enable()
        await job_once(runner)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(15)
    return out.getvalue()


# ----------------------------------------------------------------------------- report


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def row(label: str, value: str, ratio: str = "", goal: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else mark(ok)
    print(f"{label:<38} {value:>16}  {ratio:<17} {goal:<20} {verdict}".rstrip())


def detail(text: str) -> None:
    print(f"{'':<10}{text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a few seconds)")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one job (cProfile, own time)"
    )
    args = parser.parse_args()

    settings = QUICK if args.quick else NORMAL
    started = time.perf_counter()
    print(
        f"agent-plugin-framework LLM streaming: Python {platform.python_version()}, "
        f"anyio {metadata.version('anyio')} (asyncio), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'normal'} run"
    )
    print()
    row("measure", "ours", "ratio", "goal", None)

    samples = anyio.run(measure, settings, backend="asyncio")
    backend_rate = statistics.median(samples["backend"])
    job_rate = statistics.median(samples["job"])
    chunks = statistics.median(samples["chunks"])
    n = len(samples["job"])
    row(f"backend: offline, {TOKENS:,} tokens", f"{backend_rate:,.0f} /s")
    detail(
        f"min {min(samples['backend']):,.0f} / max {max(samples['backend']):,.0f} tokens/s, "
        f"n={n}; {1e6 / backend_rate:.2f} us per token"
    )
    share = job_rate / backend_rate
    row(
        "job: LLMWorker to requester",
        f"{job_rate:,.0f} /s",
        f"{share:.2f}x backend",
        f">= {GOAL_SHARE:g}x backend",
        share >= GOAL_SHARE,
    )
    row(
        "",
        "",
        "",
        f">= {GOAL_RATE:,.0f} /s",
        job_rate >= GOAL_RATE,
    )
    detail(
        f"min {min(samples['job']):,.0f} / max {max(samples['job']):,.0f} tokens/s, n={n}; "
        f"{1e6 / job_rate:.2f} us per token, {chunks:,.0f} stream chunks per job "
        f"({TOKENS / chunks:,.1f} tokens per chunk)"
    )

    if args.profile:
        print()
        print("one job under cProfile (own time; profiling slows everything down):")
        print(anyio.run(profile_job, backend="asyncio"))

    print()
    print(f"measured in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
