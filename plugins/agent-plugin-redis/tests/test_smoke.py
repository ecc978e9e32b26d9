"""A first job across two runners on a real redis-server."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_plugin_redis.bus import RedisBus
from framework import BaseWorker, Job, JobStatus, WorkerRunner, job

pytestmark = pytest.mark.anyio


class Echo(BaseWorker):
    @job
    async def echo(self, j: Job) -> dict[str, Any]:
        return j.payload


async def test_job_between_two_runners(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with (
            WorkerRunner("a", bus=RedisBus(redis_url)) as a,
            WorkerRunner("b", bus=RedisBus(redis_url)) as b,
        ):
            await b.add_worker(Echo("echo"))
            await a.registry.wait_ready("echo")
            assert a.registry.remote_workers == ["echo"]
            async with a.job("echo", payload={"text": "hi"}) as j:
                pass
            assert j.status is JobStatus.COMPLETED
            assert j.response == {"text": "hi"}
