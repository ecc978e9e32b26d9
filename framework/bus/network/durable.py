"""``DurableStore``: what a network bus offers when it keeps durable jobs' requests, so that
``framework jobs`` can list them and retry or drop one.

A durable job (``@job(durable=True)``) is kept by the bus from its request until its
terminal response is written; one whose runs all ended with the runner lost moves to a
dead-letter list. A bus that keeps such jobs implements this protocol; the command checks
with ``isinstance`` and tells the user plainly when the bus keeps none (the in-process bus,
say).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Protocol, runtime_checkable

DurableState = Literal["pending", "dead"]


@dataclass(frozen=True, slots=True)
class DurableJob:
    """One durable job the bus keeps.

    Attributes:
        job_id: the job's id (what ``retry`` and ``drop`` take).
        worker: the worker it was sent to.
        name: the job's name (None for the default handler).
        state: ``"pending"`` (waiting, or running, until its response is written) or
            ``"dead"`` (every attempt was lost with its runner; on the dead-letter list).
        attempts: how many times it was handed to a runner so far (0 while it waits).
        error: why it is dead; "" while pending.
    """

    job_id: str
    worker: str
    name: str | None
    state: DurableState
    attempts: int
    error: str = ""

    def to_dict(self) -> dict[str, object]:
        """The record as ``framework jobs list --json`` prints it."""
        return asdict(self)


class DurableJobError(Exception):
    """``retry`` or ``drop`` could not act: no such job, or one in the wrong state. The text
    says which and what to do."""


@runtime_checkable
class DurableStore(Protocol):
    """The durable jobs a network bus keeps, read and changed from outside any runner.

    Each method works on a bus that was made from its URL but never started (``framework
    jobs`` makes one just for this): it opens its own connection and closes it before it
    returns. A connection failure raises ``ConnectionError``.
    """

    async def durable_jobs(self) -> list[DurableJob]:
        """Every durable job pending in a worker's queue or on the dead-letter list."""
        ...

    async def retry_durable_job(self, job_id: str) -> DurableJob:
        """Queue a dead job again for its worker (attempts start over); returns it as it
        was. Raises ``DurableJobError`` when no dead job has that id."""
        ...

    async def drop_durable_job(self, job_id: str) -> DurableJob:
        """Remove a job, pending or dead; a pending one's requester, if it still waits, is
        answered ERROR. Returns it as it was. Raises ``DurableJobError`` when no durable
        job has that id."""
        ...
