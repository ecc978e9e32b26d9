"""Publisher benchmark: what a sync ``publish_event`` impl costs the job path.

Publishing must never cost a job its time: a sync impl runs in a thread of its own, off
the event loop, so one that takes a millisecond per event loses the events it cannot keep
up with instead of slowing every job down. This script measures, through the public API
only, job round trips per second on a runner:

- none: no ``publish_event`` impl at all (no event is even built): the floor of this run;
- sync 1 ms: one plain-function impl that sleeps 1 ms per event (a blocking write to a
  slow file or socket); goal: at least 0.7x the throughput without a publisher;
- sync blocked: one plain-function impl that blocks for ever on its first event, for
  information: what building the events costs, when each publisher loses them all;
- sync fast: one plain-function impl that appends each event to a list (the cheapest sync
  impl there is), for information, with how many of its events it received.

Each block is a fresh runner with one ``Echo`` worker (its start and end are not timed):
warm-up jobs, then ``block`` sequential ``async with runner.job(...)`` round trips, timed
together; the block's figure is round trips per second. The configurations are measured
interleaved, one block each per round, so a drift of the machine's speed moves both sides
of a ratio alike; the first round is warm-up and discarded, and the medians are reported.
The runners end with ``event_drain_timeout=0.05``: a publisher still behind then is
abandoned, its undelivered events counted as dropped. Everything runs under ``anyio.run``
on asyncio.

Run: ``python bench/publishers.py`` (about 10 s on a 2-CPU machine), ``--quick`` (about
3 s), or ``tox -e bench``. It is a benchmark, not a test: it always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import anyio

from framework import BaseWorker, EventModel, Job, WorkerRunner, hookimpl, job

PAYLOAD = {"x": 1}
WARM_UP_JOBS = 50
COST_S = 0.001
"""What the slow publisher spends on each event."""

# Goal (the publishing promise: a slow publisher loses its own events, not the job's time).
GOAL_SLOW_RATIO = 0.7


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``--quick`` shrinks every count."""

    rounds: int
    """Rounds of one block per configuration (the first is warm-up, discarded)."""
    block: int
    """Timed job round trips per block."""


NORMAL = Settings(rounds=11, block=2_000)
QUICK = Settings(rounds=4, block=1_000)


@dataclass
class Tally:
    """A publisher's event figures, summed over the measured blocks."""

    delivered: int = 0
    dropped: int = 0
    failed: int = 0

    def add(self, figures: Any) -> None:
        """Add one runner's figures (a value of ``runner.event_stats()``)."""
        self.delivered += figures.delivered
        self.dropped += figures.dropped
        self.failed += figures.failed


class Echo(BaseWorker):
    """Answers every job with a small dict."""

    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        return {"ok": True}


class SlowSync:
    """A plain-function publisher that blocks for ``COST_S`` on every event."""

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        time.sleep(COST_S)


class BlockedSync:
    """A plain-function publisher that blocks on its first event until the run is over."""

    released = threading.Event()

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        self.released.wait()


class FastSync:
    """A plain-function publisher that only keeps each event."""

    def __init__(self) -> None:
        self.events: list[EventModel] = []

    @hookimpl
    def publish_event(self, event: EventModel) -> None:
        self.events.append(event)


# ----------------------------------------------------------------------------- measurement


async def block_once(plugins: list[object], n: int) -> tuple[float, Tally]:
    """Round trips per second of ``n`` jobs on a fresh runner, and its publisher's figures."""
    runner = WorkerRunner(plugins=plugins, event_drain_timeout=0.05)
    async with runner:
        await runner.add_worker(Echo("echo"))
        for _ in range(WARM_UP_JOBS):
            async with runner.job("echo", payload=PAYLOAD):
                pass
        t0 = time.perf_counter()
        for _ in range(n):
            async with runner.job("echo", payload=PAYLOAD) as check:
                pass
        elapsed = time.perf_counter() - t0
    if check.response != {"ok": True}:
        raise RuntimeError(f"unexpected response {check.response!r}")
    tally = Tally()
    for figures in runner.event_stats().values():
        tally.add(figures)
    return n / elapsed, tally


async def measure(settings: Settings) -> dict[str, tuple[list[float], Tally]]:
    """Every configuration, one block each per round; the first round is warm-up."""
    configurations = {
        "none": list,
        "sync blocked": BlockedSync,
        "sync 1 ms": SlowSync,
        "sync fast": FastSync,
    }
    results: dict[str, tuple[list[float], Tally]] = {name: ([], Tally()) for name in configurations}
    try:
        for round_index in range(settings.rounds):
            for name, make in configurations.items():
                gc.collect()
                plugins: list[object] = [] if make is list else [make()]
                rate, tally = await block_once(plugins, settings.block)
                if round_index:
                    results[name][0].append(rate)
                    results[name][1].add(tally)
    finally:
        BlockedSync.released.set()  # let the abandoned threads end
    return results


# ----------------------------------------------------------------------------- report


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def row(label: str, value: str, ratio: str = "", goal: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else mark(ok)
    print(f"{label:<38} {value:>16}  {ratio:<17} {goal:<20} {verdict}".rstrip())


def detail(text: str) -> None:
    print(f"{'':<10}{text}")


def spread(rates: list[float]) -> str:
    return f"min {min(rates):,.0f} / max {max(rates):,.0f} round trips/s, n={len(rates)} blocks"


def events(figures: Tally) -> str:
    total = figures.delivered + figures.dropped + figures.failed
    share = figures.delivered / total if total else 0.0
    return (
        f"its events: {figures.delivered:,} delivered ({share:.0%}), {figures.dropped:,} "
        f"dropped, {figures.failed:,} failed"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a few seconds)")
    args = parser.parse_args()

    settings = QUICK if args.quick else NORMAL
    started = time.perf_counter()
    print(
        f"agent-plugin-framework publishers: Python {platform.python_version()}, "
        f"anyio {metadata.version('anyio')} (asyncio), {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'normal'} run"
    )
    print()
    row("measure", "ours", "ratio", "goal", None)

    results = anyio.run(measure, settings, backend="asyncio")
    floor = statistics.median(results["none"][0])
    row("rt/s, no publisher", f"{floor:,.0f} /s")
    detail(spread(results["none"][0]))

    rates, figures = results["sync blocked"]
    blocked = statistics.median(rates)
    row(
        "rt/s, sync publisher blocked for ever",
        f"{blocked:,.0f} /s",
        f"{blocked / floor:.2f}x none",
    )
    detail(spread(rates))
    detail(events(figures))

    rates, figures = results["sync 1 ms"]
    slow = statistics.median(rates)
    ratio = slow / floor
    row(
        f"rt/s, sync publisher {COST_S * 1000:g} ms per event",
        f"{slow:,.0f} /s",
        f"{ratio:.2f}x none",
        f">= {GOAL_SLOW_RATIO:g}x none",
        ratio >= GOAL_SLOW_RATIO,
    )
    detail(spread(rates))
    detail(events(figures))

    rates, figures = results["sync fast"]
    fast = statistics.median(rates)
    row("rt/s, sync publisher list.append", f"{fast:,.0f} /s", f"{fast / floor:.2f}x none")
    detail(spread(rates))
    detail(events(figures))

    print()
    print(f"measured in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
