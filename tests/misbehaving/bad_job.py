"""Registers a worker whose job handler raises."""

from typing import Any

from framework import BaseWorker, Job, hookimpl, job


class Raiser(BaseWorker):
    @job
    async def divide(self, job: Job) -> dict[str, Any]:
        return {"result": 1 / 0}


@hookimpl
def register_workers(register: Any) -> None:
    register(Raiser, name="raiser")
