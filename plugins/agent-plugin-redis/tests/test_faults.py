"""Faults and hostile input found by probing the Redis bus with real runners and a real
redis-server: each test fails on the code before its fix."""

from __future__ import annotations

import json
import logging

import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis._wire import Heartbeat, encode
from test_bus import Echo, bus_of, eventually, namespace_of, plain_url, run_job, runners

from framework import JobStatus

pytestmark = pytest.mark.anyio


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


# --------------------------------------------------------------------------- log lines


async def test_control_characters_from_the_network_are_escaped_in_log_lines(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A newline in a JSON key of a request, or in a runner's or worker's name, would let
    whoever writes to Redis add lines of its own to every runner's log."""
    ns = namespace_of(redis_url)
    caplog.set_level(logging.INFO)
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            forged = "\nERROR framework: FORGED\x1b[2J"
            request = {
                "kind": "msg",
                "origin": "a",
                "message": {
                    "type": "job_request",
                    "source": "a",
                    "target": "echo",
                    "job_id": "j1",
                    "headers": {f"k{forged}": 1},
                },
            }
            await client.publish(f"{ns}:runner:b", json.dumps(request))
            await client.publish(
                f"{ns}:all",
                encode(
                    Heartbeat(
                        runner=f"ghost{forged}",
                        instance="i",
                        interval=0.05,
                        misses=1,
                        workers=[f"w{forged}"],
                    )
                ),
            )
            await eventually(lambda: bus_of(b).dropped_messages == 1, what="request dropped")
            await eventually(
                lambda: any("is gone" in line for line in _lines(caplog)), what="ghost lost"
            )
            assert (await run_job(a, "echo"))[0] is JobStatus.COMPLETED
    lines = _lines(caplog)
    assert any("k\\nERROR framework: FORGED\\x1b[2J" in line for line in lines), lines
    assert any("ghost\\nERROR" in line for line in lines), lines
    for line in lines:
        assert "\n" not in line and "\x1b" not in line, line
