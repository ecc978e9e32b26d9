"""A requester process for the multi-process tests: a ``WorkerRunner`` on a ``RedisBus``,
hosting no worker, that sends jobs to workers in other processes and prints what comes
back as JSON lines on stdout (one object per line, flushed at once).

    python mp_driver.py URL group W1 W2 W3 [--payload JSON]
    python mp_driver.py URL slow WORKER --seconds S [--ready NAME...] [--gone NAME...]
    python mp_driver.py URL many WORKER --count N --concurrency C
    python mp_driver.py URL traffic WORKER --every SECONDS   (until "stop" on stdin)

Every mode first waits until its workers (and the ``--ready`` ones) are in the registry,
then ``--settle`` seconds (so every replica is heard), and prints ``{"event": "ready"}``.
Every job has a timeout (``--job-timeout``) and the whole run a deadline (``--deadline``),
so the driver ends even when the bus misbehaves. Times are ``time.monotonic()``, which on
Linux is one clock for every process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import anyio
import anyio.to_thread
from agent_plugin_redis.bus import RedisBus

from framework import JobError, JobGroupError, WorkerRunner


def emit(**fields: Any) -> None:
    print(json.dumps(fields, default=str), flush=True)


async def wait_ready(runner: WorkerRunner, args: argparse.Namespace) -> None:
    with anyio.fail_after(args.ready_timeout):
        for name in [*args.workers, *args.ready]:
            await runner.registry.wait_ready(name)
    await anyio.sleep(args.settle)
    emit(event="ready", remote_workers=runner.registry.remote_workers, at=time.monotonic())


async def one_job(
    runner: WorkerRunner, worker: str, payload: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Send one job and return its outcome (never raises for the job's own ending)."""
    sent = time.monotonic()
    job_id = ""
    try:
        async with runner.job(worker, payload=payload, timeout=timeout) as j:
            job_id = j.job_id
        status, response = str(j.status), j.response or {}
    except JobError as exc:
        job_id = exc.job_id or job_id
        status, response = str(exc.status), exc.response
    return {
        "job_id": job_id,
        "status": status,
        "response": response,
        "sent": sent,
        "done": time.monotonic(),
    }


async def group(runner: WorkerRunner, args: argparse.Namespace) -> None:
    await wait_ready(runner, args)
    payload = json.loads(args.payload)
    try:
        async with runner.job_group(*args.workers, payload=payload, timeout=args.job_timeout) as g:
            pass
        error = None
    except JobGroupError as exc:
        error = str(exc)
    emit(
        event="group",
        job_id=g.job_id,
        statuses={name: str(status) for name, status in g.statuses.items()},
        responses=g.responses,
        error=error,
    )


async def slow(runner: WorkerRunner, args: argparse.Namespace) -> None:
    worker = args.workers[0]
    await wait_ready(runner, args)
    payload = {"seconds": args.seconds}
    try:
        async with runner.job(worker, payload=payload, timeout=args.job_timeout) as j:
            emit(event="sent", job_id=j.job_id, at=time.monotonic())
        status, response = str(j.status), j.response
    except JobError as exc:
        status, response = str(exc.status), exc.response
    emit(
        event="response",
        status=status,
        response=response,
        remote_workers=runner.registry.remote_workers,
        at=time.monotonic(),
    )
    # The workers of a lost runner leave the registry right after its jobs end: poll for
    # the --gone ones.
    start = time.monotonic()
    with anyio.move_on_after(5):
        while any(name in runner.registry for name in args.gone):
            await anyio.sleep(0.01)
    emit(
        event="registry",
        remote_workers=runner.registry.remote_workers,
        after=time.monotonic() - start,
    )


async def many(runner: WorkerRunner, args: argparse.Namespace) -> None:
    worker = args.workers[0]
    await wait_ready(runner, args)
    base = json.loads(args.payload)
    results: list[dict[str, Any]] = []
    limiter = anyio.Semaphore(args.concurrency)
    start = time.monotonic()

    async def send(i: int) -> None:
        async with limiter:
            results.append(await one_job(runner, worker, {**base, "i": i}, args.job_timeout))

    async with anyio.create_task_group() as tg:
        for i in range(args.count):
            tg.start_soon(send, i)
    emit(event="many", seconds=time.monotonic() - start, results=results)


async def traffic(runner: WorkerRunner, args: argparse.Namespace) -> None:
    """Fire one job every ``--every`` seconds, each in its own task, until "stop" arrives
    on stdin; print each outcome as it comes; then wait for the jobs still open."""
    worker = args.workers[0]
    await wait_ready(runner, args)
    stop = anyio.Event()
    counts = {"sent": 0, "answered": 0}

    async def watch_stdin() -> None:
        await anyio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
        stop.set()

    async def send(i: int) -> None:
        result = await one_job(runner, worker, {"i": i}, args.job_timeout)
        counts["answered"] += 1
        emit(event="result", i=i, **result)

    async with anyio.create_task_group() as jobs:
        async with anyio.create_task_group() as watcher:
            watcher.start_soon(watch_stdin)
            i = 0
            while not stop.is_set():
                jobs.start_soon(send, i)
                counts["sent"] += 1
                i += 1
                with anyio.move_on_after(args.every):
                    await stop.wait()
            watcher.cancel_scope.cancel()
        emit(event="stopped", sent=counts["sent"], at=time.monotonic())
    emit(event="traffic", **counts)


MODES = {"group": group, "slow": slow, "many": many, "traffic": traffic}


async def main(args: argparse.Namespace) -> None:
    with anyio.fail_after(args.deadline):
        async with WorkerRunner(args.name, bus=RedisBus(args.url)) as runner:
            await MODES[args.mode](runner, args)
    emit(event="end")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mp_driver")
    parser.add_argument("url")
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("workers", nargs="+")
    parser.add_argument("--name", default="driver")
    parser.add_argument("--payload", default="{}")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ready", nargs="*", default=[])
    parser.add_argument("--gone", nargs="*", default=[])
    parser.add_argument("--settle", type=float, default=0.0)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--every", type=float, default=0.05)
    parser.add_argument("--job-timeout", type=float, default=30.0)
    parser.add_argument("--ready-timeout", type=float, default=15.0)
    parser.add_argument("--deadline", type=float, default=60.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(main, parse(sys.argv[1:]))
