"""Who else is on the bus: the other runners, when each was last heard, which workers each
hosts, and so which runners host a worker name (one, or several replicas); and what each
of those workers answers (its description).

Pure bookkeeping, no I/O: the bus feeds it heartbeats, descriptions and byes and acts on
what it returns, which keeps the rules (when a runner is lost, when a name has no host
left, which description is current) in one place that tests can drive without Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agent_plugin_redis._wire import Described, Heartbeat
from framework.types import JobDescription

WAITING_RUNNERS = 64
"""Runners not heard yet whose descriptions are kept (a runner describes its workers just
before the heartbeat that names them); the oldest go first."""
DESCRIBED_PER_RUNNER = 100_000
"""Most worker descriptions kept for one runner (as many as a heartbeat may name)."""


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
class _Descriptions:
    """The workers one session of a runner has described."""

    instance: str
    jobs: dict[str, tuple[JobDescription, ...]] = field(default_factory=dict)


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
        self._described: dict[str, _Descriptions] = {}

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

    def jobs(self, runner: str, worker: str) -> tuple[JobDescription, ...]:
        """The description of ``worker`` on ``runner``, as its current session sent it;
        empty when none came (yet)."""
        peer = self._peers.get(runner)
        described = self._described.get(runner)
        if peer is None or described is None or described.instance != peer.instance:
            return ()
        return described.jobs.get(worker, ())

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
        self._keep_described(beat.runner, beat.instance, workers)
        return HeartbeatChange(new_runner, added, removed)

    def described(self, description: Described) -> bool:
        """Record a worker's description. True when its runner is heard and hosts the
        worker (the registry has it: update it there); False when it is kept for the
        heartbeat that will name the worker, or not kept (too many already)."""
        runner = description.runner
        described = self._described.get(runner)
        if described is None or described.instance != description.instance:
            if runner not in self._peers:
                self._make_room()
            described = self._described[runner] = _Descriptions(description.instance)
        jobs = described.jobs
        if description.worker not in jobs and len(jobs) >= DESCRIBED_PER_RUNNER:
            return False
        jobs[description.worker] = tuple(description.jobs)
        peer = self._peers.get(runner)
        return (
            peer is not None
            and peer.instance == description.instance
            and description.worker in peer.workers
        )

    def _keep_described(self, runner: str, instance: str, workers: set[str]) -> None:
        """A heartbeat names all its runner's workers: the descriptions of others (ended,
        or of an earlier session) go."""
        described = self._described.get(runner)
        if described is None:
            return
        if described.instance != instance:
            del self._described[runner]
        elif not workers.issuperset(described.jobs):
            described.jobs = {n: j for n, j in described.jobs.items() if n in workers}

    def _make_room(self) -> None:
        waiting = [name for name in self._described if name not in self._peers]
        for name in waiting[: max(0, len(waiting) - WAITING_RUNNERS + 1)]:
            del self._described[name]

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
        described = self._described.get(runner)
        if described is not None and described.instance == peer.instance:
            del self._described[runner]  # (a newer session's, sent before its heartbeat, stay)
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
