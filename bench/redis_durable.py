"""Durable jobs over the Redis bus: their round trip against a plain job's and the raw floor
measured in the same run, and how soon a SIGKILLed runner's durable jobs complete on a
replica.

- floor: median round trip of a raw redis-py pub/sub ping-pong between two processes (as in
  ``bench/redis_roundtrip.py``: P publishes on ``ping``, Q publishes it back on ``pong``);
- plain: median sequential round trip of a job from a runner in P to a worker hosted by
  one runner in Q (the runner's channel: two PUBLISHes);
- durable: the same to a ``@job(durable=True)`` handler of the same worker: the request
  goes through the worker's stream (XADD, XREADGROUP) and the response is written by one
  script that checks the entry is still the runner's, publishes, acknowledges and deletes
  (EVALSHA); goal at most 1.5x plain;
- recovery: two runner processes host a durable ``slow`` worker (each job sleeps 0.5 s);
  P sends 20 jobs, SIGKILLs one runner 0.2 s later, and times from the kill to the last of
  that runner's jobs completing on the other (attempt 2); goal within 5 s, with the
  default liveness (heartbeat 1 s, 3 misses: a silent runner is lost after about 3 s).

Floor, plain and durable are measured in interleaved blocks in the same two processes, so
a drift of the machine's speed moves every side of a ratio alike; the first round is
warm-up. Run: ``python bench/redis_durable.py`` (about 25 s), ``--quick`` (about 10 s). It
needs ``redis-server`` on the PATH and agent-plugin-redis installed; it always exits 0
when it ran.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import anyio
from agent_plugin_redis.bus import RedisBus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from redis_roundtrip import raw_client, redis_server, subscribe, timed_block

from framework import BaseWorker, Job, WorkerRunner, job

PING, PONG = "durable-bench:ping", "durable-bench:pong"
GOAL_DURABLE_RT = 1.5
GOAL_RECOVERY_S = 5.0
SLOW_JOBS = 20
SLOW_SECONDS = 0.5


class Pay(BaseWorker):
    """Echoes the payload: ``plain`` and ``durable`` (the same handler, two ways)."""

    @job(name="plain")
    async def plain(self, j: Job) -> dict[str, Any]:
        return j.payload

    @job(name="durable", durable=True)
    async def durable(self, j: Job) -> dict[str, Any]:
        return j.payload


class Slow(BaseWorker):
    @job(durable=True)
    async def slow(self, j: Job) -> dict[str, Any]:
        await anyio.sleep(SLOW_SECONDS)
        return {"runner": self.runner.name, "attempt": j.attempt}


def child(conn: Connection, role: str, url: str) -> None:
    """Q (``role == "q"``: the raw echo and the ``pay`` worker) or a ``slow`` host."""

    async def main() -> None:
        worker: BaseWorker = Pay("pay") if role == "q" else Slow("slow")
        async with WorkerRunner(role, bus=RedisBus(url)) as runner, anyio.create_task_group() as tg:
            await runner.add_worker(worker)
            if role == "q":
                tg.start_soon(raw_echo, url)
            conn.send("ready")
            await anyio.to_thread.run_sync(conn.recv, abandon_on_cancel=True)
            tg.cancel_scope.cancel()

    anyio.run(main)


async def raw_echo(url: str) -> None:
    client = raw_client(url)
    pubsub = client.pubsub()
    await subscribe(pubsub, PING)
    while True:
        item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
        if item is not None:
            await client.publish(PONG, item["data"])


def start(role: str, url: str) -> tuple[BaseProcess, Connection]:
    ctx = multiprocessing.get_context("spawn")
    mine, theirs = ctx.Pipe()
    process = ctx.Process(target=child, args=(theirs, role, url), daemon=True)
    process.start()
    if not mine.poll(60):
        raise RuntimeError(f"runner {role} did not start")
    mine.recv()
    return process, mine


async def described(runner: WorkerRunner, worker: str) -> None:
    """Wait until ``worker`` is registered with its description (which says what is
    durable: a request sent before it came would go the plain way)."""
    with anyio.fail_after(30):
        while True:
            data = runner.registry.get(worker)
            if data is not None and data.jobs:
                return
            await anyio.sleep(0.05)


async def round_trips(url: str, rounds: int, block: int) -> dict[str, list[float]]:
    client = raw_client(url)
    pubsub = client.pubsub()
    await subscribe(pubsub, PONG)

    async def floor_once() -> None:
        await client.publish(PING, b'{"n":0}')
        while (await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)) is None:
            pass

    medians: dict[str, list[float]] = {"floor": [], "plain": [], "durable": []}
    async with WorkerRunner("p", bus=RedisBus(url)) as runner:
        await described(runner, "pay")

        def job_once(name: str) -> Any:
            async def once() -> None:
                async with runner.job("pay", name=name, payload={"n": 0}):
                    pass

            return once

        kinds = {"floor": floor_once, "plain": job_once("plain"), "durable": job_once("durable")}
        for r in range(rounds + 1):
            for kind, once in kinds.items():
                samples: list[float] = []
                await timed_block(samples, block, once)
                if r:  # the first round warms up
                    medians[kind].append(statistics.median(samples))
    await pubsub.aclose()
    await client.aclose()
    return medians


async def recovery(url: str, victim: BaseProcess) -> tuple[float, int, int]:
    """Seconds from the SIGKILL to the last of the victim's jobs completing elsewhere; how
    many it had; how many jobs did not complete."""
    done: list[tuple[float, dict[str, Any] | None]] = []
    async with WorkerRunner("p2", bus=RedisBus(url)) as runner:
        await described(runner, "slow")
        await anyio.sleep(1.5)  # both hosts heard

        async def ask(i: int) -> None:
            async with runner.job("slow", payload={"i": i}, timeout=30) as ctx:
                pass
            done.append((time.monotonic(), ctx.response))

        async with anyio.create_task_group() as tg:
            for i in range(SLOW_JOBS):
                tg.start_soon(ask, i)
            await anyio.sleep(0.2)
            assert victim.pid is not None
            killed_at = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)
    rerun = [at for at, response in done if response and response.get("attempt") == 2]
    failed = SLOW_JOBS - sum(1 for _at, r in done if r and "runner" in r)
    return (max(rerun) - killed_at if rerun else float("nan")), len(rerun), failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    rounds, block = (3, 300) if args.quick else (5, 1000)
    with redis_server() as url:
        q, q_conn = start("q", url)
        medians = anyio.run(round_trips, url, rounds, block)
        q_conn.send("stop")
        q.join(10)
        s1, _s1_conn = start("s1", url)
        s2, s2_conn = start("s2", url)
        recovered, rerun, failed = anyio.run(recovery, url, s1)
        s2_conn.send("stop")
        s2.join(10)
        for process in (q, s1, s2):
            if process.is_alive():
                process.kill()
    floor, plain, durable = (statistics.median(medians[k]) for k in ("floor", "plain", "durable"))
    ratio = durable / plain
    print(f"redis-bus durable jobs ({rounds} rounds of {block} round trips each)")
    print(f"  floor (raw pub/sub ping-pong)  {floor * 1e6:8.1f} us")
    print(f"  plain job round trip           {plain * 1e6:8.1f} us  {plain / floor:.2f}x floor")
    print(f"  durable job round trip         {durable * 1e6:8.1f} us  {durable / floor:.2f}x floor")
    mark = "PASS" if ratio <= GOAL_DURABLE_RT else "MISS"
    print(f"  durable / plain                {ratio:8.2f}x    goal <= {GOAL_DURABLE_RT}x  {mark}")
    mark = "PASS" if recovered <= GOAL_RECOVERY_S and not failed else "MISS"
    print(
        f"  SIGKILLed runner: {rerun} durable job(s) completed on the replica "
        f"{recovered:.2f} s after the kill, {failed} not completed; "
        f"goal <= {GOAL_RECOVERY_S:g} s  {mark}"
    )


if __name__ == "__main__":
    main()
