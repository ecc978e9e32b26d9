"""BaseWorker: handler declaration, lifecycle, activation, handoff, children, watching."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from framework import (
    BaseWorker,
    Job,
    JobError,
    JobGroupResponse,
    JobStatus,
    WorkerActivationArgs,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRunner,
    job,
    worker_ready,
)

pytestmark = pytest.mark.anyio


class Echo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"echo": job.payload}


def test_two_handlers_for_one_job_name_is_an_error_naming_both() -> None:
    with pytest.raises(TypeError) as info:

        class Twice(BaseWorker):
            @job(name="x")
            async def first(self, job: Job) -> dict[str, Any]:
                return {}

            @job(name="x")
            async def second(self, job: Job) -> dict[str, Any]:
                return {}

    message = str(info.value)
    assert "first()" in message and "second()" in message and "'x'" in message


def test_two_default_handlers_is_an_error_naming_both() -> None:
    with pytest.raises(TypeError, match=r"one\(\).*two\(\)|two\(\).*one\(\)"):

        class Twice(BaseWorker):
            @job
            async def one(self, job: Job) -> dict[str, Any]:
                return {}

            @job
            async def two(self, job: Job) -> dict[str, Any]:
                return {}


def test_a_subclass_may_override_a_handler_by_method_name() -> None:
    class Base(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            return {"base": True}

    class Child(Base):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            return {"child": True}

    assert next(iter(Child._handler_table.handlers.values())).attribute == "handle"


def test_a_sync_handler_is_refused_at_decoration() -> None:
    with pytest.raises(TypeError, match="async def"):

        class Sync(BaseWorker):
            @job
            def handle(self, job: Job) -> dict[str, Any]:  # type: ignore[type-var]
                return {}


def test_worker_name_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match="name"):
        BaseWorker("")


async def test_requesting_before_running_says_what_to_do() -> None:
    worker = Echo("idle")
    with pytest.raises(RuntimeError, match="not running"):
        worker.job("other")
    with pytest.raises(RuntimeError, match="add_worker"):
        _ = worker.registry


async def test_lifecycle_callbacks_and_properties() -> None:
    calls: list[str] = []

    class Life(BaseWorker):
        async def on_ready(self) -> None:
            calls.append("ready")

        async def on_finished(self) -> None:
            calls.append("finished")

    with anyio.fail_after(5):
        worker = Life("life")
        async with WorkerRunner("r") as runner:
            await runner.add_worker(worker)
            assert worker.ready and worker.active
            assert worker.started_at is not None
            assert worker.registry is runner.registry
            assert runner.registry.local_workers == ["life"]
            entry = runner.registry.entry("life")
            assert entry is not None and entry.active and entry.parent is None
        assert calls == ["ready", "finished"]
        assert not worker.ready
        assert "life" not in runner.registry


async def test_a_worker_whose_on_ready_raises_fails_and_is_not_registered() -> None:
    errors: list[WorkerErrorData] = []

    class Broken(BaseWorker):
        async def on_ready(self) -> None:
            raise RuntimeError("no config")

    class Watcher(BaseWorker):
        async def on_ready(self) -> None:
            await self.watch_worker("broken")

        async def on_worker_error(self, data: WorkerErrorData) -> None:
            errors.append(data)

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Watcher("watcher"))
            await runner.add_worker(Broken("broken"))
            assert "broken" not in runner.registry
            with anyio.fail_after(1):
                while not errors:
                    await anyio.sleep(0.01)
            assert errors == [
                WorkerErrorData(worker_name="broken", error="RuntimeError: no config")
            ]
            with pytest.raises(JobError) as info:
                async with runner.job("broken", timeout=0.1):
                    pass
            assert info.value.timed_out


async def test_inactive_worker_refuses_jobs_until_activated() -> None:
    activations: list[WorkerActivationArgs | None] = []

    class Sleepy(Echo):
        async def on_activated(self, args: WorkerActivationArgs | None) -> None:
            activations.append(args)

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            worker = Sleepy("sleepy", active=False)
            await runner.add_worker(worker)
            with pytest.raises(JobError) as info:
                async with runner.job("sleepy"):
                    pass
            assert info.value.status is JobStatus.ERROR
            assert "inactive" in info.value.response["error"]

            class Admin(BaseWorker):
                pass

            admin = Admin("admin")
            await runner.add_worker(admin)
            await admin.activate_worker("sleepy", WorkerActivationArgs(metadata={"why": "test"}))
            with anyio.fail_after(1):
                while not worker.active:
                    await anyio.sleep(0.01)
            assert activations[0] is not None and activations[0].metadata == {"why": "test"}
            assert worker.activation_args == activations[0]
            async with runner.job("sleepy", payload={"a": 1}) as ctx:
                pass
            assert ctx.response == {"echo": {"a": 1}}

            await admin.deactivate_worker("sleepy")
            with anyio.fail_after(1):
                while worker.active:
                    await anyio.sleep(0.01)
            entry = runner.registry.entry("sleepy")
            assert entry is not None and not entry.active


async def test_handoff_deactivates_self_before_the_target_is_activated() -> None:
    states: list[tuple[str, bool, bool]] = []
    workers: dict[str, BaseWorker] = {}

    class Agent(BaseWorker):
        async def on_activated(self, args: WorkerActivationArgs | None) -> None:
            other = workers["a" if self.name == "b" else "b"]
            states.append((self.name, self.active, other.active))

        @job
        async def handoff(self, job: Job) -> dict[str, Any]:
            await self.handoff_to(job.payload["to"], {"metadata": {"from": self.name}})
            return {"active": self.active}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            workers["a"] = Agent("a")
            workers["b"] = Agent("b", active=False)
            for worker in workers.values():
                await runner.add_worker(worker)
            async with runner.job("a", payload={"to": "b"}) as ctx:
                pass
            assert ctx.response == {"active": False}
            with anyio.fail_after(1):
                while not states:
                    await anyio.sleep(0.01)
            assert states == [("b", True, False)]
            args = workers["b"].activation_args
            assert args is not None and args.metadata == {"from": "a"}


async def test_watch_worker_and_worker_ready_decorator_fire_for_ready_workers() -> None:
    seen: list[tuple[str, str]] = []

    class Watcher(BaseWorker):
        async def on_ready(self) -> None:
            await self.watch_worker("early")
            await self.watch_worker("late")

        async def on_worker_ready(self, data: WorkerReadyData) -> None:
            seen.append(("watch", data.worker_name))

        @worker_ready("late")
        async def late_is_here(self, data: WorkerReadyData) -> None:
            seen.append(("decorator", data.worker_name))

    with anyio.fail_after(5):
        async with WorkerRunner("host") as runner:
            await runner.add_worker(Echo("early"))
            await runner.add_worker(Watcher("watcher"))
            await runner.add_worker(Echo("late"))
            with anyio.fail_after(1):
                while len(seen) < 3:
                    await anyio.sleep(0.01)
    assert sorted(seen) == [("decorator", "late"), ("watch", "early"), ("watch", "late")]


async def test_children_start_after_their_parent_and_end_before_it() -> None:
    order: list[str] = []

    class Node(Echo):
        async def on_ready(self) -> None:
            order.append(f"ready {self.name}")

        async def on_finished(self) -> None:
            order.append(f"finished {self.name}")

    with anyio.fail_after(5):
        parent = Node("parent")
        child = Node("child")
        grandchild = Node("grandchild")
        await child.add_worker(grandchild)
        await parent.add_worker(child)
        async with WorkerRunner() as runner:
            await runner.add_worker(parent)
            assert child.parent is parent and parent.children == [child]
            assert sorted(runner.registry.local_workers) == ["child", "grandchild", "parent"]
            entry = runner.registry.entry("grandchild")
            assert entry is not None and entry.parent == "child"
            late = Node("late-child")
            await parent.add_worker(late)
            assert late.ready
            await parent.end()
            with anyio.fail_after(2):
                while parent.ready:
                    await anyio.sleep(0.01)
    assert order[:3] == ["ready parent", "ready child", "ready grandchild"]
    finished = [o for o in order if o.startswith("finished")]
    assert finished.index("finished grandchild") < finished.index("finished child")
    assert finished[-1] == "finished parent"


async def test_cancelling_a_parent_cancels_its_childrens_jobs() -> None:
    class Sleeper(BaseWorker):
        @job
        async def sleep(self, job: Job) -> dict[str, Any]:
            await anyio.sleep(3600)
            return {}

    with anyio.fail_after(5):
        async with WorkerRunner(grace_period=30) as runner:
            parent = Sleeper("parent")
            child = Sleeper("child")
            await parent.add_worker(child)
            await runner.add_worker(parent)
            outcomes: dict[str, JobStatus] = {}

            async def ask(name: str) -> None:
                try:
                    async with runner.job(name):
                        pass
                except JobError as exc:
                    outcomes[name] = exc.status

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "parent")
                tg.start_soon(ask, "child")
                await anyio.sleep(0.1)
                await parent.cancel("stop")
            assert outcomes == {"parent": JobStatus.CANCELLED, "child": JobStatus.CANCELLED}
            assert "parent" not in runner.registry and "child" not in runner.registry


async def test_worker_end_gives_running_jobs_their_grace_period() -> None:
    class Timed(BaseWorker):
        @job
        async def work(self, job: Job) -> dict[str, Any]:
            await anyio.sleep(job.payload["seconds"])
            return {"done": job.payload["seconds"]}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            worker = Timed("timed")
            await runner.add_worker(worker)
            outcomes: dict[float, Any] = {}

            async def ask(seconds: float) -> None:
                try:
                    async with runner.job("timed", payload={"seconds": seconds}) as ctx:
                        pass
                    outcomes[seconds] = ctx.status
                except JobError as exc:
                    outcomes[seconds] = exc.status

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, 0.1)
                tg.start_soon(ask, 10.0)
                await anyio.sleep(0.05)
                await worker.end(grace_period=0.4)
            assert outcomes == {0.1: JobStatus.COMPLETED, 10.0: JobStatus.CANCELLED}
            # A request arriving now finds no worker.
            with pytest.raises(JobError):
                async with runner.job("timed", payload={"seconds": 0}, timeout=0.1):
                    pass


async def test_active_jobs_and_job_groups_properties() -> None:
    gate = None
    snapshot: dict[str, Any] = {}
    groups: list[JobGroupResponse] = []

    class Held(BaseWorker):
        @job
        async def hold(self, job: Job) -> dict[str, Any]:
            assert gate is not None
            await gate.wait()
            return {"held": self.name}

    class Boss(BaseWorker):
        @job
        async def fan_out(self, job: Job) -> dict[str, Any]:
            job_id = await self.request_job_group("h1", "h2")
            await anyio.sleep(0.05)
            snapshot["groups"] = self.job_groups
            snapshot["id"] = job_id
            assert gate is not None
            gate.set()
            while not groups:
                await anyio.sleep(0.01)
            return {}

        async def on_job_group_completed(self, response: JobGroupResponse) -> None:
            groups.append(response)

    with anyio.fail_after(5):
        gate = anyio.Event()
        async with WorkerRunner() as runner:
            h1, h2 = Held("h1"), Held("h2")
            await runner.add_worker(h1)
            await runner.add_worker(h2)
            await runner.add_worker(Boss("boss"))
            async with runner.job("boss"):
                pass
            group = snapshot["groups"][snapshot["id"]]
            assert group.worker_names == ("h1", "h2") and not group.is_done
            assert groups == [
                JobGroupResponse(snapshot["id"], {"h1": {"held": "h1"}, "h2": {"held": "h2"}})
            ]
            assert h1.active_jobs == {}


async def test_children_added_in_on_ready_or_before_the_start_are_served() -> None:
    class Parent(BaseWorker):
        async def on_ready(self) -> None:
            await self.add_worker(Echo(f"{self.name}-from-on-ready"))

    with anyio.fail_after(5):
        runner = WorkerRunner()
        early = Parent("early")
        await runner.add_worker(early)
        await early.add_worker(Echo("early-between-add-and-start"))
        async with runner:
            late = Parent("late")
            await runner.add_worker(late)
            for name in (
                "early-from-on-ready",
                "early-between-add-and-start",
                "late-from-on-ready",
            ):
                async with runner.job(name, payload={"n": name}, timeout=1) as ctx:
                    pass
                assert ctx.response == {"echo": {"n": name}}
            assert {c.name for c in early.children} == {
                "early-from-on-ready",
                "early-between-add-and-start",
            }


async def test_invalid_activation_arguments_are_refused_and_the_worker_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[BaseException] = []

    class Target(Echo):
        async def on_error(self, error: BaseException) -> None:
            errors.append(error)

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            boss = BaseWorker("boss")
            target = Target("target", active=False)
            await runner.add_worker(boss)
            await runner.add_worker(target)
            await boss.activate_worker("target", args={"metadata": "not a dict"})
            with anyio.fail_after(1):
                while not errors:
                    await anyio.sleep(0.01)
            assert not target.active
            assert "activation from 'boss' refused" in caplog.text
            await boss.activate_worker("target", args={"metadata": {"ok": True}})
            with anyio.fail_after(1):
                while not target.active:
                    await anyio.sleep(0.01)
            async with runner.job("target", payload={}) as ctx:
                pass
            assert ctx.status is JobStatus.COMPLETED


async def test_update_with_something_other_than_a_dict_ends_the_job_error() -> None:
    class Sloppy(BaseWorker):
        @job
        async def handle(self, job: Job) -> dict[str, Any]:
            await job.update("50%")  # type: ignore[arg-type]
            return {}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Sloppy("sloppy"))
            with pytest.raises(JobError) as info:
                async with runner.job("sloppy"):
                    pass
            assert info.value.status is JobStatus.ERROR
            assert info.value.response == {"error": "TypeError: job.update() takes a dict, got str"}


async def test_end_reason_reaches_the_requesters_of_cancelled_jobs() -> None:
    class Sleeper(BaseWorker):
        @job
        async def sleep(self, job: Job) -> dict[str, Any]:
            await anyio.sleep(3600)
            return {}

    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            worker = Sleeper("sleeper")
            await runner.add_worker(worker)
            errors: list[JobError] = []

            async def ask() -> None:
                try:
                    async with runner.job("sleeper"):
                        pass
                except JobError as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await anyio.sleep(0.05)
                await worker.end(reason="maintenance", grace_period=0)
            assert errors[0].status is JobStatus.CANCELLED
            assert errors[0].response == {"error": "maintenance"}


def test_decorator_slips_get_errors_that_say_what_to_write() -> None:
    with pytest.raises(TypeError, match=r"@job\(name='summarize'\)"):

        class Positional(BaseWorker):
            @job("summarize")  # type: ignore[call-overload]
            async def summarize(self, job: Job) -> dict[str, Any]:
                return {}

    with pytest.raises(TypeError, match=r'@worker_ready\("search"\)'):

        class Bare(BaseWorker):
            @worker_ready  # type: ignore[arg-type]
            async def on_search(self, data: WorkerReadyData) -> None:
                pass
