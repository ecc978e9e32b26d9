"""Test workers for the tests across processes, as a plugin module: runner processes load it
with ``framework -p otel_workers run ...`` (``PYTHONPATH`` set to this folder).

- ``fan_out``: sends one job group to the workers named in ``payload["workers"]`` and
  answers with their responses (a member that fails fails the group, and the job);
- ``leaf``: answers with its runner's name, or fails with ``JobFailed`` when
  ``payload["fail"]`` is true.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework import BaseWorker, Job, JobFailed, hookimpl, job

if TYPE_CHECKING:
    from collections.abc import Callable


class FanOut(BaseWorker):
    @job
    async def fan_out(self, j: Job) -> dict[str, Any]:
        async with self.job_group(*j.payload["workers"], payload=j.payload) as group:
            pass
        return group.responses


class Leaf(BaseWorker):
    @job
    async def leaf(self, j: Job) -> dict[str, Any]:
        if j.payload.get("fail") == self.name:
            raise JobFailed(f"{self.name} was told to fail")
        return {"runner": self.runner.name}


@hookimpl
def register_workers(register: Callable[..., None]) -> None:
    register(FanOut, name="fan_out")
    register(Leaf, name="leaf")
