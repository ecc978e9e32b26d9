"""The job path's round trips counted in CPU instructions, against the same floor.

``bench/roundtrip.py`` times the job path against an asyncio.Queue ping-pong in one run, so
that a drift of the machine's speed moves both sides of each ratio alike. On a machine
shared with noisy neighbours that is not always enough: the same code has shown round
trips from 29 to 120 us within a day, and its ratio to the floor from 3.7x to over 6x,
because the job path touches far more code and data than the floor does and suffers more
from a neighbour's use of the shared caches. This script measures the same quantities in
instructions, with valgrind's callgrind: a count that does not depend on what else the
machine is doing, and that only a change of code (ours, Python's, a library's) moves. It
says what the code costs, not how fast a given machine runs it: read it beside
``bench/roundtrip.py``, not instead of it.

For each quantity (the floor, rt, rt with 100 idle workers, rt typed: the definitions and
goals of ``bench/roundtrip.py``) a fresh interpreter runs N round trips, and another one 3N,
each under ``valgrind --tool=callgrind``; instructions per round trip are the difference
of the two totals over 2N (so start-up, imports and warm-up cancel out).

Run: ``python bench/roundtrip_instructions.py`` (about 4 min on a 2-CPU machine: valgrind
runs Python some 50 times slower, start-up included), ``--quick`` (a fifth of the round
trips; about 3 min). It needs
valgrind on the PATH (Debian: ``apt-get install valgrind``). A benchmark, not a test: it
always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio

# bench/roundtrip.py: the same workers, payload and goals.
from roundtrip import (
    GOAL_IDLE_RT,
    GOAL_RT_FLOOR,
    GOAL_TYPED_RT,
    IDLE_WORKERS,
    PAYLOAD,
    Echo,
    TypedEcho,
    mark,
)

from framework import WorkerRunner

QUANTITIES = ("floor", "rt", "rt_idle", "rt_typed")
WARM_UP = 200
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


async def child(quantity: str, n: int) -> None:
    """Run ``WARM_UP`` then ``n`` round trips of ``quantity``, and nothing else."""
    if quantity == "floor":
        to_echo: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        from_echo: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def queue_echo() -> None:
            while True:
                from_echo.put_nowait(await to_echo.get())

        async def floor_once() -> None:
            to_echo.put_nowait({"x": 1})
            await from_echo.get()

        async with anyio.create_task_group() as tg:
            tg.start_soon(queue_echo)
            for _ in range(WARM_UP + n):
                await floor_once()
            tg.cancel_scope.cancel()
        return
    async with WorkerRunner() as runner:
        await runner.add_worker(TypedEcho("echo") if quantity == "rt_typed" else Echo("echo"))
        if quantity == "rt_idle":
            for i in range(IDLE_WORKERS):
                await runner.add_worker(Echo(f"idle-{i:03d}"))
        for _ in range(WARM_UP + n):
            async with runner.job("echo", payload=PAYLOAD):
                pass


def instructions(quantity: str, n: int) -> int:
    """Instructions callgrind counted for a fresh interpreter running ``child``."""
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            quantity,
            str(n),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"valgrind run of {quantity} x{n} failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_round_trip(quantity: str, n: int) -> float:
    """Instructions per round trip: two runs, their difference over ``2 * n``."""
    with ThreadPoolExecutor(max_workers=2) as pool:  # two valgrind processes at a time
        short, long = pool.map(lambda count: instructions(quantity, count), (n, 3 * n))
    return (long - short) / (2 * n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a third of the round trips")
    parser.add_argument("--child", nargs=2, metavar=("QUANTITY", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        anyio.run(child, args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        print("valgrind is not on the PATH (Debian: apt-get install valgrind); nothing measured")
        return
    n = 200 if args.quick else 1_000
    print(
        f"job path in instructions (valgrind callgrind), Python {sys.version.split()[0]}, "
        f"{2 * n:,} round trips per figure"
    )
    counts = {quantity: per_round_trip(quantity, n) for quantity in QUANTITIES}
    floor, rt = counts["floor"], counts["rt"]
    rows = (
        ("floor: asyncio.Queue ping-pong", floor, "", None),
        ("rt: runner.job round trip", rt, f"{rt / floor:.2f}x floor", rt / floor <= GOAL_RT_FLOOR),
        (
            f"rt with {IDLE_WORKERS} idle workers",
            counts["rt_idle"],
            f"{counts['rt_idle'] / rt:.2f}x rt",
            counts["rt_idle"] / rt <= GOAL_IDLE_RT,
        ),
        (
            "rt typed: Small in, Small out",
            counts["rt_typed"],
            f"{counts['rt_typed'] / rt:.2f}x rt",
            counts["rt_typed"] / rt <= GOAL_TYPED_RT,
        ),
    )
    goals = {1: f"<= {GOAL_RT_FLOOR:g}x floor", 2: f"<= {GOAL_IDLE_RT:g}x rt"}
    goals[3] = f"<= {GOAL_TYPED_RT:g}x rt"
    for index, (label, count, ratio, ok) in enumerate(rows):
        verdict = "" if ok is None else mark(ok)
        print(f"{label:<36} {count:>9,.0f} instr  {ratio:<11} {goals.get(index, ''):<16} {verdict}")


if __name__ == "__main__":
    main()
