"""Plugins: the notification hooks, isolation of failing hookimpls, and plugin validation.

Every hookspec in ``framework.hookspecs`` has a ``test_hook_<name>`` here and a
``## <name>`` section in docs/hooks.md; ``test_every_hookspec_has_a_test_and_docs`` checks it.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import types
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pluggy
import pytest
import sample_plugin  # tests/ is on sys.path (pytest's rootdir conftest)
from click.testing import CliRunner
from publishers import AsyncRecorder, Recorder

from framework import (
    BaseWorker,
    EventModel,
    EventType,
    Job,
    JobError,
    JobFailed,
    JobStatus,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRunner,
    hookimpl,
    hookspecs,
    job,
)
from framework.bus.messages import JobResponseMessage
from framework.cli import cli
from framework.plugins import create_plugin_manager
from framework.testing import make_host

ROOT = Path(__file__).resolve().parents[1]


class Echo(BaseWorker):
    @job
    async def echo(self, job: Job) -> dict[str, Any]:
        return {"echo": job.payload}

    @job(name="fail")
    async def fail(self, job: Job) -> dict[str, Any]:
        raise JobFailed("bad input")

    @job(name="boom")
    async def boom(self, job: Job) -> dict[str, Any]:
        raise RuntimeError("kaboom")

    @job(name="hang")
    async def hang(self, job: Job) -> dict[str, Any]:
        await anyio.sleep_forever()
        return {}


class BrokenStart(BaseWorker):
    async def on_ready(self) -> None:
        raise ValueError("no database")


@pytest.fixture
def pm() -> pluggy.PluginManager:
    """A fresh plugin manager with only the hook specs and the built-ins."""
    return create_plugin_manager()


def spec_names() -> list[str]:
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(
        name
        for name, obj in vars(hookspecs).items()
        if inspect.isfunction(obj) and getattr(obj, marker, None) is not None
    )


# ----------------------------------------------------------------- the hooks


class SyncReady:
    def __init__(self) -> None:
        self.calls: list[tuple[WorkerReadyData, WorkerRunner]] = []
        self.registered: list[bool] = []

    @hookimpl
    def on_worker_ready(self, data: WorkerReadyData, runner: WorkerRunner) -> None:
        self.calls.append((data, runner))
        # Documented: the worker is in the registry by the time the hook fires.
        self.registered.append(runner.registry.get(data.worker_name) == data)


class AsyncReady:
    def __init__(self) -> None:
        self.calls: list[tuple[WorkerReadyData, WorkerRunner]] = []

    @hookimpl
    async def on_worker_ready(self, runner: WorkerRunner, data: WorkerReadyData) -> None:
        await anyio.lowlevel.checkpoint()
        self.calls.append((data, runner))


@pytest.mark.anyio
async def test_hook_on_worker_ready() -> None:
    with anyio.fail_after(10):
        sync_impl, async_impl = SyncReady(), AsyncReady()
        runner = WorkerRunner("r", plugins=[sync_impl, async_impl])
        await runner.add_worker(Echo("early"))
        async with runner:
            await runner.add_worker(Echo("late"))
            async with runner.job("late"):
                pass
        assert sync_impl.registered == [True, True]
        for impl in (sync_impl, async_impl):
            described = tuple(Echo("x").describe())  # the ready data carries the description
            assert [data for data, _ in impl.calls] == [
                WorkerReadyData(worker_name="early", runner="r", jobs=described),
                WorkerReadyData(worker_name="late", runner="r", jobs=described),
            ]
            assert all(r is runner for _, r in impl.calls)


class SyncCompleted:
    def __init__(self) -> None:
        self.calls: list[tuple[JobResponseMessage, BaseWorker]] = []

    @hookimpl
    def on_job_completed(self, response: JobResponseMessage, worker: BaseWorker) -> None:
        self.calls.append((response, worker))


class AsyncCompleted:
    def __init__(self) -> None:
        self.calls: list[tuple[JobResponseMessage, BaseWorker]] = []

    @hookimpl
    async def on_job_completed(self, worker: BaseWorker, response: JobResponseMessage) -> None:
        await anyio.lowlevel.checkpoint()
        self.calls.append((response, worker))


@pytest.mark.anyio
async def test_hook_on_job_completed() -> None:
    with anyio.fail_after(10):
        sync_impl, async_impl = SyncCompleted(), AsyncCompleted()
        runner = WorkerRunner("r", plugins=[sync_impl, async_impl])
        worker = Echo("w")
        expected: dict[str, tuple[JobStatus, dict[str, Any]]] = {}
        async with runner:
            await runner.add_worker(worker)
            async with runner.job("w", payload={"x": 1}) as j:
                pass
            expected[j.job_id] = (JobStatus.COMPLETED, {"echo": {"x": 1}})
            for name, status in (("fail", JobStatus.FAILED), ("boom", JobStatus.ERROR)):
                with pytest.raises(JobError):
                    async with runner.job("w", name=name) as j:
                        pass
                expected[j.job_id] = (status, j.response or {})
            with pytest.raises(JobError):
                async with runner.job("w", name="hang", timeout=0.05) as j:
                    pass
            expected[j.job_id] = (JobStatus.CANCELLED, {})

        for impl in (sync_impl, async_impl):
            got = {response.job_id: response for response, _ in impl.calls}
            assert len(impl.calls) == len(expected) == len(got)  # once per job
            assert all(w is worker for _, w in impl.calls)
            for job_id, (status, body) in expected.items():
                response = got[job_id]
                assert isinstance(response, JobResponseMessage)
                assert response.status is status
                assert response.source == "w"
                assert response.target == "r"
                if status is JobStatus.CANCELLED:
                    assert "error" in response.response
                else:
                    assert response.response == body
            assert got_error(got, JobStatus.FAILED) == "bad input"
            assert "kaboom" in got_error(got, JobStatus.ERROR)


def got_error(responses: dict[str, JobResponseMessage], status: JobStatus) -> str:
    (response,) = [r for r in responses.values() if r.status is status]
    return str(response.response["error"])


@pytest.mark.anyio
async def test_on_job_completed_runs_after_the_requester_has_its_response() -> None:
    with anyio.fail_after(10):
        gate = anyio.Event()
        seen: list[str] = []

        class Slow:
            @hookimpl
            async def on_job_completed(self, response: JobResponseMessage) -> None:
                await gate.wait()
                seen.append(response.job_id)

        runner = WorkerRunner("r", plugins=[Slow()])
        async with runner:
            await runner.add_worker(Echo("w"))
            with anyio.fail_after(2):
                async with runner.job("w", payload={"x": 1}) as j:
                    pass
            assert j.response == {"echo": {"x": 1}}
            assert seen == []
            gate.set()
        assert seen == [j.job_id]


class SyncFailed:
    def __init__(self) -> None:
        self.calls: list[tuple[WorkerErrorData, WorkerRunner]] = []

    @hookimpl
    def on_worker_failed(self, error: WorkerErrorData, runner: WorkerRunner) -> None:
        self.calls.append((error, runner))


class AsyncFailed:
    def __init__(self) -> None:
        self.calls: list[tuple[WorkerErrorData, WorkerRunner]] = []

    @hookimpl
    async def on_worker_failed(self, error: WorkerErrorData, runner: WorkerRunner) -> None:
        await anyio.lowlevel.checkpoint()
        self.calls.append((error, runner))


@pytest.mark.anyio
async def test_hook_on_worker_failed() -> None:
    with anyio.fail_after(10):
        sync_impl, async_impl = SyncFailed(), AsyncFailed()
        ready = SyncReady()
        runner = WorkerRunner("r", plugins=[sync_impl, async_impl, ready])
        await runner.add_worker(BrokenStart("early"))
        async with runner:
            await runner.add_worker(BrokenStart("late"))
            await runner.add_worker(Echo("fine"))
            assert "early" not in runner.registry
            assert "late" not in runner.registry
            # A handler that raises does not fail its worker.
            with pytest.raises(JobError):
                async with runner.job("fine", name="boom"):
                    pass
        for impl in (sync_impl, async_impl):
            assert [e.worker_name for e, _ in impl.calls] == ["early", "late"]
            for error, r in impl.calls:
                assert isinstance(error, WorkerErrorData)
                assert "no database" in error.error
                assert "ValueError" in error.error
                assert r is runner
        assert [d.worker_name for d, _ in ready.calls] == ["fine"]


class SyncPublisher(Recorder):
    """A sync publisher (its plugin name, for event_stats: SyncPublisher)."""


class AsyncPublisher(AsyncRecorder):
    """An async publisher (its plugin name, for event_stats: AsyncPublisher)."""


@pytest.mark.anyio
async def test_hook_publish_event() -> None:
    with anyio.fail_after(10):
        sync_impl, async_impl = SyncPublisher(), AsyncPublisher()
        runner = WorkerRunner("r", plugins=[sync_impl, async_impl])
        async with runner:
            await runner.add_worker(Echo("w"))
            async with runner.job("w", payload={"x": 1}) as j:
                pass
        for impl in (sync_impl, async_impl):
            assert all(isinstance(e, EventModel) for e in impl.events)
            assert [(e.node_name, e.event_type, e.thread_id) for e in impl.events] == [
                ("r", EventType.START, ""),
                ("w", EventType.START, ""),
                ("w", EventType.START, j.job_id),
                ("w", EventType.RESULT, j.job_id),
                ("r", EventType.END, ""),
            ]
        assert runner.event_stats()["SyncPublisher"].delivered == 5
        assert runner.event_stats()["AsyncPublisher"].delivered == 5


# ----------------------------------------------------------------- isolation


class Exploding:
    """Raises in every notification hook."""

    @hookimpl
    def on_worker_ready(self, data: WorkerReadyData) -> None:
        raise RuntimeError("ready hook exploded")

    @hookimpl
    def on_job_completed(self, response: JobResponseMessage) -> None:
        raise RuntimeError("completed hook exploded")

    @hookimpl
    def on_worker_failed(self, error: WorkerErrorData) -> None:
        raise RuntimeError("failed hook exploded")


class ExplodingAsync:
    @hookimpl
    async def on_job_completed(self) -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("async completed hook exploded")


class Counting:
    """Counts every notification hook call (takes no arguments at all)."""

    def __init__(self) -> None:
        self.ready = 0
        self.completed = 0
        self.failed = 0

    @hookimpl
    def on_worker_ready(self) -> None:
        self.ready += 1

    @hookimpl
    def on_job_completed(self) -> None:
        self.completed += 1

    @hookimpl
    def on_worker_failed(self) -> None:
        self.failed += 1


@pytest.mark.anyio
async def test_a_raising_hookimpl_is_logged_and_changes_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with anyio.fail_after(10):
        before, after = Counting(), Counting()
        runner = WorkerRunner("r", plugins=[before, Exploding(), ExplodingAsync(), after])
        with caplog.at_level(logging.ERROR):
            async with runner:
                await runner.add_worker(Echo("w"))
                await runner.add_worker(BrokenStart("broken"))
                # The worker whose on_worker_ready hook raised is ready and works.
                assert "w" in runner.registry
                async with runner.job("w", payload={"x": 1}) as j:
                    pass
                assert j.status is JobStatus.COMPLETED
                assert j.response == {"echo": {"x": 1}}
                with pytest.raises(JobError) as info:
                    async with runner.job("w", name="fail"):
                        pass
                assert info.value.status is JobStatus.FAILED
                assert info.value.response == {"error": "bad input"}

        for counting in (before, after):
            assert (counting.ready, counting.completed, counting.failed) == (1, 2, 1)
        messages = [r.getMessage() for r in caplog.records if r.name == "framework.plugins"]
        for hook in ("on_worker_ready", "on_job_completed", "on_worker_failed"):
            assert any("'Exploding'" in m and hook in m for m in messages), (hook, messages)
        assert any("'ExplodingAsync'" in m and "on_job_completed" in m for m in messages)
        exploded = [
            str(r.exc_info[1])
            for r in caplog.records
            if r.name == "framework.plugins" and r.exc_info is not None
        ]
        assert "ready hook exploded" in exploded
        assert "failed hook exploded" in exploded
        assert "completed hook exploded" in exploded
        assert "async completed hook exploded" in exploded


# ----------------------------------------------------------------- plugin managers


def test_create_plugin_manager_gives_a_fresh_manager(pm: pluggy.PluginManager) -> None:
    assert pm.project_name == "framework"
    assert sorted(spec_names()) == sorted(
        name for name in vars(pm.hook) if not name.startswith("_") and pm.hook.__dict__[name].spec
    )
    other = create_plugin_manager()
    assert other is not pm
    plugin = SyncReady()
    third = create_plugin_manager([plugin])
    assert third.is_registered(plugin)
    assert not pm.is_registered(plugin)
    assert not other.is_registered(plugin)
    assert third.get_name(plugin) == "SyncReady"


@pytest.mark.anyio
async def test_each_runner_has_its_own_plugins() -> None:
    with anyio.fail_after(10):
        mine = SyncReady()
        first = WorkerRunner("one", plugins=[mine])
        second = WorkerRunner("two")
        assert first.plugin_manager is not second.plugin_manager
        async with second:
            await second.add_worker(Echo("w"))
        assert mine.calls == []
        async with first:
            await first.add_worker(Echo("w"))
        assert [d.worker_name for d, _ in mine.calls] == ["w"]


def test_misspelled_hookimpl_names_the_plugin_and_the_hook() -> None:
    class Misspelled:
        @hookimpl
        def on_worker_redy(self, data: WorkerReadyData) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError) as info:
        create_plugin_manager([Misspelled()])
    assert "Misspelled" in str(info.value)
    assert "on_worker_redy" in str(info.value)
    with pytest.raises(pluggy.PluginValidationError, match="on_worker_redy"):
        WorkerRunner(plugins=[Misspelled()])


def test_misspelled_hookimpl_in_a_module_names_the_module() -> None:
    module = types.ModuleType("my_misspelled_plugin")

    @hookimpl
    def publish_evnt(event: EventModel) -> None:
        pass

    module.publish_evnt = publish_evnt  # type: ignore[attr-defined]
    with pytest.raises(pluggy.PluginValidationError) as info:
        create_plugin_manager([module])
    assert "my_misspelled_plugin" in str(info.value)
    assert "publish_evnt" in str(info.value)


def test_hookimpl_with_an_unknown_argument_is_an_error() -> None:
    class WrongArgument:
        @hookimpl
        def on_worker_ready(self, dat: WorkerReadyData) -> None:
            pass

    with pytest.raises(pluggy.PluginValidationError) as info:
        create_plugin_manager([WrongArgument()])
    assert "WrongArgument" in str(info.value)
    assert "on_worker_ready" in str(info.value)


def test_unmarked_functions_are_not_hookimpls(pm: pluggy.PluginManager) -> None:
    class Plain:
        def on_worker_redy(self) -> None:
            pass

        def on_worker_ready(self) -> None:
            pass

    plain = Plain()
    pm.register(plain)
    pm.check_pending()
    assert pm.hook.on_worker_ready.get_hookimpls() == []
    create_plugin_manager([Plain()])  # no error


def test_the_same_plugin_object_twice_is_a_value_error() -> None:
    plugin = SyncReady()
    with pytest.raises(ValueError, match="SyncReady"):
        create_plugin_manager([plugin, plugin])
    with pytest.raises(ValueError, match="twice"):
        WorkerRunner(plugins=[plugin, plugin])
    # Two objects of one class are two plugins.
    pm = create_plugin_manager([SyncReady(), SyncReady()])
    assert len(pm.hook.on_worker_ready.get_hookimpls()) == 2


@pytest.mark.anyio
async def test_modules_and_instances_both_work_as_plugins() -> None:
    with anyio.fail_after(10):
        module = types.ModuleType("my_module_plugin")
        module_calls: list[str] = []

        @hookimpl
        def on_worker_ready(data: WorkerReadyData) -> None:
            module_calls.append(data.worker_name)

        @hookimpl
        async def on_job_completed(response: JobResponseMessage) -> None:
            await anyio.lowlevel.checkpoint()
            module_calls.append(f"completed {response.status}")

        module.on_worker_ready = on_worker_ready  # type: ignore[attr-defined]
        module.on_job_completed = on_job_completed  # type: ignore[attr-defined]
        instance = SyncReady()

        runner = WorkerRunner("r", plugins=[module, instance])
        assert runner.plugin_manager.get_name(module) == "my_module_plugin"
        assert runner.plugin_manager.get_name(instance) == "SyncReady"
        async with runner:
            await runner.add_worker(Echo("w"))
            async with runner.job("w"):
                pass
        assert module_calls == ["w", "completed completed"]
        assert [d.worker_name for d, _ in instance.calls] == ["w"]


# ----------------------------------------------------------------- the meta-test


def test_every_hookspec_has_a_test_and_docs() -> None:
    names = spec_names()
    # Guard against a collection that finds nothing (and so checks nothing).
    assert {"on_worker_ready", "on_job_completed", "on_worker_failed", "publish_event"} <= set(
        names
    )

    # The hook tests live here and beside the seams they exercise (tests/test_seams.py).
    tests = {name for name, obj in globals().items() if inspect.isfunction(obj)}
    for module in sorted((ROOT / "tests").glob("test_*.py")):
        tests.update(re.findall(r"^(?:async )?def (test_hook_\w+)\(", module.read_text(), re.M))
    missing_tests = [name for name in names if f"test_hook_{name}" not in tests]

    docs = ROOT / "docs" / "hooks.md"
    assert docs.is_file(), f"{docs} is missing: every hookspec needs a section in it"
    text = docs.read_text(encoding="utf-8")
    missing_docs = [
        name
        for name in names
        if not re.search(rf"^##\s+`?{re.escape(name)}`?(\s|\(|$)", text, re.MULTILINE)
    ]

    assert not missing_tests, f"hookspecs without a test_hook_<name> test: {missing_tests}"
    assert not missing_docs, f"hookspecs without a '## <name>' section in {docs}: {missing_docs}"


def test_a_hook_wrapper_on_a_notification_hook_is_refused() -> None:
    class Wrapping:
        @hookimpl(wrapper=True)
        def on_worker_ready(self, data: Any) -> Any:
            return (yield)

    with pytest.raises(pluggy.PluginValidationError, match=r"'Wrapping'.*on_worker_ready"):
        create_plugin_manager([Wrapping()])


@pytest.mark.anyio
async def test_a_slow_on_job_completed_never_holds_up_the_workers_inbox() -> None:
    class SlowHook:
        @hookimpl
        async def on_job_completed(self, response: Any, worker: Any) -> None:
            await anyio.sleep(1.0)

    class Picky(BaseWorker):
        @job(name="known")
        async def known(self, job: Job) -> dict[str, Any]:
            return {}

    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[SlowHook()], grace_period=0) as runner:
            await runner.add_worker(Picky("picky", active=False))
            start = anyio.current_time()
            for _ in range(3):  # refused at once, in the inbox loop
                with pytest.raises(JobError):
                    async with runner.job("picky", name="known"):
                        pass
            assert anyio.current_time() - start < 0.5


# ----------------------------------------------------------------- registration hooks


ISOLATED_ENV = {"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1", "FRAMEWORK_PLUGINS": None}
"""No installed entry-point plugin leaks into a CLI test: only -p ones load."""


def test_hook_register_workers() -> None:
    host = make_host(sample_plugin)
    host.collect_registrations()
    assert host.workers.get("greeter-worker") is sample_plugin.GreeterWorker
    assert host.workers.entries["greeter-worker"].plugin == "sample_plugin"
    info = next(i for i in host.plugin_infos() if i.name == "sample_plugin")
    assert info.registered["workers"] == ["greeter-worker", "counter", "secretive", "sleepy"]

    class Clash:
        @hookimpl
        def register_workers(self, register: Any) -> None:
            register(sample_plugin.AddedLater, name="greeter-worker")

    clashing = make_host(sample_plugin, Clash())
    clashing.collect_registrations()
    assert len(clashing.registration_errors) == 1
    error = clashing.registration_errors[0]
    assert "'sample_plugin'" in error and "'Clash'" in error and "greeter-worker" in error


def test_register_workers_refuses_what_is_not_a_worker_class() -> None:
    class Wrong:
        @hookimpl
        def register_workers(self, register: Any) -> None:
            register(dict)

    host = make_host(Wrong())
    host.collect_registrations()
    assert "register a subclass of framework.BaseWorker" in host.registration_errors[0]


def test_hook_register_llm_backends() -> None:
    host = make_host(sample_plugin)
    host.collect_registrations()
    assert "sample-llm" in host.llm_backends
    assert host.llm_backends.entries["sample-llm"].plugin == "sample_plugin"


def test_hook_register_buses() -> None:
    from framework._run_command import make_bus

    host = make_host(sample_plugin)
    host.collect_registrations()
    bus = make_bus("sample://somewhere", host, "--bus")
    assert isinstance(bus, sample_plugin.SampleBus)
    assert bus.url == "sample://somewhere"
    assert host.buses.entries["local"].plugin == "local"  # the built-in, same hook
    with pytest.raises(Exception, match=r"no bus is registered for 'nats://x'.*local://"):
        make_bus("nats://x", host, "--bus")


def test_hook_register_commands() -> None:
    result = CliRunner().invoke(
        cli, ["-p", "sample_plugin", "sample-hello", "tests"], env=ISOLATED_ENV
    )
    assert result.exit_code == 0, result.output
    assert result.output == "hello tests from sample_plugin\n"
    listing = CliRunner().invoke(cli, ["-p", "sample_plugin", "--help"], env=ISOLATED_ENV)
    assert "sample-hello" in listing.output


def test_hook_configure_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no framework.toml here: defaults
    sample_plugin.configured.clear()
    result = CliRunner().invoke(
        cli,
        ["-p", "sample_plugin", "run", "--job", "added-later", "--json"],
        env=ISOLATED_ENV,
    )
    assert result.exit_code == 0, result.output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    assert last == {
        "type": "response",
        "status": "completed",
        "response": {"added_by": "configure_runner"},
    }
    assert len(sample_plugin.configured) == 1


def test_a_config_error_from_configure_runner_names_the_file_run_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    def run() -> tuple[int, str]:
        result = CliRunner().invoke(
            cli, ["-p", "strict_settings_plugin", "run", "--job", "echo"], env=ISOLATED_ENV
        )
        return result.exit_code, result.stderr

    reason = "plugins.strict.level: must be 'low' or 'high', not 'max'"
    (tmp_path / "framework.toml").write_text('[plugins.strict]\nlevel = "max"\n')
    assert run() == (
        2,
        f"framework: configuration error: {tmp_path / 'framework.toml'}: {reason}\n",
    )
    # No file loaded: the plugin's own words stay.
    (tmp_path / "framework.toml").unlink()
    code, err = run()
    assert (code, err.splitlines()[-1]) == (
        2,
        "framework: configuration error: the run configuration: plugins.strict.level: "
        "must be 'low' or 'high', not None",
    )


@pytest.mark.anyio
async def test_build_runner_skips_workers_needing_settings_and_configures() -> None:
    from framework.testing import build_runner

    with anyio.fail_after(5):
        runner = await build_runner(make_host(sample_plugin))
        assert sorted(runner.workers) == [
            "added-later",
            "assistant",
            "counter",
            "greeter-worker",
            "sleepy",
        ]
        async with runner, runner.job("added-later") as ctx:
            pass
        assert ctx.response == {"added_by": "configure_runner"}


def test_a_registration_hook_that_raises_is_reported_and_others_still_register(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Raises:
        @hookimpl
        def register_workers(self, register: Any) -> None:
            raise RuntimeError("no database")

    host = make_host(sample_plugin, Raises())
    host.report = True
    host.collect_registrations()
    assert host.registration_errors == [
        "plugin 'Raises': register_workers raised RuntimeError: no database"
    ]
    assert "greeter-worker" in host.workers
    err = capsys.readouterr().err
    assert "framework: plugin 'Raises': register_workers raised RuntimeError" in err
    assert "plugin 'Raises': plugin 'Raises'" not in err


def test_a_bus_factory_that_takes_a_secret_is_given_the_bus_secrets() -> None:
    """``framework run`` calls ``factory(url, secret=[...])`` when the factory has a
    ``secret`` keyword; a plain ``factory(url)`` is called as before, and refused only when
    a secret is set and it makes a network bus (its messages would travel unsigned)."""
    from pydantic import SecretStr

    from framework._run_command import make_bus
    from framework.bus.local import LocalBus

    made: list[Any] = []

    class Networked(LocalBus):
        def attach(self, runner: Any) -> None: ...

        async def serve(self, *, task_status: Any = None) -> None: ...

    def signing(url: str, *, secret: Any = None) -> LocalBus:
        made.append(secret)
        return LocalBus()

    def plain(url: str) -> LocalBus:
        return Networked() if "net" in url else LocalBus()

    class Buses:
        @hookimpl
        def register_buses(self, register: Any) -> None:
            register("signing", signing)
            register("plain", plain)

    host = make_host(Buses())
    host.collect_registrations()
    secrets = [SecretStr("s" * 16)]
    make_bus("signing://x", host, "--bus", secrets)
    make_bus("signing://x", host, "--bus")
    assert made == [secrets, []]
    assert isinstance(make_bus("plain://local", host, "--bus", secrets), LocalBus)
    assert isinstance(make_bus("plain://net", host, "--bus"), Networked)
    from framework.config import ConfigError

    with pytest.raises(ConfigError, match=r"bus_secret is set, but the plain:// bus of plugin"):
        make_bus("plain://net", host, "--bus", secrets)
