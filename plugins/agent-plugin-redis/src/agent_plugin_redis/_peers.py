"""Who else is on the bus: the other runners, when each was last heard, which workers each
hosts, and so which runners host a worker name (one, or several replicas).

Pure bookkeeping, no I/O: the bus feeds it heartbeats and byes and acts on what it returns,
which keeps the rules (when a runner is lost, when a name has no host left) in one place
that tests can drive without Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agent_plugin_redis._wire import Heartbeat


@dataclass(slots=True)
class Peer:
    """One other runner, as its last heartbeat described it."""

    name: str
    instance: str
    interval: float
    misses: int
    last_seen: float
    max_message_size: int = 1024 * 1024
    workers: set[str] = field(default_factory=set)

    def is_lost(self, now: float) -> bool:
        """Silent for more than ``misses`` of its own heartbeat intervals."""
        return now - self.last_seen > self.interval * self.misses


@dataclass(slots=True)
class HeartbeatChange:
    """What one heartbeat changed: whether the runner is new to us, which workers it added
    and removed since its last one."""

    new_runner: bool
    added: list[str]
    removed: list[str]


class Peers:
    """The other runners and the workers they host."""

    def __init__(self) -> None:
        self._peers: dict[str, Peer] = {}
        self._hosts: dict[str, set[str]] = {}

    def __contains__(self, runner: object) -> bool:
        return runner in self._peers

    def __len__(self) -> int:
        return len(self._peers)

    def names(self) -> list[str]:
        """The runners heard from and not lost."""
        return list(self._peers)

    def hosts(self, worker: str) -> set[str]:
        """The other runners hosting ``worker`` (empty when none)."""
        return self._hosts.get(worker, set())

    def workers_of(self, runner: str) -> set[str]:
        """The workers ``runner`` hosts (empty when unknown)."""
        peer = self._peers.get(runner)
        return set(peer.workers) if peer is not None else set()

    def instance_of(self, runner: str) -> str | None:
        """The instance id of ``runner`` as last heard (a restart brings a new one)."""
        peer = self._peers.get(runner)
        return peer.instance if peer is not None else None

    def heard(self, beat: Heartbeat, now: float | None = None) -> HeartbeatChange:
        """Record a heartbeat (``forget`` a restarted runner's old instance first)."""
        now = time.monotonic() if now is None else now
        peer = self._peers.get(beat.runner)
        new_runner = peer is None
        if peer is None:
            peer = self._peers[beat.runner] = Peer(
                beat.runner, beat.instance, beat.interval, beat.misses, now
            )
        peer.max_message_size = beat.max_message_size
        peer.interval = beat.interval
        peer.misses = beat.misses
        peer.last_seen = now
        workers = set(beat.workers)
        added = sorted(workers - peer.workers)
        removed = sorted(peer.workers - workers)
        peer.workers = workers
        for name in added:
            self._hosts.setdefault(name, set()).add(beat.runner)
        for name in removed:
            self._drop_host(name, beat.runner)
        return HeartbeatChange(new_runner, added, removed)

    def limit(self, runners: set[str] | list[str], own: int) -> int:
        """The biggest message all of ``runners`` (and this one, ``own``) will read."""
        limit = own
        for runner in runners:
            peer = self._peers.get(runner)
            if peer is not None and peer.max_message_size < limit:
                limit = peer.max_message_size
        return limit

    def forget(self, runner: str) -> set[str]:
        """Remove ``runner`` (lost or ended); returns the workers it hosted."""
        peer = self._peers.pop(runner, None)
        if peer is None:
            return set()
        for name in peer.workers:
            self._drop_host(name, runner)
        return peer.workers

    def lost(self, now: float | None = None) -> list[str]:
        """The runners silent for too long (not removed: call ``forget``)."""
        now = time.monotonic() if now is None else now
        return [name for name, peer in self._peers.items() if peer.is_lost(now)]

    def _drop_host(self, worker: str, runner: str) -> None:
        hosts = self._hosts.get(worker)
        if hosts is not None:
            hosts.discard(runner)
            if not hosts:
                del self._hosts[worker]
