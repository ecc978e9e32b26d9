"""A plugin module for the command-line tests (``-p named_jobs_plugin``): ``calc``, a worker
with named jobs and no default handler, and ``quitter``, whose job is cancelled by its own
worker ending (a job cancelled by someone other than the requester); and the bus
``settling://``."""

from __future__ import annotations

from typing import Any

import anyio

from framework import BaseWorker, Job, hookimpl, job
from framework.bus.base import Inbox
from framework.bus.local import LocalBus
from framework.bus.messages import BusMessage


class Calc(BaseWorker):
    """Adds or multiplies ``a`` and ``b``; there is no default handler."""

    @job(name="add")
    async def add(self, job: Job) -> dict[str, Any]:
        return {"sum": job.payload.get("a", 0) + job.payload.get("b", 0)}

    @job(name="multiply")
    async def multiply(self, job: Job) -> dict[str, Any]:
        return {"product": job.payload.get("a", 1) * job.payload.get("b", 1)}


class Quitter(BaseWorker):
    """Cancels itself while its job runs."""

    @job
    async def quit(self, job: Job) -> dict[str, Any]:
        await self.cancel("the quitter quit")
        await anyio.sleep(30)
        return {}


class Steps(BaseWorker):
    """Sends ``{"done": i, "of": n}`` updates, ``pause`` seconds apart."""

    @job
    async def steps(self, job: Job) -> dict[str, Any]:
        n = int(job.payload.get("n", 8))
        for i in range(1, n + 1):
            await anyio.sleep(float(job.payload.get("pause", 0.15)))
            await job.update({"done": i, "of": n})
        return {"steps": n}


@hookimpl
def register_workers(register: Any) -> None:
    register(Calc, name="calc")
    register(Quitter, name="quitter")
    register(Steps, name="steps")


class SettlingBus:
    """An in-process bus that is not a ``LocalBus`` and says when its registry has settled
    (``wait_settled``), as a network bus that knows its peers does."""

    def __init__(self, url: str) -> None:
        self._local = LocalBus()

    async def start(self) -> None:
        await self._local.start()

    async def stop(self) -> None:
        await self._local.stop()

    def subscribe(self, address: str) -> Inbox:
        return self._local.subscribe(address)

    def unsubscribe(self, address: str) -> None:
        self._local.unsubscribe(address)

    async def send(self, message: BusMessage) -> None:
        await self._local.send(message)

    async def wait_settled(self) -> None:
        await anyio.sleep(0.2)


@hookimpl
def register_buses(register: Any) -> None:
    register("settling", SettlingBus)
