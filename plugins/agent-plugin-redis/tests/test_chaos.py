"""The chaos test: four runner processes host one worker (``chaos_workers``) as replicas, a
requester in this process sends durable and plain jobs, and in turn one runner is
SIGKILLed, one is SIGSTOPped for 10 s, Redis restarts (append-only file on, so it comes
back with its streams), Redis drops one runner's connections (CLIENT KILL), and then
every client's, the requester's too. The execution log the workers write proves, for every
phase:

- every durable job completed exactly once (one ``applied`` line for its idempotency key,
  whatever its requester was told, and however many times it ran);
- every job, durable or plain, got exactly one terminal response at the requester
  (``on_request_completed`` counts them);

and afterwards Redis holds no stream entry, pending entry or dead-lettered job. The fault
matrix (fault, jobs sent, completed, errored, duplicated, runs again, time to recover: from
the fault to the last of the phase's durable jobs completing) is printed;
docs/distributed.md shows it.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis.bus import RedisBus
from conftest import RedisServer
from test_multiprocess import FRAMEWORK, Proc, Procs, wait_serving

from framework import JobError, JobStatus, WorkerRunner, hookimpl

pytestmark = pytest.mark.anyio

RUNNERS = ("r1", "r2", "r3", "r4")
PER_PHASE = 20
"""Durable jobs, and as many plain ones, sent in each phase."""
JOB_SECONDS = 0.8
STOPPED_FOR = 10.0
PLUGINS = ("-p", "redis", "-p", "chaos_workers")
"""The plugins a runner loads (autoload is off: nothing else installed gets in)."""


class Responses:
    """Counts the terminal responses the requester's runner applies, per job id."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    @hookimpl
    def on_request_completed(self, job_id: str, **_: Any) -> None:
        self.count[job_id] += 1


class ExecutionLog:
    """The workers' log (see ``chaos_workers``), read back."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line.split() for line in self.path.read_text().splitlines() if line]

    def applied(self) -> Counter[str]:
        return Counter(words[1] for words in self.lines() if words[0] == "applied")

    def applied_at(self, keys: set[str]) -> float:
        """When the last of ``keys`` was applied (``time.time()``)."""
        return max(float(w[-1]) for w in self.lines() if w[0] == "applied" and w[1] in keys)

    def runs(self, job_ids: set[str]) -> list[list[str]]:
        return [w for w in self.lines() if w[0] == "run" and w[2] in job_ids]


@pytest.fixture
def chaos_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that keeps its data in an append-only file, synced on every write, so
    that it comes back from a restart with its streams (a durable job is as durable as the
    Redis that keeps it)."""
    server = RedisServer(tmp_path / "redis", None, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    yield server
    server.stop()


def runner_process(procs: Procs, url: str, name: str) -> Proc:
    config = procs.config(name, [("chaos", "chaos")])
    return procs.start(
        f"runner {name}",
        [FRAMEWORK, *PLUGINS, "run", "--no-http", "--config", str(config), "--bus", url],
    )


async def test_faults_lose_no_durable_job_and_answer_every_job_once(
    chaos_redis: RedisServer, tmp_path: Path
) -> None:
    log = ExecutionLog(tmp_path / "execution.log")
    procs = Procs(tmp_path)
    procs.env["CHAOS_LOG"] = str(log.path)
    procs.env["FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    namespace = f"chaos{uuid.uuid4().hex[:8]}"
    url = f"{chaos_redis.url}?namespace={namespace}&heartbeat=0.5"
    responses = Responses()
    matrix: list[dict[str, Any]] = []
    try:
        runners = {name: runner_process(procs, url, name) for name in RUNNERS}
        await anyio.to_thread.run_sync(lambda: wait_serving(*runners.values()))
        alive = set(RUNNERS)
        with anyio.fail_after(150):
            async with WorkerRunner("requester", bus=RedisBus(url), plugins=[responses]) as me:
                bus = me.bus
                assert isinstance(bus, RedisBus)

                async def hosts_ready() -> None:
                    with anyio.fail_after(30):
                        while bus._peers.hosts("chaos") != alive or not bus._peers.jobs(
                            min(alive), "chaos"
                        ):
                            await anyio.sleep(0.05)

                async def phase(fault: str, inject: Callable[[str], Awaitable[None]]) -> None:
                    await hosts_ready()
                    results: dict[str, tuple[str, JobStatus | None]] = {}
                    keys: dict[str, str] = {}

                    async def ask(kind: str) -> None:
                        key = uuid.uuid4().hex
                        ctx = me.job(
                            "chaos",
                            name="effect" if kind == "durable" else "plain",
                            payload={"seconds": JOB_SECONDS},
                            headers={"idempotency-key": key},
                            timeout=60,
                        )
                        try:
                            async with ctx:
                                pass
                        except JobError:
                            pass
                        results[ctx.job_id] = (kind, ctx.status)
                        if kind == "durable":
                            keys[ctx.job_id] = key

                    before = len(log.lines())
                    async with anyio.create_task_group() as tg:
                        for _ in range(PER_PHASE):
                            tg.start_soon(ask, "durable")
                            tg.start_soon(ask, "plain")
                        await anyio.sleep(0.3)  # taken, running
                        busy = Counter(w[4] for w in log.lines()[before:] if w[0] == "run")
                        injected_at = time.time()
                        await inject(busy.most_common(1)[0][0] if busy else min(alive))
                    # Every durable job completes exactly once, whatever its requester saw.
                    durable_ids = {
                        job_id for job_id, (kind, _s) in results.items() if kind == "durable"
                    }
                    wanted = {keys[j] for j in durable_ids}
                    deadline = time.monotonic() + 30
                    while not wanted <= set(log.applied()):
                        assert time.monotonic() < deadline, f"{fault}: durable jobs not done"
                        await anyio.sleep(0.1)
                    applied = log.applied()
                    runs = log.runs(durable_ids)
                    statuses = Counter(status for _kind, status in results.values())
                    matrix.append(
                        {
                            "fault": fault,
                            "sent": len(results),
                            "completed": statuses[JobStatus.COMPLETED],
                            "errored": statuses[JobStatus.ERROR],
                            "errored durable": sum(
                                1
                                for kind, status in results.values()
                                if kind == "durable" and status is JobStatus.ERROR
                            ),
                            "other": len(results)
                            - statuses[JobStatus.COMPLETED]
                            - statuses[JobStatus.ERROR],
                            "duplicated": sum(applied[k] - 1 for k in wanted)
                            + sum(responses.count[j] - 1 for j in results),
                            "run again": len(runs) - len(durable_ids),
                            "recover": log.applied_at(wanted) - injected_at,
                        }
                    )
                    assert len(results) == 2 * PER_PHASE
                    assert all(applied[k] == 1 for k in wanted), (fault, applied)
                    assert all(responses.count[j] == 1 for j in results), (fault, responses.count)
                    assert matrix[-1]["other"] == 0, matrix[-1]

                async def sigkill(victim: str) -> None:
                    os.kill(runners[victim].pid, signal.SIGKILL)
                    alive.discard(victim)

                async def sigstop(victim: str) -> None:
                    os.kill(runners[victim].pid, signal.SIGSTOP)
                    await anyio.sleep(STOPPED_FOR)
                    os.kill(runners[victim].pid, signal.SIGCONT)

                async def restart(_victim: str) -> None:
                    await anyio.to_thread.run_sync(chaos_redis.stop)
                    await anyio.to_thread.run_sync(chaos_redis.start)

                async def client_kill(victim: str) -> None:
                    ports = {
                        c.laddr.port
                        for c in psutil.Process(runners[victim].pid).net_connections("tcp")
                        if c.raddr and c.raddr.port == chaos_redis.port
                    }
                    assert ports, f"no connection of {victim} to Redis found"
                    async with aioredis.Redis.from_url(chaos_redis.url) as admin:
                        for port in sorted(ports):
                            await admin.client_kill_filter(_id=None, addr=f"127.0.0.1:{port}")

                async def client_kill_all(_victim: str) -> None:
                    async with aioredis.Redis.from_url(chaos_redis.url) as admin:
                        await admin.client_kill_filter(_type="pubsub", skipme=True)
                        await admin.client_kill_filter(_type="normal", skipme=True)

                await phase("SIGKILL a runner", sigkill)
                await phase(f"SIGSTOP a runner for {STOPPED_FOR:g} s", sigstop)
                await phase("Redis restart", restart)
                await phase("CLIENT KILL of a runner's connections", client_kill)
                await phase("CLIENT KILL of every connection", client_kill_all)

                # Nothing is left in Redis: no entry in the worker's stream, none pending,
                # no dead-lettered job.
                async with aioredis.Redis.from_url(chaos_redis.url) as admin:
                    stream = f"{namespace}:worker:chaos"

                    async def leftovers() -> tuple[int, int, int]:
                        pending: Any = await admin.xpending(stream, "workers")
                        return (
                            int(await admin.xlen(stream)),
                            int(pending["pending"]),
                            int(await admin.hlen(f"{namespace}:dead")),
                        )

                    deadline = time.monotonic() + 15
                    while (found := await leftovers()) != (0, 0, 0):
                        assert time.monotonic() < deadline, f"left in Redis: {found}"
                        await anyio.sleep(0.2)
    finally:
        print(format_matrix(matrix))
        procs.close()
        print(procs.describe())


def format_matrix(matrix: list[dict[str, Any]]) -> str:
    rows = [
        "| fault | jobs sent | completed | errored (durable) | duplicated | run again "
        "| recovered in |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in matrix:
        rows.append(
            f"| {m['fault']} | {m['sent']} | {m['completed']} | {m['errored']} "
            f"({m['errored durable']}) | {m['duplicated']} | {m['run again']} "
            f"| {m['recover']:.1f} s |"
        )
    return "\n".join(rows)
