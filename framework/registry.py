"""WorkerRegistry: which workers exist, where they run, and who waits for them.

Each runner keeps one registry. Local workers register when they become ready and leave
when they end; a network bus adds the workers other runners announce (``remote_workers``)
and removes a whole runner's workers when it goes silent (``remove_runner``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio

from framework.types import WorkerReadyData, WorkerRegistryEntry

logger = logging.getLogger("framework.registry")

WatchHandler = Callable[[WorkerReadyData], Awaitable[None]]
GoneListener = Callable[[str, str], None]
ReadyListener = Callable[[WorkerReadyData], None]
LeavingListener = Callable[[str], None]


class WorkerRegistry:
    """Names of the workers known to one runner, local and remote, with watchers."""

    def __init__(self, runner_name: str) -> None:
        self.runner_name = runner_name
        self._workers: dict[str, WorkerReadyData] = {}
        self._entries: dict[str, WorkerRegistryEntry] = {}
        self._watchers: dict[str, list[WatchHandler]] = {}
        self._ready_events: dict[str, anyio.Event] = {}
        self._gone_listeners: list[GoneListener] = []
        self._ready_listeners: list[ReadyListener] = []
        self._leaving_listeners: list[LeavingListener] = []

    @property
    def local_workers(self) -> list[str]:
        """Names of the ready workers hosted by this registry's runner."""
        return [n for n, d in self._workers.items() if d.runner == self.runner_name]

    @property
    def remote_workers(self) -> list[str]:
        """Names of the ready workers hosted by other runners (seen through a network bus)."""
        return [n for n, d in self._workers.items() if d.runner != self.runner_name]

    def get(self, name: str) -> WorkerReadyData | None:
        """The ready data of worker ``name``, or None when it is not (or no longer) ready."""
        return self._workers.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._workers

    def entry(self, name: str) -> WorkerRegistryEntry | None:
        """What is known about local worker ``name`` (parent, active, bridged, started_at)."""
        return self._entries.get(name)

    def set_entry(self, entry: WorkerRegistryEntry) -> None:
        """Record or replace the entry of a local worker (its runner keeps it current)."""
        self._entries[entry.name] = entry

    async def watch(self, name: str, handler: WatchHandler) -> None:
        """Call ``handler(data)`` each time worker ``name`` becomes ready.

        Fires at once (awaited here) when the worker is registered already. Handlers should
        be quick: registration waits for them. A handler that raises is logged and ignored.
        """
        self._watchers.setdefault(name, []).append(handler)
        data = self._workers.get(name)
        if data is not None:
            await self._call_watcher(handler, data)

    async def register(self, data: WorkerReadyData) -> bool:
        """Record a ready worker. True when it is new, False when already known.

        Wakes everyone waiting for it and calls its watchers (new workers only). A local
        worker takes the place of a remote one of the same name (a replica: jobs from this
        runner then stay in-process); that is not new to the watchers.
        """
        known = self._workers.get(data.worker_name)
        if known is not None:
            if data.runner == self.runner_name and known.runner != self.runner_name:
                self._workers[data.worker_name] = data
                self._tell_ready(data)
            return False
        self._workers[data.worker_name] = data
        self._tell_ready(data)
        event = self._ready_events.pop(data.worker_name, None)
        if event is not None:
            event.set()
        for handler in list(self._watchers.get(data.worker_name, ())):
            await self._call_watcher(handler, data)
        return True

    def replace(self, data: WorkerReadyData) -> None:
        """Record that a known worker is now reached through another runner (a replica took
        over from one that left), without telling watchers: for network buses."""
        if data.worker_name in self._workers:
            self._workers[data.worker_name] = data

    async def unregister(self, name: str, reason: str = "") -> bool:
        """Forget worker ``name``. True when it was known.

        Requesters still waiting on jobs at that worker are told (their jobs end ERROR
        unless the worker answered them first).
        """
        if self._workers.pop(name, None) is None:
            return False
        self._entries.pop(name, None)
        for listener in list(self._gone_listeners):
            listener(name, reason or f"worker {name!r} is gone")
        return True

    async def remove_runner(self, runner_name: str) -> list[str]:
        """Forget every worker hosted by ``runner_name`` (a runner that has gone away).

        Returns the names removed.
        """
        names = [n for n, d in self._workers.items() if d.runner == runner_name]
        for name in names:
            await self.unregister(name, f"runner {runner_name} lost")
        return names

    async def wait_ready(self, name: str) -> WorkerReadyData:
        """Wait until worker ``name`` is registered and return its data."""
        while True:
            data = self._workers.get(name)
            if data is not None:
                return data
            event = self._ready_events.get(name)
            if event is None:
                event = self._ready_events[name] = anyio.Event()
            await event.wait()

    def add_gone_listener(self, listener: GoneListener) -> None:
        """Call ``listener(name, reason)`` synchronously whenever a worker is unregistered."""
        self._gone_listeners.append(listener)

    def add_ready_listener(self, listener: ReadyListener) -> None:
        """Call ``listener(data)`` synchronously whenever a worker is registered (or a local
        worker takes a remote one's place); a network bus announces local workers so."""
        self._ready_listeners.append(listener)

    def add_leaving_listener(self, listener: LeavingListener) -> None:
        """Call ``listener(name)`` when a local worker starts ending: it takes no new jobs
        but still answers its running ones, and stays registered until it has."""
        self._leaving_listeners.append(listener)

    def leaving(self, name: str) -> None:
        """Called by a local worker that starts ending (see ``add_leaving_listener``)."""
        for listener in list(self._leaving_listeners):
            listener(name)

    def _tell_ready(self, data: WorkerReadyData) -> None:
        for listener in list(self._ready_listeners):
            listener(data)

    @staticmethod
    async def _call_watcher(handler: WatchHandler, data: WorkerReadyData) -> None:
        try:
            await handler(data)
        except Exception:
            logger.exception("watcher %r of worker %r raised; ignored", handler, data.worker_name)
