"""HTTP API benchmark: the runner's endpoints against bare endpoints on the same server stack,
measured in one run.

``framework run`` serves its API with uvicorn and Starlette. This script measures what the
runner adds on top of that stack, with ratios against floors measured in the same run, so
that the figures do not depend on the machine's speed:

- floor: median round trip of ``POST /echo`` to a bare Starlette ``Route`` that reads the
  JSON body and answers a small dict with ``JSONResponse``;
- job: median round trip of ``POST /v1/jobs`` (wait for the response) to a worker answering
  a small dict; goal at most 1.5x the floor;
- SSE floor: events per second a client receives from a bare ``StreamingResponse`` yielding
  ``STREAM_EVENTS`` SSE messages shaped like the job's ``stream_data`` events;
- SSE job: ``stream_data`` events per second a client receives from ``POST /v1/jobs`` with
  ``Accept: text/event-stream`` to a worker streaming ``STREAM_EVENTS`` items; goal at least
  50% of the SSE floor;
- slow clients: ``SLOW_CLIENTS`` concurrent ``GET /v1/events`` clients that send their
  request and never read, while jobs run; goals: the runner process's resident memory grows
  by less than 100 MiB, and the job rate stays within 10% of the rate without them.

Both servers run in one subprocess (one event loop, one uvicorn configuration each, on two
ports); the client is one ``httpx.AsyncClient`` with keep-alive in this process, so that the
client's work does not count against the server's. The slow-clients figure uses a fresh
subprocess, so that its resident memory is the runner's own and the clients' sockets are
this process's. Figures compared with each other are measured interleaved, in blocks; the
first round is warm-up, discarded. The job rates with and without slow clients are
measured alternately too (without, with, without, with, ...), once with the system's
kernel buffers and once with small ones (see ``SMALL_SEND_BUFFER``).

Run: ``python bench/http_roundtrip.py`` (about 1 min on a 2-CPU machine), ``--quick``
(about 20 s), or ``tox -e bench``. It is a benchmark, not a test: it always exits 0 when it
ran.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import anyio
import httpx
import psutil

from framework import BaseWorker, Job, WorkerRunner, job

STREAM_EVENTS = 20_000
SLOW_CLIENTS = 1_000
SMALL_SEND_BUFFER = 4096
"""The server's kernel send buffer per connection in the "backed up" run. With the system's
(which grows to megabytes per connection on loopback), a client that never reads takes
thousands of events before its connection backs up: until then the runner writes every
event to it as to a reader. With a small one, the clients back up after a few events, and
the figures are those of the steady state (events dropped, not written)."""
SLOW_CLIENT_RCVBUF = 4096
"""Receive buffer of each slow client's socket: small, so that the server's writes to it
back up soon."""
ECHO = {"ok": True}
SSE_EVENT_MARKER = b"\nevent: stream_data\n"

# Goals.
GOAL_JOB_FLOOR = 1.5
GOAL_SSE_SHARE = 0.5
GOAL_SLOW_RSS_MIB = 100.0
GOAL_SLOW_RATE_LOSS = 0.10


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``--quick`` shrinks every count."""

    rounds: int
    """Interleaved blocks per measured quantity (the first is warm-up, discarded)."""
    rt_block: int
    """Round trips per block for the floor and the job."""
    stream_reps: int
    """Streams of STREAM_EVENTS per side and round."""
    slow_rounds: int
    """Alternations of the job rate without and with the slow clients."""
    slow_seconds: float
    """Seconds of sequential jobs per rate measurement."""


NORMAL = Settings(rounds=6, rt_block=400, stream_reps=2, slow_rounds=3, slow_seconds=4.0)
QUICK = Settings(rounds=3, rt_block=200, stream_reps=1, slow_rounds=2, slow_seconds=2.0)


# ----------------------------------------------------------------------------- the server


class Echo(BaseWorker):
    """Answers every job with a small dict."""

    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        return ECHO


class Streamer(BaseWorker):
    """Streams ``payload["n"]`` small dicts."""

    @job
    async def handle(self, job: Job) -> AsyncIterator[dict[str, int]]:
        for i in range(job.payload["n"]):
            yield {"i": i}


def bare_app() -> Any:
    """The floor: the same stack (Starlette on uvicorn) with endpoints that do nothing but
    read the request and answer."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        body = await request.json()
        return JSONResponse(
            {"job_id": "0", "worker": body["worker"], "status": "completed", "response": ECHO}
        )

    async def stream(request: Request) -> Response:
        body = await request.json()
        n = body["payload"]["n"]

        async def events() -> AsyncIterator[bytes]:
            yield b'event: job\ndata: {"job_id":"0"}\n\n'
            for i in range(n):
                yield f'id: {i + 1}\nevent: stream_data\ndata: {{"i":{i}}}\n\n'.encode()
            yield b'event: response\ndata: {"status":"completed"}\n\n'

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(
        routes=[Route("/echo", echo, methods=["POST"]), Route("/stream", stream, methods=["POST"])]
    )


def raise_fd_limit() -> None:
    """Room for SLOW_CLIENTS sockets (and a margin) in this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = SLOW_CLIENTS * 2 + 256
    if soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


async def serve_child(send_buffer: int) -> None:
    """In a fresh process: serve the runner's API and the bare app, print their URLs as
    one JSON line, and serve until stdin closes. ``send_buffer``: the kernel send buffer of
    each accepted connection (0: the system's, which grows to megabytes)."""
    import uvicorn

    from framework.http._service import HttpService, bind
    from framework.http._settings import HttpConfig, resolve

    raise_fd_limit()
    settings = resolve(HttpConfig(), "127.0.0.1:0")
    sock, settings = bind(settings)
    if send_buffer:  # accepted connections inherit it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    service = HttpService(settings, sock, lambda: [])
    runner = WorkerRunner("bench")
    await runner.add_worker(Echo("echo"))
    await runner.add_worker(Streamer("stream"))
    runner.add_plugin(service, name="http")

    bare_settings = resolve(HttpConfig(), "127.0.0.1:0")
    bare_sock, bare_settings = bind(bare_settings)
    config = uvicorn.Config(  # as the HTTP service configures it
        bare_app(), log_level="warning", access_log=False, lifespan="off", ws="none"
    )
    bare = uvicorn.Server(config)
    async with runner, anyio.create_task_group() as tg:
        tg.start_soon(lambda: bare.serve(sockets=[bare_sock]))
        with anyio.fail_after(10):
            await service.serving.wait()
            while not bare.started:
                await anyio.sleep(0.01)
        print(json.dumps({"api": settings.url, "bare": bare_settings.url}), flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)
        bare.should_exit = True


class Server:
    """The serving subprocess."""

    def __init__(self, send_buffer: int = 0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve-child", str(send_buffer)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the server exited {self.process.wait()}")
        urls = json.loads(line)
        self.api: str = urls["api"]
        self.bare: str = urls["bare"]
        self.ps = psutil.Process(self.process.pid)

    def rss_mib(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ----------------------------------------------------------------------------- helpers


async def timed_block(samples: list[float], n: int, once: Callable[[], Awaitable[None]]) -> None:
    clock = time.perf_counter
    for _ in range(n):
        t0 = clock()
        await once()
        samples.append(clock() - t0)


async def interleaved(
    rounds: int, blocks: dict[str, tuple[int, Callable[[], Awaitable[None]]]]
) -> dict[str, list[float]]:
    """Run each named block once per round, in turn; the first round is warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in blocks}
    for round_index in range(rounds):
        for name, (n, once) in blocks.items():
            gc.collect()
            await timed_block(samples[name] if round_index else [], n, once)
    return samples


def spread(samples: list[float], scale: float, unit: str) -> str:
    q = statistics.quantiles(samples, n=10)
    return f"p10 {q[0] * scale:,.1f} / p90 {q[-1] * scale:,.1f} {unit}, n={len(samples):,}"


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def row(label: str, value: str, ratio: str = "", goal: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else mark(ok)
    print(f"{label:<38} {value:>16}  {ratio:<17} {goal:<20} {verdict}".rstrip())


def detail(text: str) -> None:
    print(f"{'':<10}{text}")


# ----------------------------------------------------------------------------- measurements


async def measure_roundtrips(server: Server, settings: Settings) -> dict[str, list[float]]:
    """The bare endpoint's and the job's round trips, interleaved, one connection each."""
    job_body = {"worker": "echo", "payload": {"x": 1}}
    async with (
        httpx.AsyncClient(base_url=server.bare, timeout=30) as bare,
        httpx.AsyncClient(base_url=server.api, timeout=30) as api,
    ):
        check = await api.post("/v1/jobs", json=job_body)
        if check.status_code != 200 or check.json()["response"] != ECHO:
            raise RuntimeError(f"unexpected answer {check.status_code} {check.text}")

        async def floor_once() -> None:
            response = await bare.post("/echo", json=job_body)
            response.json()

        async def job_once() -> None:
            response = await api.post("/v1/jobs", json=job_body)
            response.json()

        n = settings.rt_block
        return await interleaved(settings.rounds, {"floor": (n, floor_once), "job": (n, job_once)})


async def count_events(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> int:
    """The ``stream_data`` events of one SSE response (counted in the raw bytes: the
    client's cost is the same for both sides, and small)."""
    tail = b""
    count = 0
    keep = len(SSE_EVENT_MARKER) - 1
    headers = {"Accept": "text/event-stream"}
    async with client.stream("POST", path, json=body, headers=headers) as response:
        async for chunk in response.aiter_raw():
            data = tail + chunk
            count += data.count(SSE_EVENT_MARKER)
            tail = data[-keep:]
    return count


async def measure_streams(server: Server, settings: Settings) -> dict[str, list[float]]:
    """Events per second from the bare SSE endpoint and from a streaming job, alternately."""
    body = {"worker": "stream", "payload": {"n": STREAM_EVENTS}}
    rates: dict[str, list[float]] = {"floor": [], "job": []}
    async with (
        httpx.AsyncClient(base_url=server.bare, timeout=60) as bare,
        httpx.AsyncClient(base_url=server.api, timeout=60) as api,
    ):
        for round_index in range(settings.rounds):
            for name, client, path in (("floor", bare, "/stream"), ("job", api, "/v1/jobs")):
                for _ in range(settings.stream_reps):
                    gc.collect()
                    t0 = time.perf_counter()
                    received = await count_events(client, path, body)
                    elapsed = time.perf_counter() - t0
                    if received != STREAM_EVENTS:
                        raise RuntimeError(f"{name}: {received} of {STREAM_EVENTS} events")
                    if round_index:
                        rates[name].append(received / elapsed)
    return rates


def open_slow_clients(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that each send ``GET /v1/events`` and never read."""
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    request = f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    clients = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_CLIENT_RCVBUF)
        sock.connect((host, port))
        sock.sendall(request)
        clients.append(sock)
    return clients


async def job_rate(client: httpx.AsyncClient, seconds: float) -> float:
    """Sequential jobs per second, over about ``seconds``."""
    body = {"worker": "echo", "payload": {"x": 1}}
    jobs = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        response = await client.post("/v1/jobs", json=body)
        if response.status_code != 200 or response.json()["status"] != "completed":
            raise RuntimeError(f"a job failed: {response.status_code} {response.text}")
        jobs += 1
    return jobs / elapsed


async def events_dropped(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("framework_events_dropped_total"):
            return float(line.split()[-1])
    raise RuntimeError("/metrics has no framework_events_dropped_total")


async def measure_slow_clients(settings: Settings, send_buffer: int) -> dict[str, Any]:
    """In a fresh server: the job rate without and with the slow clients, alternately, and
    the server's resident memory before them and at its highest while they are there."""
    raise_fd_limit()
    server = Server(send_buffer)
    try:
        async with httpx.AsyncClient(base_url=server.api, timeout=60) as api:
            await job_rate(api, 1.0)  # warm-up
            without: list[float] = []
            with_clients: list[float] = []
            rss_before: list[float] = []
            rss_peak = 0.0
            connected = 0
            dropped_before = await events_dropped(api)
            for _ in range(settings.slow_rounds):
                gc.collect()
                without.append(await job_rate(api, settings.slow_seconds))
                rss_before.append(server.rss_mib())
                clients = open_slow_clients(server.api, SLOW_CLIENTS)
                try:
                    await anyio.sleep(0.5)  # the server accepts them and starts their streams
                    connected = max(connected, _established(server.ps))
                    if send_buffer:  # jobs until every client is backed up, losing events
                        lost = await events_dropped(api)
                        with anyio.move_on_after(60):
                            while await events_dropped(api) - lost < SLOW_CLIENTS * 20:
                                await job_rate(api, 0.2)
                    with_clients.append(await job_rate(api, settings.slow_seconds))
                    rss_peak = max(rss_peak, server.rss_mib())
                finally:
                    for sock in clients:
                        sock.close()
                await anyio.sleep(0.5)  # the server notices they have gone
            dropped = await events_dropped(api) - dropped_before
            rss_after = server.rss_mib()
    finally:
        server.close()
    return {
        "without": without,
        "with": with_clients,
        "rss_before": min(rss_before),
        "rss_peak": rss_peak,
        "rss_after": rss_after,
        "connected": connected,
        "dropped": dropped,
    }


def _established(process: psutil.Process) -> int:
    return sum(1 for c in process.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)


# ----------------------------------------------------------------------------- report


async def measure_shared(
    settings: Settings,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    server = Server()
    try:
        rt = await measure_roundtrips(server, settings)
        streams = await measure_streams(server, settings)
    finally:
        server.close()
    return rt, streams


def report_slow(slow: dict[str, Any], label: str) -> None:
    rate_without = statistics.median(slow["without"])
    rate_with = statistics.median(slow["with"])
    row(f"jobs/s, no event clients ({label})", f"{rate_without:,.0f} /s")
    detail(", ".join(f"{r:,.0f}" for r in slow["without"]) + " jobs/s")
    loss = 1 - rate_with / rate_without
    row(
        f"jobs/s, {SLOW_CLIENTS:,} non-reading ({label})",
        f"{rate_with:,.0f} /s",
        f"{-loss:+.0%} vs without",
        f">= -{GOAL_SLOW_RATE_LOSS:.0%}",
        loss <= GOAL_SLOW_RATE_LOSS,
    )
    detail(", ".join(f"{r:,.0f}" for r in slow["with"]) + " jobs/s")
    growth = slow["rss_peak"] - slow["rss_before"]
    row(
        f"RSS growth ({label})",
        f"{growth:+.1f} MiB",
        "",
        f"< {GOAL_SLOW_RSS_MIB:g} MiB",
        growth < GOAL_SLOW_RSS_MIB,
    )
    detail(
        f"server subprocess: RSS {slow['rss_before']:.1f} MiB before the clients, "
        f"{slow['rss_peak']:.1f} at most with them, {slow['rss_after']:.1f} after; "
        f"{slow['connected']:,} connections established; "
        f"{slow['dropped']:,.0f} events dropped for slow clients"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about 20 s)")
    parser.add_argument("--serve-child", type=int, metavar="SNDBUF", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve_child is not None:
        anyio.run(serve_child, args.serve_child, backend="asyncio")
        return

    settings = QUICK if args.quick else NORMAL
    started = time.perf_counter()
    print(
        f"agent-plugin-framework HTTP API: Python {platform.python_version()}, "
        f"uvicorn {metadata.version('uvicorn')}, starlette {metadata.version('starlette')}, "
        f"httpx {metadata.version('httpx')}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'normal'} run"
    )
    print()
    row("measure", "ours", "ratio", "goal", None)
    us = 1e6

    rt, streams = anyio.run(measure_shared, settings, backend="asyncio")
    floor, job_rt = statistics.median(rt["floor"]), statistics.median(rt["job"])
    row("floor: bare POST /echo round trip", f"{floor * us:,.0f} us")
    detail(spread(rt["floor"], us, "us"))
    ratio = job_rt / floor
    row(
        "job: POST /v1/jobs round trip",
        f"{job_rt * us:,.0f} us",
        f"{ratio:.2f}x floor",
        f"<= {GOAL_JOB_FLOOR:g}x floor",
        ratio <= GOAL_JOB_FLOOR,
    )
    detail(spread(rt["job"], us, "us"))

    sse_floor, sse_job = statistics.median(streams["floor"]), statistics.median(streams["job"])
    row(f"SSE floor: bare, {STREAM_EVENTS:,} events", f"{sse_floor:,.0f} /s")
    detail(f"min {min(streams['floor']):,.0f} / max {max(streams['floor']):,.0f} events/s")
    share = sse_job / sse_floor
    row(
        "SSE job: stream_data events",
        f"{sse_job:,.0f} /s",
        f"{share:.0%} of floor",
        f">= {GOAL_SSE_SHARE:.0%} of floor",
        share >= GOAL_SSE_SHARE,
    )
    detail(f"min {min(streams['job']):,.0f} / max {max(streams['job']):,.0f} events/s")

    for send_buffer, label in ((0, "kernel's buffers"), (SMALL_SEND_BUFFER, "backed up")):
        slow = anyio.run(measure_slow_clients, settings, send_buffer, backend="asyncio")
        report_slow(slow, label)
    print()
    print(f"measured in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
