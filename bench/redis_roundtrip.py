"""Round trip and throughput of jobs over the Redis bus, measured against a floor in one run.

With ``RedisBus`` every job between runners crosses two processes and a redis-server. This
script measures, through the public API only, how far a job round trip between two runner
processes is from the cheapest possible exchange through the same server with the same
client library, whether idle runners on the same Redis slow it down, and how many jobs per
second a driver gets from a few runner processes. It starts its own ``redis-server`` on a
free port of 127.0.0.1 (nothing on disk; never the one on 6379), runs every participant in
a process of its own (``multiprocessing``, spawn context) and prints the figures, the goals
with a PASS or MISS marker each, and the figure of pipecat-ai-subagents for scale:

- floor: median round trip of a raw redis-py pub/sub ping-pong between two processes:
  process P publishes a small payload on ``ping``; process Q, subscribed to it, publishes
  it back on ``pong``; P waits for it. Both use ``redis.asyncio`` (a client publishes, a
  ``pubsub`` on its own connection reads with ``get_message(timeout=None)``) and do
  nothing else. The clients are plain ``Redis.from_url(url)``, redis-py as a user writes
  it; ``--floor-client bus`` makes them as the bus makes its own instead (no socket
  timeout: redis-py then skips an ``asyncio.wait_for`` task per command), a lower floor
  that credits the bus's tuning to the floor;
- rt: median sequential ``async with runner.job("echo", payload={"n": i})`` round trip
  from a ``WorkerRunner`` on ``RedisBus(url)`` in P to an ``Echo`` worker (returns its
  payload) on a ``WorkerRunner`` on ``RedisBus(url)`` in Q; goal at most 1.2x the floor;
- rt signed: the same round trip between two more runners (one in P, one in Q, in a
  namespace of their own) whose buses share a secret (``RedisBus(url, secret=...)``), so
  every message is signed and verified; goal: signing adds at most 10% to rt (1.1x).
  It is measured against a control, the same again between two runners without a
  secret. Two pairs of runners that differ in nothing differ by a few percent in one
  run, and this machine's speed drifts as much from one second to the next: as much as
  the figure measured. So each round starts a new signed pair and a new control pair
  (which one starts first alternates), runs their round trips in turn, one on each,
  then ends them. Taking turns makes both round trips longer than rt (each finds less
  of its own in the CPU's caches), so the time signing adds (signed minus control,
  pooled over the rounds' pairs) is judged as a share of rt; the spread of the rounds'
  own ratios is printed too;
- rt with a crowd: the same while 4 more runner processes host 100 idle workers each
  (distinct names; every runner now hears 5 more heartbeats a second, each listing 100
  workers); goal at most 1.2x rt, judged with the machine's drift taken out (the crowd's
  rt over the floor of its own rounds, against rt over its floor);
- throughput: jobs per second completed by a driver (the runner in P) keeping 200 jobs in
  flight over 40 workers: 4 runner processes hosting 10 ``Echo`` workers each, every
  worker under a distinct name, the jobs spread round-robin. Distinct names are what a
  system of many runners mostly carries: each request goes straight to its host runner's
  channel, the same path as rt, so the figure is the capacity of that path under
  concurrency (a name hosted by several runners takes the replicas' stream path instead,
  XADD / XREADGROUP / XACK / XDEL: another figure). Goal at least 12,000 jobs/s on a
  2-CPU machine; it is printed against the sequential rate (1 / rt) for scale, with the
  CPU the driver, the 4 runners and the redis-server used meanwhile: on a machine with
  few CPUs they share them, which bounds this figure more than the bus does; and how many
  connections the redis-server has open after (a bus's connection pool grows with the
  sends it has in progress at once).

P and Q host both sides of both measurements: P a raw client and the requesting runner, Q a
raw echo task and the echo runner, each idle while the other one is measured. So floor and
rt are measured interleaved, in blocks, in the same two processes, and a drift of the
machine's speed moves both sides of a ratio alike. The crowd cannot be switched on and off
per block: the rounds run without it, then with it (floor blocks interleaved, printed to
show the drift), then without it again; rt pools the rounds without it. Each round trip is
timed on its own with ``time.perf_counter`` and the median is reported; the first round of
each phase is warm-up and discarded. For each kind of block the CPU time P, Q and the
redis-server spent is printed too, per round trip (``time.process_time`` in P and Q, INFO
CPU of the server): as the round trip is sequential, the CPU the bus adds in P and Q over
the floor is, nearly all of it, time added to the round trip. Every process and the
redis-server are ended when the run ends, also when it fails or is interrupted.

Run: ``python bench/redis_roundtrip.py`` (about 50 s on a 2-CPU machine), ``--quick``
(about 18 s), ``--profile`` (also one rt block under cProfile in P and Q, timed in CPU time:
the top functions by own time, and the bus's and the framework's by cumulative time; the
profiler multiplies the cost of Python code several times over), or ``tox -e bench``.
It needs ``redis-server`` on the PATH (Debian: ``apt-get install redis-server``) and
agent-plugin-redis installed. It is a benchmark, not a test: it always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import multiprocessing
import os
import platform
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import redis.asyncio as aioredis
from agent_plugin_redis._settings import connect
from agent_plugin_redis.bus import RedisBus
from anyio.abc import TaskStatus

from framework import BaseWorker, Job, JobError, JobStatus, WorkerRunner, job

PING, PONG = "ping", "pong"
RAW_PAYLOAD = b'{"n":0}'
CROWD_RUNNERS = 4
CROWD_WORKERS = 100
TP_RUNNERS = 4
TP_WORKERS = 10
TP_IN_FLIGHT = 200

# Goals.
GOAL_RT_FLOOR = 1.2
GOAL_CROWD_RT = 1.2
GOAL_THROUGHPUT = 12_000
"""Jobs per second, an absolute figure as the goal was set (4 runner processes, a driver
and the redis-server sharing a 2-CPU machine)."""
GOAL_SIGNED_RT = 1.1
BENCH_SECRET = "bench-secret-of-32-characters-00"

# pipecat-ai-subagents' Redis bus, same kind of machine, against the same floor.
REF_RT_US = 429.0
REF_FLOOR_US = 228.0


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``--quick`` shrinks every count."""

    rounds: int
    """Rounds per phase without the crowd (there are two) and with it (the first round of
    each phase is warm-up, discarded); a round is one floor block and one rt block, and
    without the crowd also a block of the signed and control pairs taking turns."""
    block: int
    """Round trips per block."""
    tp_jobs: int
    """Jobs per throughput run."""
    tp_runs: int
    """Throughput runs (plus one warm-up run of a fifth as many jobs)."""


NORMAL = Settings(rounds=7, block=2_000, tp_jobs=5_000, tp_runs=5)
QUICK = Settings(rounds=3, block=1_000, tp_jobs=2_000, tp_runs=1)


# ----------------------------------------------------------------------------- workers


class Echo(BaseWorker):
    """Answers every job with its payload (as agent-plugin-echo's ``Echo``)."""

    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return job.payload


# ----------------------------------------------------------------------------- redis-server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """In the redis-server child (Linux): get SIGTERM if this script dies unannounced."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A private ``redis-server`` on 127.0.0.1 and a free port; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="framework-bench-redis-") as directory:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        try:
            wait_for_pong(process, port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def wait_for_pong(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"redis-server on port {port} did not answer within 10 s")


FLOOR_CLIENT_ENV = "REDIS_BENCH_FLOOR_CLIENT"
"""How the floor's clients are made: "default" (``redis.asyncio.Redis.from_url(url)``, plain
redis-py as a user would write it: the issue's floor) or "bus" (the bus's own ``connect``,
no socket timeout and a blocking pool). Set by ``--floor-client``; an environment variable
so that the spawned children see it."""


def raw_client(url: str) -> aioredis.Redis:
    """A client for the floor (see ``FLOOR_CLIENT_ENV``)."""
    if os.environ.get(FLOOR_CLIENT_ENV, "default") == "bus":
        return connect(url)
    return aioredis.Redis.from_url(url)


# ----------------------------------------------------------------------------- child processes
#
# Every child runs ``child_main``: it answers the commands the main process sends on its
# pipe, one at a time, with ("ok", result) or ("error", traceback); "stop" (or the pipe
# closing) ends it.

Handler = Callable[..., Awaitable[Any]]


async def receive(conn: Connection) -> Any:
    """The next command from the main process; ("stop",) when the pipe closed."""

    def blocking() -> Any:
        try:
            return conn.recv()
        except (EOFError, OSError):
            return ("stop",)

    return await anyio.to_thread.run_sync(blocking, abandon_on_cancel=True)


async def serve_commands(conn: Connection, handlers: dict[str, Handler]) -> None:
    profiler = cProfile.Profile(time.process_time)

    async def profile_start() -> None:
        profiler.enable()

    async def profile_stop() -> str:
        profiler.disable()
        return top_functions(profiler)

    handlers = {"profile_start": profile_start, "profile_stop": profile_stop, **handlers}
    conn.send(("ok", None))  # ready
    while True:
        command, *args = await receive(conn)
        if command == "stop":
            return
        conn.send(("ok", await handlers[command](*args)))


def child_main(conn: Connection, role: str, *args: Any) -> None:
    """The entry point of every child process (spawned: it imports this module afresh)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process ends the children
    roles: dict[str, Handler] = {"host": host, "driver": driver}
    target = roles[role]
    try:
        anyio.run(target, conn, *args, backend="asyncio")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.send(("error", traceback.format_exc()))
        raise SystemExit(1) from None
    finally:
        conn.close()


async def host(conn: Connection, url: str, name: str, workers: list[str], raw_url: str) -> None:
    """A runner hosting ``Echo`` workers ``workers``; with ``raw_url``, also the raw echo
    side of the floor and the echo side of the signing rounds' pairs (process Q)."""
    async with contextlib.AsyncExitStack() as stack:
        runner = await stack.enter_async_context(WorkerRunner(name, bus=RedisBus(url)))
        for worker in workers:
            await runner.add_worker(Echo(worker))
        pairs = Pairs(name)

        async def open_pair(plain_url: str, signed_url: str, signed_first: bool) -> None:
            for one in await pairs.open(plain_url, signed_url, signed_first):
                await one.add_worker(Echo("echo"))

        async with anyio.create_task_group() as tg:
            if raw_url:
                await tg.start(raw_echo, raw_url)
            try:
                await serve_commands(
                    conn, {"cpu": cpu_time, "open_pair": open_pair, "close_pair": pairs.close}
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await pairs.close()
            tg.cancel_scope.cancel()


class Pairs:
    """One side of a signing round's two pairs: a runner on a plain bus (the control) and
    one on a signed bus, in namespaces of their own, open until ``close``. Both are
    entered and left in the task that serves the commands."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._stack: contextlib.AsyncExitStack | None = None
        self.control: WorkerRunner | None = None
        self.signed: WorkerRunner | None = None

    async def open(
        self, plain_url: str, signed_url: str, signed_first: bool
    ) -> tuple[WorkerRunner, WorkerRunner]:
        await self.close()
        self._stack = stack = contextlib.AsyncExitStack()
        control = WorkerRunner(f"{self._name}c", bus=RedisBus(plain_url))
        signed = WorkerRunner(f"{self._name}s", bus=RedisBus(signed_url, secret=BENCH_SECRET))
        for one in (signed, control) if signed_first else (control, signed):
            await stack.enter_async_context(one)
        self.control, self.signed = control, signed
        return control, signed

    async def close(self) -> None:
        stack, self._stack = self._stack, None
        self.control = self.signed = None
        if stack is not None:
            await stack.aclose()


async def cpu_time() -> float:
    return time.process_time()


async def server_cpu(client: aioredis.Redis) -> float:
    """CPU seconds the redis-server has used (user + system, from INFO)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def raw_echo(url: str, *, task_status: TaskStatus[None]) -> None:
    """The Q side of the floor: every message on ``ping`` goes back on ``pong``."""
    client = raw_client(url)
    pubsub = client.pubsub()
    try:
        await subscribe(pubsub, PING)
        task_status.started()
        while True:
            item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if item is not None:
                await client.publish(PONG, item["data"])
    finally:
        with anyio.CancelScope(shield=True):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()


async def subscribe(pubsub: Any, channel: str) -> None:
    """Subscribe and wait for the confirmation, so that nothing published after is missed."""
    await pubsub.subscribe(channel)
    with anyio.fail_after(10):
        while (await pubsub.get_message(timeout=1.0)) is None:
            pass


async def timed_block(samples: list[float], n: int, once: Callable[[], Awaitable[None]]) -> None:
    """Run ``once`` ``n`` times, appending each duration (seconds) to ``samples``."""
    clock = time.perf_counter
    append = samples.append
    for _ in range(n):
        t0 = clock()
        await once()
        append(clock() - t0)


async def driver(conn: Connection, url: str, raw_url: str) -> None:
    """Process P: the raw ping side of the floor, the requesting runner and the
    requesting side of the signing rounds' pairs."""
    client = raw_client(raw_url)
    pubsub = client.pubsub()
    await subscribe(pubsub, PONG)
    counter = iter(range(sys.maxsize))

    async def floor_once() -> None:
        await client.publish(PING, RAW_PAYLOAD)
        while (await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)) is None:
            pass

    try:
        pairs = Pairs("p")
        async with WorkerRunner("p", bus=RedisBus(url)) as runner:

            async def echo_once(one: WorkerRunner | None) -> None:
                assert one is not None
                async with one.job("echo", payload={"n": next(counter)}):
                    pass

            async def rt_once() -> None:
                await echo_once(runner)

            async def rt_control_once() -> None:
                await echo_once(pairs.control)

            async def rt_signed_once() -> None:
                await echo_once(pairs.signed)

            async def check_echo(one: WorkerRunner, n: int) -> None:
                """Wait until ``one`` knows the echo worker, then check one job to it."""
                with anyio.fail_after(30):
                    await one.registry.wait_ready("echo")
                async with one.job("echo", payload={"n": n}) as check:
                    pass
                if check.status is not JobStatus.COMPLETED or check.response != {"n": n}:
                    raise RuntimeError(
                        f"{one.name}: echo answered {check.status}: {check.response!r}"
                    )

            async def open_pair(plain_url: str, signed_url: str, signed_first: bool) -> None:
                for one in await pairs.open(plain_url, signed_url, signed_first):
                    await check_echo(one, -2)

            async def echo_ready() -> None:
                await check_echo(runner, -1)
                with anyio.fail_after(10):  # the floor's path works too
                    await floor_once()

            async def block(name: str, n: int) -> tuple[list[float], float, float]:
                """``n`` timed round trips of kind ``name``; also the CPU seconds this
                process and the redis-server spent meanwhile."""
                once = floor_once if name == "floor" else rt_once
                gc.collect()
                server0 = await server_cpu(client)
                cpu0 = time.process_time()
                samples: list[float] = []
                await timed_block(samples, n, once)
                cpu = time.process_time() - cpu0
                return samples, cpu, await server_cpu(client) - server0

            async def pair_block(
                n: int, signed_first: bool
            ) -> tuple[list[float], list[float], float, float]:
                """``n`` round trips on the control pair and ``n`` on the signed pair, one
                of each in turn (``signed_first``: the signed pair's first), so that both
                see the machine at the same moments: the samples of each, and the CPU
                seconds this process and the redis-server spent on all of them."""
                timed: list[tuple[Callable[[], Awaitable[None]], list[float]]] = [
                    (rt_control_once, []),
                    (rt_signed_once, []),
                ]
                clock = time.perf_counter
                gc.collect()
                server0 = await server_cpu(client)
                cpu0 = time.process_time()
                for _ in range(n):
                    for once, samples in timed[::-1] if signed_first else timed:
                        t0 = clock()
                        await once()
                        samples.append(clock() - t0)
                cpu = time.process_time() - cpu0
                return timed[0][1], timed[1][1], cpu, await server_cpu(client) - server0

            async def wait_workers(names: list[str], present: bool) -> None:
                with anyio.fail_after(60):
                    if present:
                        for name in names:
                            await runner.registry.wait_ready(name)
                    else:
                        while any(name in runner.registry for name in names):
                            await anyio.sleep(0.02)

            async def profile_rt(block: int) -> str:
                profiler = cProfile.Profile(time.process_time)
                profiler.enable()
                await timed_block([], block, rt_once)
                profiler.disable()
                return top_functions(profiler)

            async def throughput(
                workers: list[str], jobs: int, in_flight: int
            ) -> tuple[float, float, float, float]:
                """``jobs`` jobs, ``in_flight`` at a time, round-robin over ``workers``:
                seconds taken, CPU seconds of this process and of the redis-server, and
                the connections the redis-server has open after (pools keep theirs)."""
                todo = iter(range(jobs))
                failed: list[str] = []

                async def lane() -> None:
                    for i in todo:
                        payload = {"n": i}
                        try:
                            async with runner.job(workers[i % len(workers)], payload=payload) as j:
                                pass
                        except JobError as exc:
                            failed.append(str(exc))
                            continue
                        if j.response != payload:
                            failed.append(f"{j.status}: {j.response!r}")

                gc.collect()
                server0 = await server_cpu(client)
                cpu0 = time.process_time()
                t0 = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    for _ in range(in_flight):
                        tg.start_soon(lane)
                elapsed = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
                if failed:
                    raise RuntimeError(f"{len(failed)} of {jobs} jobs failed, e.g. {failed[0]}")
                clients = (await client.info("clients"))["connected_clients"]
                return elapsed, cpu, await server_cpu(client) - server0, float(clients)

            try:
                await serve_commands(
                    conn,
                    {
                        "echo_ready": echo_ready,
                        "block": block,
                        "pair_block": pair_block,
                        "wait_workers": wait_workers,
                        "profile_rt": profile_rt,
                        "throughput": throughput,
                        "open_pair": open_pair,
                        "close_pair": pairs.close,
                    },
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await pairs.close()
    finally:
        with anyio.CancelScope(shield=True):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()


def top_functions(profiler: cProfile.Profile, count: int = 20) -> str:
    """The top functions by own CPU time, then the bus's and the framework's by cumulative
    CPU time. The profilers count CPU time, not wall time: on a busy machine a wall clock
    charges the time the process was not running to whatever function it was in."""
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(count)
    stats.sort_stats("cumulative").print_stats(r"agent_plugin_redis|/framework/", count)
    return out.getvalue()


# ----------------------------------------------------------------------------- the main process


@dataclass
class Blocks:
    """The round trips of one kind, and the CPU seconds spent on them in each process."""

    samples: list[float] = field(default_factory=list)
    blocks: list[list[float]] = field(default_factory=list)
    """The samples again, block by block."""
    p_cpu: float = 0.0
    q_cpu: float = 0.0
    server_cpu: float = 0.0

    def add(self, samples: list[float], p_cpu: float, q_cpu: float, server_cpu: float) -> None:
        self.samples += samples
        self.blocks.append(samples)
        self.p_cpu += p_cpu
        self.q_cpu += q_cpu
        self.server_cpu += server_cpu

    def cpu_us(self) -> str:
        """CPU microseconds per round trip, by process."""
        n = len(self.samples) / 1e6
        return (
            f"P {self.p_cpu / n:,.0f} + Q {self.q_cpu / n:,.0f} + "
            f"redis-server {self.server_cpu / n:,.0f} us"
        )


@dataclass
class Throughput:
    """One throughput run."""

    jobs: int
    elapsed: float
    p_cpu: float
    server_cpu: float
    clients: float
    """Connections the redis-server had open at the end of the run."""
    hosts_cpu: float


class Child:
    """A child process and the main process's end of its command pipe."""

    def __init__(self, label: str, role: str, *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.label = label
        self.conn, theirs = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=child_main, args=(theirs, role, *args), name=label, daemon=True
        )
        self.process.start()
        theirs.close()

    def reply(self, timeout: float) -> Any:
        """The child's answer to its last command (or its ready message)."""
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.05):
            if not self.process.is_alive():
                raise RuntimeError(f"{self.label} exited with {self.process.exitcode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} did not answer within {timeout:g} s")
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.label} exited with {self.process.exitcode}") from None
        if status == "error":
            raise RuntimeError(f"{self.label} failed:\n{value}")
        return value

    def send(self, *command: Any) -> None:
        self.conn.send(command)

    def ask(self, *command: Any, timeout: float = 120) -> Any:
        self.send(*command)
        return self.reply(timeout)


def end_all(started: list[Child], timeout: float) -> None:
    """Ask every child to stop and give them ``timeout`` seconds together; then terminate
    (SIGTERM) those still running, and kill (SIGKILL) those still running 2 s later. A
    child busy with a command reads "stop" only after it: this bounds the wait."""
    for child in started:
        with contextlib.suppress(OSError, ValueError):
            child.send("stop")
    for signal_them, wait in ((None, timeout), ("terminate", 2.0), ("kill", 2.0)):
        deadline = time.monotonic() + wait
        for child in started:
            if signal_them and child.process.is_alive():
                getattr(child.process, signal_them)()
        for child in started:
            child.process.join(max(0.0, deadline - time.monotonic()))
        if not any(child.process.is_alive() for child in started):
            break
    for child in started:
        child.conn.close()


@contextlib.contextmanager
def children() -> Iterator[list[Child]]:
    """A list to put children in; every one of them is ended on the way out (within a few
    seconds, also after an error, when some may be busy)."""
    started: list[Child] = []
    try:
        yield started
    finally:
        end_all(started, 3.0)


def start_hosts(
    started: list[Child], url: str, prefix: str, runners: int, workers: int
) -> tuple[list[Child], list[str]]:
    """``runners`` host processes of ``workers`` distinct workers each, all ready."""
    hosts, names = [], []
    for r in range(runners):
        mine = [f"{prefix}{r}-w{i:03d}" for i in range(workers)]
        hosts.append(Child(f"{prefix}{r}", "host", url, f"{prefix}{r}", mine, ""))
        names += mine
    started += hosts
    for child in hosts:
        child.reply(60)
    return hosts, names


def end_hosts(started: list[Child], hosts: list[Child]) -> None:
    end_all(hosts, 10.0)
    for child in hosts:
        started.remove(child)


def measure(settings: Settings, url: str, profile: bool) -> dict[str, Any]:
    """Every figure, with the processes each needs; returns samples and profiles."""
    bus_url = f"{url}?namespace=bench{uuid.uuid4().hex[:8]}"
    results: dict[str, Any] = {}
    with children() as started:
        q = Child("Q", "host", bus_url, "q", ["echo"], url)
        started.append(q)
        p = Child("P", "driver", bus_url, url)
        started.append(p)
        q.reply(60)
        p.reply(60)
        p.ask("echo_ready")

        def rounds(rt_name: str, into: dict[str, Blocks], signed: bool = False) -> None:
            """Floor and rt blocks in turn (the first round is warm-up), with the CPU time
            P, Q and the redis-server spent on each; with ``signed``, each round also opens
            a new signed pair and control pair and runs a block on each."""
            for round_index in range(settings.rounds):
                for name, kind in [("floor", "floor"), (rt_name, "rt")]:
                    q_cpu = q.ask("cpu")
                    samples, p_cpu, server_cpu = p.ask("block", kind, settings.block)
                    q_cpu = q.ask("cpu") - q_cpu
                    if round_index:
                        into.setdefault(name, Blocks()).add(samples, p_cpu, q_cpu, server_cpu)
                if signed:  # the pairs exist only for their own block
                    tag = uuid.uuid4().hex[:8]
                    plain_url, signed_url = f"{url}?namespace=c{tag}", f"{url}?namespace=s{tag}"
                    signed_first = round_index % 2 == 1
                    q.ask("open_pair", plain_url, signed_url, signed_first)
                    p.ask("open_pair", plain_url, signed_url, signed_first)
                    q_cpu = q.ask("cpu")
                    controls, signeds, p_cpu, server_cpu = p.ask(
                        "pair_block", settings.block // 2, signed_first
                    )
                    q_cpu = q.ask("cpu") - q_cpu
                    p.ask("close_pair")
                    q.ask("close_pair")
                    if round_index:
                        into.setdefault("rt_control", Blocks()).add(controls, 0, 0, 0)
                        into.setdefault("rt_signed", Blocks()).add(signeds, 0, 0, 0)
                        both = into.setdefault("rt_pair", Blocks())
                        both.add(controls + signeds, p_cpu, q_cpu, server_cpu)

        solo: dict[str, Blocks] = {}
        rounds("rt", solo, signed=True)
        crowd, crowd_names = start_hosts(started, bus_url, "idle", CROWD_RUNNERS, CROWD_WORKERS)
        p.ask("wait_workers", crowd_names, True)
        with_crowd: dict[str, Blocks] = {}
        rounds("rt_crowd", with_crowd)
        end_hosts(started, crowd)
        p.ask("wait_workers", crowd_names, False)
        rounds("rt", solo, signed=True)
        results.update(solo)
        results["floor_crowd"] = with_crowd["floor"]
        results["rt_crowd"] = with_crowd["rt_crowd"]

        if profile:
            q.ask("profile_start")
            results["profile_p"] = p.ask("profile_rt", settings.block)
            results["profile_q"] = q.ask("profile_stop")

        tp_hosts, tp_names = start_hosts(started, bus_url, "tp", TP_RUNNERS, TP_WORKERS)
        p.ask("wait_workers", tp_names, True)
        p.ask("throughput", tp_names, max(settings.tp_jobs // 5, TP_IN_FLIGHT), TP_IN_FLIGHT)
        runs: list[Throughput] = []
        for _ in range(settings.tp_runs):
            hosts_cpu = sum(h.ask("cpu") for h in tp_hosts)
            elapsed, p_cpu, server_cpu, clients = p.ask(
                "throughput", tp_names, settings.tp_jobs, TP_IN_FLIGHT
            )
            hosts_cpu = sum(h.ask("cpu") for h in tp_hosts) - hosts_cpu
            runs.append(
                Throughput(settings.tp_jobs, elapsed, p_cpu, server_cpu, clients, hosts_cpu)
            )
        results["tp"] = runs
    return results


# ----------------------------------------------------------------------------- report


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def spread(samples: list[float], scale: float, unit: str) -> str:
    """p10..p90 and the sample count, for judging how stable a median is."""
    q = statistics.quantiles(samples, n=10)
    return f"p10 {q[0] * scale:,.1f} / p90 {q[-1] * scale:,.1f} {unit}, n={len(samples):,}"


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def row(label: str, value: str, ratio: str = "", goal: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else mark(ok)
    print(f"{label:<38} {value:>14}  {ratio:<17} {goal:<16} {verdict}".rstrip())


def detail(text: str) -> None:
    print(f"{'':<10}{text}")


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so the children and redis-server are ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--profile", action="store_true", help="also profile one rt block in P and Q (cProfile)"
    )
    parser.add_argument(
        "--floor-client",
        choices=("default", "bus"),
        default="default",
        help="the floor's redis-py clients: plain defaults (the issue's floor) or made as "
        "the bus makes its own (no socket timeout, which saves redis-py a task per command)",
    )
    args = parser.parse_args()
    os.environ[FLOOR_CLIENT_ENV] = args.floor_client
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = QUICK if args.quick else NORMAL
    started = time.perf_counter()
    print(
        f"agent-plugin-framework Redis bus: Python {platform.python_version()}, "
        f"redis-py {metadata.version('redis')}, anyio {metadata.version('anyio')} (asyncio), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{'quick' if args.quick else 'normal'} run, floor clients: {args.floor_client}"
    )
    with redis_server() as url:
        server = subprocess.run(
            [shutil.which("redis-server") or "/usr/bin/redis-server", "--version"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        version = next((w[2:] for w in server if w.startswith("v=")), "?")
        detail(f"private redis-server {version} at {url}; one process per participant")
        print()
        row("measure", "ours", "ratio", "goal", None)
        results = measure(settings, url, args.profile)
    us = 1e6

    floors, rts = results["floor"], results["rt"]
    floor, rt = median(floors.samples), median(rts.samples)
    row("floor: raw pub/sub ping-pong, 2 procs", f"{floor * us:,.1f} us")
    detail(spread(floors.samples, us, "us"))
    detail(f"CPU per round trip: {floors.cpu_us()}")
    ratio = rt / floor
    row(
        "rt: runner.job round trip, 2 procs",
        f"{rt * us:,.1f} us",
        f"{ratio:.2f}x floor",
        f"<= {GOAL_RT_FLOOR:g}x floor",
        ratio <= GOAL_RT_FLOOR,
    )
    detail(spread(rts.samples, us, "us"))
    detail(f"CPU per round trip: {rts.cpu_us()}")
    controls, signeds = results["rt_control"], results["rt_signed"]
    control, rt_signed = median(controls.samples), median(signeds.samples)
    # What signing adds, measured against the control (the pairs' turns cost both the
    # same), is judged as a share of rt, the round trip that is not taking turns.
    added = rt_signed - control
    ratio = 1 + added / rt
    row(
        "signing: what a bus secret adds to rt",
        f"{added * us:,.1f} us",
        f"{ratio:.2f}x rt",
        f"<= {GOAL_SIGNED_RT:g}x rt",
        ratio <= GOAL_SIGNED_RT,
    )
    per_round = sorted(
        1 + (median(s) - median(c)) / median(r)
        for s, c, r in zip(signeds.blocks, controls.blocks, rts.blocks, strict=True)
    )
    detail(
        f"signed pairs {rt_signed * us:,.1f} us, control pairs {control * us:,.1f} us, "
        f"taking turns (a new pair of each per round); the {len(per_round)} rounds' own "
        f"ratios {per_round[0]:.2f}x to {per_round[-1]:.2f}x"
    )
    detail(f"signed {spread(signeds.samples, us, 'us')}")
    detail(f"control {spread(controls.samples, us, 'us')}")
    detail(f"CPU per round trip, the two pairs' mean: {results['rt_pair'].cpu_us()}")
    crowds = results["rt_crowd"]
    crowd = median(crowds.samples)
    floor_crowd = median(results["floor_crowd"].samples)
    # The crowd's rounds run at another time than rt's: the machine may have sped up or
    # slowed down meanwhile. The floor, measured in both, shows by how much, so the goal
    # is judged on the crowd's rt against its own rounds' floor, relative to rt's.
    ratio = (crowd / floor_crowd) / (rt / floor)
    row(
        f"rt with {CROWD_RUNNERS} runners x {CROWD_WORKERS} idle",
        f"{crowd * us:,.1f} us",
        f"{ratio:.2f}x rt",
        f"<= {GOAL_CROWD_RT:g}x rt",
        ratio <= GOAL_CROWD_RT,
    )
    detail(spread(crowds.samples, us, "us"))
    detail(f"CPU per round trip: {crowds.cpu_us()}")
    detail(
        f"floor in the same rounds {floor_crowd * us:,.1f} us ({floor_crowd / floor:.2f}x "
        f"the floor without the crowd); rt {crowd / floor_crowd:.2f}x this floor; "
        f"{crowd / rt:.2f}x rt before the drift is taken out"
    )
    runs: list[Throughput] = results["tp"]
    rates = [run.jobs / run.elapsed for run in runs]
    rate = median(rates)
    row(
        f"throughput: {TP_RUNNERS} runners x {TP_WORKERS} workers",
        f"{rate:,.0f} jobs/s",
        f"{rate * rt:.1f}x 1/rt",
        f">= {GOAL_THROUGHPUT:,} jobs/s",
        rate >= GOAL_THROUGHPUT,
    )
    detail(
        f"{settings.tp_jobs:,} jobs, {TP_IN_FLIGHT} in flight, round-robin over "
        f"{TP_RUNNERS * TP_WORKERS} distinct workers; "
        f"min {min(rates):,.0f} / max {max(rates):,.0f} jobs/s, n={len(runs)} runs"
    )
    elapsed = sum(run.elapsed for run in runs)
    detail(
        f"CPU busy meanwhile (of one CPU): driver {sum(r.p_cpu for r in runs) / elapsed:.0%}, "
        f"the {TP_RUNNERS} runners {sum(r.hosts_cpu for r in runs) / elapsed:.0%}, "
        f"redis-server {sum(r.server_cpu for r in runs) / elapsed:.0%}; "
        f"{max(r.clients for r in runs):.0f} connections open to redis-server after"
    )

    print()
    print("for scale:")
    detail(
        f"pipecat-ai-subagents' Redis bus: {REF_RT_US / REF_FLOOR_US:.1f}x the same floor "
        f"({REF_RT_US:g} us against {REF_FLOOR_US:g} us); ours {rt / floor:.2f}x "
        f"({rt * us:,.0f} us against {floor * us:,.0f} us)"
    )
    if args.profile:
        for side in ("p", "q"):
            print()
            print(f"profile of process {side.upper()} during one rt block (own time):")
            print(results[f"profile_{side}"])
    print()
    print(f"measured in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
