"""The liveness bookkeeping and the remote workers' descriptions, driven by hand (no network,
no clock: ``now`` is given)."""

from __future__ import annotations

from framework.bus.network.peers import (
    DESCRIPTION_BYTES,
    LIVENESS_MAX,
    MAX_PEERS,
    MAX_REMOTE_WORKERS,
    WAITING_RUNNERS,
    Peers,
)
from framework.bus.network.wire import Described, Heartbeat
from framework.types import JobDescription


def beat(
    runner: str,
    *workers: str,
    instance: str = "i1",
    interval: float = 1.0,
    misses: int = 3,
) -> Heartbeat:
    return Heartbeat(
        runner=runner, instance=instance, interval=interval, misses=misses, workers=list(workers)
    )


def test_first_heartbeat_adds_the_runner_and_its_workers() -> None:
    peers = Peers()
    change = peers.heard(beat("r1", "b", "a"), now=0.0)
    assert change.new_runner is True
    assert change.added == ["a", "b"]
    assert change.removed == []
    assert "r1" in peers and len(peers) == 1
    assert peers.names() == ["r1"]
    assert peers.workers_of("r1") == {"a", "b"}
    assert peers.hosts("a") == {"r1"}
    assert peers.instance_of("r1") == "i1"


def test_later_heartbeats_report_added_and_removed_workers() -> None:
    peers = Peers()
    peers.heard(beat("r1", "a", "b"), now=0.0)
    same = peers.heard(beat("r1", "a", "b"), now=1.0)
    assert (same.new_runner, same.added, same.removed) == (False, [], [])
    change = peers.heard(beat("r1", "b", "c"), now=2.0)
    assert change.new_runner is False
    assert change.added == ["c"]
    assert change.removed == ["a"]
    assert peers.hosts("a") == set()
    assert peers.hosts("c") == {"r1"}
    assert peers.workers_of("r1") == {"b", "c"}
    emptied = peers.heard(beat("r1"), now=3.0)
    assert emptied.removed == ["b", "c"]
    assert peers.hosts("b") == set() and "r1" in peers


def test_replicas_have_several_hosts() -> None:
    peers = Peers()
    peers.heard(beat("r1", "echo", "only-1"), now=0.0)
    peers.heard(beat("r2", "echo"), now=0.0)
    assert peers.hosts("echo") == {"r1", "r2"}
    assert peers.hosts("only-1") == {"r1"}
    assert peers.hosts("nobody") == set()
    peers.heard(beat("r1", "only-1"), now=1.0)  # r1 stops hosting echo
    assert peers.hosts("echo") == {"r2"}


def test_hosts_is_not_a_live_view_to_mutate() -> None:
    peers = Peers()
    peers.heard(beat("r1", "echo"), now=0.0)
    peers.workers_of("r1").add("intruder")
    assert peers.workers_of("r1") == {"echo"}


def test_lost_after_misses_times_interval() -> None:
    peers = Peers()
    peers.heard(beat("fast", "a", interval=0.2, misses=3), now=10.0)
    peers.heard(beat("slow", "b", interval=1.0, misses=2), now=10.0)
    assert peers.lost(now=10.6) == []  # exactly misses * interval: not yet
    assert peers.lost(now=10.61) == ["fast"]
    assert sorted(peers.lost(now=12.01)) == ["fast", "slow"]
    # A heartbeat in time keeps it alive; lost() does not remove anything by itself.
    peers.heard(beat("fast", "a", interval=0.2, misses=3), now=12.0)
    assert peers.lost(now=12.01) == ["slow"]
    assert "slow" in peers


def test_each_runner_is_judged_by_its_own_last_interval() -> None:
    peers = Peers()
    peers.heard(beat("r1", interval=0.1, misses=1), now=0.0)
    peers.heard(beat("r1", interval=5.0, misses=2), now=1.0)  # it slowed down
    assert peers.lost(now=10.9) == []
    assert peers.lost(now=11.1) == ["r1"]


def test_forget_returns_the_workers_and_drops_the_hosts() -> None:
    peers = Peers()
    peers.heard(beat("r1", "echo", "solo"), now=0.0)
    peers.heard(beat("r2", "echo"), now=0.0)
    assert peers.forget("r1") == {"echo", "solo"}
    assert "r1" not in peers
    assert peers.hosts("echo") == {"r2"}
    assert peers.hosts("solo") == set()
    assert peers.workers_of("r1") == set()
    assert peers.instance_of("r1") is None
    assert peers.forget("r1") == set()  # twice: nothing
    assert peers.forget("never-heard") == set()


def test_a_forgotten_runner_heard_again_is_new() -> None:
    peers = Peers()
    peers.heard(beat("r1", "echo", instance="old"), now=0.0)
    peers.forget("r1")
    change = peers.heard(beat("r1", "echo", instance="new"), now=1.0)
    assert change.new_runner is True
    assert change.added == ["echo"]
    assert peers.instance_of("r1") == "new"
    assert peers.hosts("echo") == {"r1"}


# --------------------------------------------------------------------------- descriptions


def describe(runner: str, worker: str, text: str, instance: str = "i1") -> Described:
    return Described(
        runner=runner,
        instance=instance,
        worker=worker,
        jobs=[JobDescription(description=text)],
    )


def test_a_description_before_the_heartbeat_is_kept_for_it() -> None:
    """A runner describes a worker just before the heartbeat that names it."""
    peers = Peers()
    assert peers.described(describe("r1", "echo", "echoes")) is False
    assert peers.jobs("r1", "echo") == ()  # not heard yet
    peers.heard(beat("r1", "echo"), now=0.0)
    assert peers.jobs("r1", "echo") == (JobDescription(description="echoes"),)


def test_a_description_after_the_heartbeat_says_the_registry_needs_it() -> None:
    peers = Peers()
    peers.heard(beat("r1", "echo"), now=0.0)
    assert peers.described(describe("r1", "echo", "echoes")) is True
    assert peers.jobs("r1", "echo") == (JobDescription(description="echoes"),)
    assert peers.described(describe("r1", "other", "x")) is False  # not hosted (yet)
    assert peers.jobs("r2", "echo") == ()


def test_a_heartbeat_keeps_the_descriptions_of_the_workers_it_names_only() -> None:
    peers = Peers()
    peers.described(describe("r1", "a", "A"))
    peers.described(describe("r1", "b", "B"))
    peers.heard(beat("r1", "a", "b"), now=0.0)
    peers.heard(beat("r1", "b"), now=1.0)  # a ended
    peers.heard(beat("r1", "a", "b"), now=2.0)  # a is back, not described again yet
    assert peers.jobs("r1", "a") == ()
    assert peers.jobs("r1", "b") == (JobDescription(description="B"),)


def test_descriptions_belong_to_one_session_of_a_runner() -> None:
    peers = Peers()
    peers.heard(beat("r1", "echo", instance="old"), now=0.0)
    peers.described(describe("r1", "echo", "old text", instance="old"))
    # The new session describes its worker before its first heartbeat, which makes the
    # old session forgotten: its descriptions go, the new one's stay.
    peers.described(describe("r1", "echo", "new text", instance="new"))
    assert peers.jobs("r1", "echo") == ()  # the heard session described nothing
    peers.forget("r1")
    peers.heard(beat("r1", "echo", instance="new"), now=1.0)
    assert peers.jobs("r1", "echo") == (JobDescription(description="new text"),)
    # A heartbeat of another session than the descriptions': they go.
    peers.forget("r1")
    peers.heard(beat("r1", "echo", instance="newer"), now=2.0)
    assert peers.jobs("r1", "echo") == ()


def test_forgetting_a_runner_drops_its_descriptions() -> None:
    peers = Peers()
    peers.heard(beat("r1", "echo"), now=0.0)
    peers.described(describe("r1", "echo", "text"))
    peers.forget("r1")
    peers.heard(beat("r1", "echo"), now=1.0)  # the same session heard again
    assert peers.jobs("r1", "echo") == ()


def test_descriptions_of_runners_not_heard_are_bounded() -> None:
    peers = Peers()
    for i in range(WAITING_RUNNERS + 10):
        peers.described(describe(f"ghost-{i}", "w", "x"))
    peers.heard(beat("ghost-0", "w"), now=0.0)  # among the oldest: gone
    assert peers.jobs("ghost-0", "w") == ()
    last = WAITING_RUNNERS + 9
    peers.heard(beat(f"ghost-{last}", "w"), now=0.0)
    assert peers.jobs(f"ghost-{last}", "w") == (JobDescription(description="x"),)


def test_the_table_holds_at_most_max_peers_runners() -> None:
    peers = Peers()
    for i in range(MAX_PEERS + 50):
        change = peers.heard(beat(f"r{i}", f"w{i}"), now=0.0)
        assert (change is None) == (i >= MAX_PEERS)
    assert len(peers) == MAX_PEERS
    assert peers.hosts(f"w{MAX_PEERS}") == set()
    peers.forget("r0")  # room for one more
    assert peers.heard(beat("late", "w"), now=1.0) is not None
    assert peers.heard(beat("later", "w"), now=1.0) is None


def test_remote_workers_over_the_bound_are_refused() -> None:
    peers = Peers()
    first = [f"a{i}" for i in range(MAX_REMOTE_WORKERS - 10)]
    assert peers.heard(beat("r1", *first), now=0.0).refused == 0  # type: ignore[union-attr]
    change = peers.heard(beat("r2", *[f"b{i}" for i in range(30)]), now=0.0)
    assert change is not None and change.refused == 20 and len(change.added) == 10
    again = peers.heard(beat("r2", *[f"b{i}" for i in range(30)]), now=1.0)
    assert again is not None and again.refused == 20 and again.added == []
    assert len(peers.workers_of("r2")) == 10
    peers.forget("r1")  # its workers free room
    third = peers.heard(beat("r2", *[f"b{i}" for i in range(30)]), now=2.0)
    assert third is not None and third.refused == 0 and len(third.added) == 20
    assert len(peers.workers_of("r2")) == 30


def test_a_claimed_interval_keeps_a_silent_runner_alive_for_liveness_max_at_most() -> None:
    peers = Peers()
    peers.heard(beat("phantom", "w", interval=3600, misses=1000), now=0.0)
    assert peers.lost(now=LIVENESS_MAX) == []
    assert peers.lost(now=LIVENESS_MAX + 0.01) == ["phantom"]


def test_descriptions_are_kept_within_a_byte_budget() -> None:
    peers = Peers()
    peers.heard(beat("r1", "a", "b", "c"), now=0.0)
    half = DESCRIPTION_BYTES // 2
    assert peers.described(describe("r1", "a", "A"), size=half) is True
    assert peers.described(describe("r1", "b", "B"), size=half) is True
    assert peers.described(describe("r1", "c", "C"), size=1) is False  # no room
    assert peers.jobs("r1", "c") == ()
    peers.heard(beat("r1", "b", "c"), now=1.0)  # "a" ended: its bytes are free again
    assert peers.described(describe("r1", "c", "C"), size=half) is True
    assert peers.jobs("r1", "c") == (JobDescription(description="C"),)
    peers.forget("r1")
    peers.heard(beat("r2", "x"), now=2.0)
    assert peers.described(describe("r2", "x", "X"), size=DESCRIPTION_BYTES) is True
