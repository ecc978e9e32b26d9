"""The HTTP service answers at once: nothing holds a response back on its way out."""

from __future__ import annotations

import socket
import statistics
import time

import anyio
import httpx
import pytest

from framework import WorkerRunner
from framework.http._service import HttpService, bind
from framework.http._settings import HttpConfig, resolve


def test_the_listening_socket_is_tcp() -> None:
    """asyncio sets TCP_NODELAY only on connections accepted from a socket made with its
    protocol named (IPPROTO_TCP)."""
    sock, _ = bind(resolve(HttpConfig(), "127.0.0.1:0"))
    with sock:
        assert sock.proto == socket.IPPROTO_TCP


@pytest.mark.anyio
async def test_round_trips_are_not_delayed_by_acknowledgements() -> None:
    """An answer goes out in two writes (headers, body): without TCP_NODELAY the second
    waits for the client's delayed acknowledgement, about 40 ms on Linux, per request."""
    settings = resolve(HttpConfig(), "127.0.0.1:0")
    sock, settings = bind(settings)
    service = HttpService(settings, sock, lambda: [])
    runner = WorkerRunner("latency")
    runner.add_plugin(service, name="http")
    with anyio.fail_after(30):
        async with runner:
            await service.serving.wait()
            async with httpx.AsyncClient(base_url=settings.url) as client:
                await client.get("/v1/health")  # connect
                took = []
                for _ in range(20):
                    started = time.perf_counter()
                    response = await client.get("/v1/health")
                    took.append(time.perf_counter() - started)
                    assert response.status_code == 200
    assert statistics.median(took) < 0.02
