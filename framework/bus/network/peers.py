"""Who else is on the bus: the other runners, when each was last heard, which workers each
hosts, and so which runners host a worker name (one, or several replicas); and what each
of those workers answers (its description).

Pure bookkeeping, no I/O: the bus feeds it heartbeats, descriptions and byes and acts on
what it returns, which keeps the rules (when a runner is lost, when a name has no host
left, which description is current) in one place that tests can drive without a network.
The table is bounded (``MAX_PEERS``, ``MAX_REMOTE_WORKERS``, ``DESCRIPTION_BYTES``), so
heartbeats under ever new names cannot grow a runner's memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from framework.bus.network.wire import Described, Heartbeat
from framework.types import JobDescription

LIVENESS_MAX = 60.0
"""Seconds of silence after which a runner is lost, whatever interval its heartbeats
claim: a heartbeat cannot keep a runner that stopped sending them alive for longer. A
bus's heartbeat interval times its misses must stay within it."""

MAX_PEERS = 1000
"""Most other runners tracked at once: a heartbeat from one more is ignored until one of
them is lost or ends, so forged heartbeats under ever new names cannot grow the table."""
MAX_REMOTE_WORKERS = 10_000
"""Most (runner, worker) pairs tracked over all other runners: what a heartbeat names
beyond that is not registered."""
WAITING_RUNNERS = 64
"""Runners not heard yet whose descriptions are kept (a runner describes its workers just
before the heartbeat that names them); the oldest go first."""
DESCRIBED_PER_RUNNER = MAX_REMOTE_WORKERS
"""Most worker descriptions kept for one runner."""
DESCRIPTION_BYTES = 64 * 1024 * 1024
"""Most bytes of descriptions (as received) kept over all runners: a description that does
not fit is not kept, and its worker is registered as answering no jobs."""


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
        """Silent for more than ``misses`` of its own heartbeat intervals, or for more than
        ``LIVENESS_MAX`` seconds, whatever interval it claims."""
        return now - self.last_seen > min(self.interval * self.misses, LIVENESS_MAX)


@dataclass(slots=True)
class _Descriptions:
    """The workers one session of a runner has described."""

    instance: str
    jobs: dict[str, tuple[JobDescription, ...]] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    """Bytes each description took as received (the budget counts them)."""


@dataclass(slots=True)
class HeartbeatChange:
    """What one heartbeat changed: whether the runner is new to us, which workers it added
    and removed since its last one."""

    new_runner: bool
    added: list[str]
    removed: list[str]
    refused: int = 0
    """Workers it named that were not taken: over ``MAX_REMOTE_WORKERS``."""


class Peers:
    """The other runners and the workers they host."""

    def __init__(self) -> None:
        self._peers: dict[str, Peer] = {}
        self._hosts: dict[str, set[str]] = {}
        self._described: dict[str, _Descriptions] = {}
        self._worker_count = 0
        """(runner, worker) pairs over all peers: at most ``MAX_REMOTE_WORKERS``."""
        self._described_bytes = 0
        """Bytes of the descriptions kept: at most ``DESCRIPTION_BYTES``."""

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

    def heard(self, beat: Heartbeat, now: float | None = None) -> HeartbeatChange | None:
        """Record a heartbeat (``forget`` a restarted runner's old instance first). None when
        it comes from a runner not tracked yet and ``MAX_PEERS`` are tracked already: it is
        ignored. Workers beyond ``MAX_REMOTE_WORKERS`` are not taken (``refused``)."""
        now = time.monotonic() if now is None else now
        peer = self._peers.get(beat.runner)
        new_runner = peer is None
        if peer is None:
            if len(self._peers) >= MAX_PEERS:
                return None
            peer = self._peers[beat.runner] = Peer(
                beat.runner, beat.instance, beat.interval, beat.misses, now
            )
        peer.max_message_size = beat.max_message_size
        peer.interval = beat.interval
        peer.misses = beat.misses
        peer.last_seen = now
        workers = set(beat.workers)
        removed = sorted(peer.workers - workers)
        added = sorted(workers - peer.workers)
        room = MAX_REMOTE_WORKERS - (self._worker_count - len(removed))
        refused = max(0, len(added) - room)
        if refused:
            added = added[: len(added) - refused]
            workers = (peer.workers & workers) | set(added)
        self._worker_count += len(added) - len(removed)
        peer.workers = workers
        for name in added:
            self._hosts.setdefault(name, set()).add(beat.runner)
        for name in removed:
            self._drop_host(name, beat.runner)
        self._keep_described(beat.runner, beat.instance, workers)
        return HeartbeatChange(new_runner, added, removed, refused)

    def described(self, description: Described, size: int = 0) -> bool:
        """Record a worker's description (``size``: its bytes as received). True when its
        runner is heard and hosts the worker (the registry has it: update it there); False
        when it is kept for the heartbeat that will name the worker, or not kept (too many
        or too big already)."""
        runner = description.runner
        described = self._described.get(runner)
        if described is None or described.instance != description.instance:
            if runner not in self._peers:
                self._make_room()
            if described is not None:
                self._drop_described(runner)
            described = self._described[runner] = _Descriptions(description.instance)
        jobs = described.jobs
        worker = description.worker
        if worker not in jobs and len(jobs) >= DESCRIBED_PER_RUNNER:
            return False
        if self._described_bytes - described.sizes.get(worker, 0) + size > DESCRIPTION_BYTES:
            return False
        self._described_bytes += size - described.sizes.get(worker, 0)
        described.sizes[worker] = size
        jobs[worker] = tuple(description.jobs)
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
            self._drop_described(runner)
        elif not workers.issuperset(described.jobs):
            for name in [n for n in described.jobs if n not in workers]:
                del described.jobs[name]
                self._described_bytes -= described.sizes.pop(name, 0)

    def _drop_described(self, runner: str) -> None:
        described = self._described.pop(runner, None)
        if described is not None:
            self._described_bytes -= sum(described.sizes.values())

    def _make_room(self) -> None:
        waiting = [name for name in self._described if name not in self._peers]
        for name in waiting[: max(0, len(waiting) - WAITING_RUNNERS + 1)]:
            self._drop_described(name)

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
            self._drop_described(runner)  # (a newer session's, sent before its heartbeat, stay)
        for name in peer.workers:
            self._drop_host(name, runner)
        self._worker_count -= len(peer.workers)
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
