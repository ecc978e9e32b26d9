"""``GET /v1/events`` clients that never read cost the runner neither its jobs' speed nor
unbounded memory: once a client's connection is backed up, its events are dropped
(counted in ``framework_events_dropped_total``) instead of queued."""

from __future__ import annotations

import socket
import time
from typing import Any

import anyio
import httpx
import psutil
import pytest

from framework import BaseWorker, Job, WorkerRunner, job
from framework.http._service import HttpService, bind
from framework.http._settings import HttpConfig, resolve

CLIENTS = 200
SEND_BUFFER = 4096
"""The server's kernel send buffer per connection, kept small (accepted sockets inherit it
from the listening one) so that a client that never reads backs up after a few events
instead of after megabytes: what is tested is the service's own bound, not the kernel's."""
MEMORY_MIB = 40
"""Memory the process may gain with the clients connected: their connections' buffers
(uvicorn stops taking a stream's writes past its high-water mark); the events are kept
once, in the hub's ring, whatever the number of clients."""
RATE_SHARE = 0.5
"""Share of the job rate without clients that the backed-up clients must leave (loose:
the machine running the tests is shared)."""


class Echo(BaseWorker):
    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        return {"ok": True}


def open_clients(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` connections that send ``GET /v1/events`` and never read."""
    request = f"GET /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    clients = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, port))
        sock.sendall(request)
        clients.append(sock)
    return clients


async def job_rate(client: httpx.AsyncClient, jobs: int) -> float:
    started = time.perf_counter()
    for _ in range(jobs):
        response = await client.post("/v1/jobs", json={"worker": "echo"})
        assert response.json()["status"] == "completed"
    return jobs / (time.perf_counter() - started)


async def dropped(client: httpx.AsyncClient) -> float:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith("framework_events_dropped_total "):
            return float(line.split()[1])
    raise AssertionError("/metrics has no framework_events_dropped_total")


def rss_mib() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


@pytest.mark.anyio
async def test_clients_that_never_read_lose_events_not_the_runners_time() -> None:
    settings = resolve(HttpConfig(), "127.0.0.1:0")
    sock, settings = bind(settings)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    service = HttpService(settings, sock, lambda: [])
    runner = WorkerRunner("slow-clients")
    await runner.add_worker(Echo("echo"))
    runner.add_plugin(service, name="http")
    clients: list[socket.socket] = []
    with anyio.fail_after(60):
        async with runner, httpx.AsyncClient(base_url=settings.url, timeout=10) as api:
            await service.serving.wait()
            await job_rate(api, 50)  # warm-up
            alone = await job_rate(api, 200)
            memory_before = rss_mib()
            try:
                clients = await anyio.to_thread.run_sync(
                    open_clients, settings.host, settings.port, CLIENTS
                )
                # Jobs run until every client is backed up and losing events.
                lost_before = await dropped(api)
                while await dropped(api) - lost_before < CLIENTS * 20:
                    await job_rate(api, 20)
                crowded = await job_rate(api, 200)
                grown = rss_mib() - memory_before
                assert await dropped(api) > lost_before + CLIENTS * 20
            finally:
                for client in clients:
                    client.close()
    assert grown < MEMORY_MIB, f"the process grew by {grown:.1f} MiB"
    assert crowded > alone * RATE_SHARE, f"{crowded:.0f} jobs/s with them, {alone:.0f} alone"
