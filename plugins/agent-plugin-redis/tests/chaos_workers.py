"""The chaos test's worker, as a plugin module (``framework -p chaos_workers run``).

``chaos`` has a durable handler (``effect``, 5 attempts) and a plain one (``plain``); both
sleep ``payload["seconds"]``. Every run appends a line to the execution log (the file
named by ``CHAOS_LOG``): ``run <kind> <job id> <attempt> <runner> <time>``, the time from
``time.time()``. A durable job's side effect is made idempotent with its
``idempotency-key`` header, as an application would: the first run to finish creates
``<CHAOS_LOG>.effects/<key>`` (exclusively) and logs ``applied <key> <job id> <attempt>
<runner> <time>``; a later run of the same job finds it and logs ``already <key> ...``.
So the log shows every run (at-least-once) and exactly one completion per durable job.
Lines are short single ``write`` calls on an ``O_APPEND`` file, so several processes can
share it.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import anyio

from framework import BaseWorker, Job, hookimpl, job

if TYPE_CHECKING:
    from collections.abc import Callable


def _log(line: str) -> None:
    fd = os.open(os.environ["CHAOS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line} {time.time():.3f}\n".encode())
    finally:
        os.close(fd)


class Chaos(BaseWorker):
    async def _run(self, kind: str, j: Job) -> dict[str, Any]:
        runner = self.runner.name
        _log(f"run {kind} {j.job_id} {j.attempt} {runner}")
        await anyio.sleep(float(j.payload.get("seconds", 0)))
        return {"runner": runner, "attempt": j.attempt}

    @job(name="effect", durable=True, max_attempts=5)
    async def effect(self, j: Job) -> dict[str, Any]:
        result = await self._run("durable", j)
        key = j.headers["idempotency-key"]
        effects = os.environ["CHAOS_LOG"] + ".effects"
        os.makedirs(effects, exist_ok=True)
        try:
            os.close(os.open(os.path.join(effects, key), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            _log(f"applied {key} {j.job_id} {j.attempt} {self.runner.name}")
        except FileExistsError:
            _log(f"already {key} {j.job_id} {j.attempt} {self.runner.name}")
        return result

    @job(name="plain")
    async def plain(self, j: Job) -> dict[str, Any]:
        return await self._run("plain", j)


@hookimpl
def register_workers(register: Callable[..., None]) -> None:
    register(Chaos, name="chaos")
