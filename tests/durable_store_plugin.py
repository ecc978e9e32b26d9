"""A test plugin: a ``keep://`` bus that is the local bus plus a ``DurableStore`` held in
memory (two jobs: one pending, one dead), for ``framework jobs``'s own tests. The real
store, on Redis, is tested in the Redis plugin."""

from __future__ import annotations

from typing import Any

from framework import hookimpl
from framework.bus.local import LocalBus
from framework.bus.network.durable import DurableJob, DurableJobError


class KeepingBus(LocalBus):
    """``keep://`` (``keep://down`` cannot reach its store)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.down = url == "keep://down"
        self.jobs = {
            "j-pending": DurableJob("j-pending", "payments", "charge", "pending", 1),
            "j-dead": DurableJob("j-dead", "payments", None, "dead", 3, "runner r2 lost"),
        }

    async def durable_jobs(self) -> list[DurableJob]:
        if self.down:
            raise ConnectionError("cannot reach the store at keep://down")
        return list(self.jobs.values())

    async def retry_durable_job(self, job_id: str) -> DurableJob:
        found = self.jobs.get(job_id)
        if found is None or found.state != "dead":
            raise DurableJobError(f"no dead durable job {job_id!r}")
        return found

    async def drop_durable_job(self, job_id: str) -> DurableJob:
        found = self.jobs.get(job_id)
        if found is None:
            raise DurableJobError(f"no durable job {job_id!r}")
        return found


@hookimpl
def register_buses(register: Any) -> None:
    register("keep", KeepingBus)
