"""Test workers for the multi-process tests, as a plugin module.

Runner processes load it with ``framework -p mp_workers run ...`` (``PYTHONPATH`` set to
this folder): its ``register_workers`` registers

- ``mp_slow``: sleeps ``payload["seconds"]`` (default 0), then answers; it writes
  ``mp_slow: started job <id> on <runner>`` to stderr when a job starts, so a test knows
  the job is running before it kills the process;
- ``mp_whoami``: answers at once with the runner and worker that served the job, and the
  payload, so a test can tell which replica answered; with ``"log": true`` in the payload
  it also writes ``mp_whoami: served <job id>`` to stderr, so a test can count the jobs
  each process ran.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import anyio

from framework import BaseWorker, Job, hookimpl, job

if TYPE_CHECKING:
    from collections.abc import Callable


class Slow(BaseWorker):
    """Sleeps ``payload["seconds"]``, then answers with who served it."""

    @job
    async def slow(self, j: Job) -> dict[str, Any]:
        seconds = float(j.payload.get("seconds", 0))
        print(f"mp_slow: started job {j.job_id} on {self.runner.name}", file=sys.stderr, flush=True)
        await anyio.sleep(seconds)
        return {"runner": self.runner.name, "worker": self.name, "slept": seconds}


class WhoAmI(BaseWorker):
    """Answers at once: the runner and the worker that served the job, and its payload."""

    @job
    async def whoami(self, j: Job) -> dict[str, Any]:
        if j.payload.get("log"):
            print(f"mp_whoami: served {j.job_id}", file=sys.stderr, flush=True)
        return {"runner": self.runner.name, "worker": self.name, "payload": j.payload}


@hookimpl
def register_workers(register: Callable[..., None]) -> None:
    register(Slow, name="mp_slow")
    register(WhoAmI, name="mp_whoami")
