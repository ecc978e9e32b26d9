"""``NetworkBus``: what the runner needs from a bus that links runners in several processes,
beyond the ``Bus`` protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio

from framework.bus.base import Bus

if TYPE_CHECKING:
    from anyio.abc import TaskStatus

    from framework.runner import WorkerRunner


@runtime_checkable
class NetworkBus(Bus, Protocol):
    """A ``Bus`` that links runners: the runner attaches itself and runs its service.

    The runner calls ``attach`` once, before ``start``, and runs ``serve`` in its own task
    group after ``start``. A bus that has both methods is a network bus (the runner checks
    with ``isinstance``); the in-process bus has neither.

    Optionally, ``async def wait_settled(self) -> None`` returns once the bus has heard
    from every runner that was on it when it connected; ``framework run --job`` then fails
    fast for a worker nobody hosts. It is not part of the protocol, so that ``isinstance``
    does not require it.
    """

    def attach(self, runner: WorkerRunner) -> None:
        """Learn the runner's name and registry: ``registry.add_ready_listener``,
        ``add_gone_listener`` and ``add_leaving_listener`` say which local workers to
        announce, and ``runner.remote_worker_ready(data)`` and
        ``runner.remote_worker_gone(name, reason, failed=...)`` report other runners'."""

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the readers and heartbeats: call ``task_status.started()`` once connected,
        then run until ``stop`` or until cancelled."""
