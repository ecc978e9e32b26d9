"""``Routes``: the job requests a runner sent to workers in other runners, until each is
answered, and the ending of those that never will be.

Every network bus must end each request at its requester (see "what a network bus must
guarantee" in docs/distributed.md): when the runner that has a job is lost, when the link
breaks, when a message cannot be sent or read, the requester in this process gets one
``ERROR`` response, from the worker's address, and never a second one when the real
response comes late. ``Routes`` keeps that bookkeeping, so that a bus only says what
happened: a request left (``open``), its response came (``answered``), a runner or a
worker is gone (``fail_where``).

A job that ended after its request left ends with ``unknown_outcome``: it may have run, in
part or in full, or not at all, and the requester can tell that from an ``ERROR`` that is
known to have run nothing (``{"outcome": "unknown"}``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from framework.bus.base import UndeliverableError
from framework.bus.local import LocalBus
from framework.bus.messages import JobResponseMessage, unknown_outcome
from framework.types import JobStatus

RouteKey = tuple[str, str]
"""(job id, worker name): a job request to one worker (members of a group share the id)."""


@dataclass(slots=True)
class Route:
    """A job request this process sent to a remote worker, until its response arrives."""

    requester: str
    """The local address that waits for the response."""
    runner: str | None
    """The runner that has it (a direct send), or None while it waits in a queue that
    several runners read (a Redis stream, say) and nobody is known to have taken it."""
    entry: bytes | None = None
    """Where the transport queued it, for a bus that must delete it later (a stream
    entry's id)."""
    durable: bool = False
    """A durable job: a replica runs it again when the runner running it is lost, so it is
    not ended with its runner."""


class Routes:
    """The open job requests of one runner to remote workers (see the module docstring).

    Args:
        local: the bus's in-process bus, through which a local requester is answered.
    """

    def __init__(self, local: LocalBus) -> None:
        self._local = local
        self._open: dict[RouteKey, Route] = {}

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[tuple[RouteKey, Route]]:
        """(key, route) of every open request (a copy: ending them while iterating is
        allowed)."""
        return iter(list(self._open.items()))

    def open(self, key: RouteKey, route: Route) -> Route:
        """The request ``key`` left (or is about to): it stays open until answered or
        failed."""
        self._open[key] = route
        return route

    def get(self, key: RouteKey) -> Route | None:
        """The open request ``key``, or None."""
        return self._open.get(key)

    def answered(self, key: RouteKey) -> bool:
        """Its response arrived: close it. False when it was not open (a second response,
        or one for a job that ended already here): drop that response, so the requester
        gets exactly one."""
        return self._open.pop(key, None) is not None

    def fail(self, key: RouteKey, reason: str, *, unknown: bool = True) -> bool:
        """End the open request ``key`` ERROR at its requester; by default with an
        unknown outcome, since its request had left. False when it was not open."""
        route = self._open.pop(key, None)
        if route is None:
            return False
        self.end_here(route.requester, key[1], key[0], reason, unknown=unknown)
        return True

    def fail_where(self, reason: str, match: Callable[[RouteKey, Route], bool]) -> int:
        """End every open request that ``match(key, route)`` selects, with an unknown
        outcome; how many there were."""
        keys = [key for key, route in self._open.items() if match(key, route)]
        for key in keys:
            self.fail(key, reason)
        return len(keys)

    def fail_runner(self, runner: str, reason: str) -> int:
        """End every request that ``runner`` has (it is lost or ended); how many."""
        return self.fail_where(reason, lambda _key, route: route.runner == runner)

    def end_here(
        self, requester: str, worker: str, job_id: str, reason: str, *, unknown: bool = False
    ) -> None:
        """Give local ``requester`` an ERROR response for its job at ``worker``, whether or
        not a route is open (a request that could not even leave): with ``unknown``, one
        that says the job may or may not have run."""
        response = JobResponseMessage.build(
            source=worker,
            target=requester,
            job_id=job_id,
            status=JobStatus.ERROR,
            response=unknown_outcome(reason) if unknown else {"error": reason},
        )
        with contextlib.suppress(UndeliverableError):  # the requester ended meanwhile
            self._local.send_nowait(response)
