"""WorkerRegistry: registration, lookups, local and remote workers, watchers, removal."""

from __future__ import annotations

import logging

import anyio
import pytest

from framework import WorkerReadyData, WorkerRegistry


def ready(name: str, runner: str = "here") -> WorkerReadyData:
    return WorkerReadyData(worker_name=name, runner=runner)


@pytest.mark.anyio
async def test_register_returns_true_when_new_and_false_when_known() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        assert registry.runner_name == "here"
        assert await registry.register(ready("a")) is True
        assert await registry.register(ready("a")) is False
        assert await registry.register(ready("a", runner="elsewhere")) is False
        # The first registration stands.
        assert registry.get("a") == ready("a")


@pytest.mark.anyio
async def test_get_and_contains() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        assert registry.get("a") is None
        assert "a" not in registry
        data = ready("a")
        await registry.register(data)
        assert registry.get("a") == data
        assert "a" in registry
        assert "b" not in registry
        assert registry.get("b") is None


@pytest.mark.anyio
async def test_local_and_remote_workers() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        assert registry.local_workers == []
        assert registry.remote_workers == []
        await registry.register(ready("l1"))
        await registry.register(ready("r1", runner="there"))
        await registry.register(ready("l2"))
        await registry.register(ready("r2", runner="yonder"))
        assert sorted(registry.local_workers) == ["l1", "l2"]
        assert sorted(registry.remote_workers) == ["r1", "r2"]
        assert "r1" in registry
        assert registry.get("r2") == ready("r2", runner="yonder")


@pytest.mark.anyio
async def test_watch_fires_at_once_when_already_registered() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        await registry.register(ready("a"))
        seen: list[WorkerReadyData] = []

        async def handler(data: WorkerReadyData) -> None:
            seen.append(data)

        await registry.watch("a", handler)
        # Awaited inside watch(): no need to yield to the event loop first.
        assert seen == [ready("a")]


@pytest.mark.anyio
async def test_watch_fires_on_later_registration_only_for_its_worker() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        seen: list[WorkerReadyData] = []

        async def handler(data: WorkerReadyData) -> None:
            seen.append(data)

        await registry.watch("a", handler)
        assert seen == []
        await registry.register(ready("b"))
        assert seen == []
        await registry.register(ready("a", runner="there"))
        assert seen == [ready("a", runner="there")]
        # Known already: no new registration, no second call.
        await registry.register(ready("a", runner="there"))
        assert seen == [ready("a", runner="there")]


@pytest.mark.anyio
async def test_several_watchers_all_fire() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        calls: list[str] = []

        async def first(data: WorkerReadyData) -> None:
            calls.append("first:" + data.worker_name)

        async def second(data: WorkerReadyData) -> None:
            calls.append("second:" + data.worker_name)

        await registry.watch("a", first)
        await registry.watch("a", second)
        await registry.register(ready("a"))
        assert sorted(calls) == ["first:a", "second:a"]


@pytest.mark.anyio
async def test_watch_fires_again_when_the_worker_comes_back() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        seen: list[str] = []

        async def handler(data: WorkerReadyData) -> None:
            seen.append(data.runner)

        await registry.watch("a", handler)
        await registry.register(ready("a", runner="one"))
        await registry.unregister("a")
        assert await registry.register(ready("a", runner="two")) is True
        assert seen == ["one", "two"]


@pytest.mark.anyio
async def test_raising_watcher_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        seen: list[str] = []

        async def broken(data: WorkerReadyData) -> None:
            raise RuntimeError("watcher exploded")

        async def fine(data: WorkerReadyData) -> None:
            seen.append(data.worker_name)

        await registry.watch("a", broken)
        await registry.watch("a", fine)
        with caplog.at_level(logging.ERROR, logger="framework.registry"):
            assert await registry.register(ready("a")) is True
        assert seen == ["a"]
        assert "a" in registry
        records = [r for r in caplog.records if r.name == "framework.registry"]
        assert records, "the raising watcher was not logged"
        assert any(
            r.exc_info is not None and "watcher exploded" in str(r.exc_info[1]) for r in records
        )

        # Fires at once on an already registered worker: also logged, not raised.
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="framework.registry"):
            await registry.watch("a", broken)
        assert any(r.name == "framework.registry" for r in caplog.records)


@pytest.mark.anyio
async def test_unregister() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        await registry.register(ready("a"))
        await registry.register(ready("b"))
        assert await registry.unregister("a") is True
        assert "a" not in registry
        assert registry.get("a") is None
        assert registry.local_workers == ["b"]
        assert await registry.unregister("a") is False
        assert await registry.unregister("never-there") is False
        # Registering again after unregistering counts as new.
        assert await registry.register(ready("a")) is True


@pytest.mark.anyio
async def test_remove_runner_removes_only_that_runners_workers() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        await registry.register(ready("local"))
        await registry.register(ready("t1", runner="there"))
        await registry.register(ready("y1", runner="yonder"))
        await registry.register(ready("t2", runner="there"))

        removed = await registry.remove_runner("there")

        assert sorted(removed) == ["t1", "t2"]
        assert "t1" not in registry
        assert "t2" not in registry
        assert registry.local_workers == ["local"]
        assert registry.remote_workers == ["y1"]
        assert await registry.remove_runner("there") == []
        assert await registry.remove_runner("unknown") == []


@pytest.mark.anyio
async def test_wait_ready_returns_at_once_when_registered() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        await registry.register(ready("a"))
        assert await registry.wait_ready("a") == ready("a")


@pytest.mark.anyio
async def test_wait_ready_waits_for_registration() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        results: list[WorkerReadyData] = []

        async def waiter() -> None:
            results.append(await registry.wait_ready("a"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            await registry.register(ready("b"))
            await anyio.wait_all_tasks_blocked()
            assert results == []
            await registry.register(ready("a", runner="there"))
        assert results == [ready("a", runner="there")] * 2


@pytest.mark.anyio
async def test_wait_ready_after_unregister_waits_for_the_next_registration() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        await registry.register(ready("a", runner="one"))
        await registry.unregister("a")
        results: list[WorkerReadyData] = []

        async def waiter() -> None:
            results.append(await registry.wait_ready("a"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            await registry.register(ready("a", runner="two"))
        assert results == [ready("a", runner="two")]


@pytest.mark.anyio
async def test_ready_listeners_hear_every_registration_and_a_local_takeover() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        heard: list[WorkerReadyData] = []
        registry.add_ready_listener(heard.append)
        watched: list[WorkerReadyData] = []

        async def watcher(data: WorkerReadyData) -> None:
            watched.append(data)

        await registry.watch("a", watcher)
        await registry.register(ready("a", runner="there"))  # a remote replica first
        assert registry.remote_workers == ["a"] and registry.local_workers == []
        # A local worker of the same name takes its place: jobs from here stay in-process.
        assert await registry.register(ready("a")) is False
        assert registry.local_workers == ["a"] and registry.remote_workers == []
        assert heard == [ready("a", runner="there"), ready("a")]
        assert watched == [ready("a", runner="there")]  # not new to the watchers
        # A remote one never displaces a local one.
        assert await registry.register(ready("a", runner="elsewhere")) is False
        assert registry.get("a") == ready("a")
        assert len(heard) == 2


@pytest.mark.anyio
async def test_replace_moves_a_known_worker_to_another_runner_silently() -> None:
    with anyio.fail_after(5):
        registry = WorkerRegistry("here")
        gone: list[str] = []
        registry.add_gone_listener(lambda name, reason: gone.append(name))
        await registry.register(ready("a", runner="r1"))
        registry.replace(ready("a", runner="r2"))
        assert registry.get("a") == ready("a", runner="r2")
        registry.replace(ready("unknown", runner="r2"))  # unknown names are not added
        assert "unknown" not in registry
        assert gone == []
