"""``framework.testing``: its fixtures, and what importing it costs a pytest session that
does not use them (the module is a ``pytest11`` plugin, loaded by every pytest run)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import anyio
import pytest

from framework import BaseWorker, Job, WorkerRunner, hookimpl, job
from framework.testing import MemoryPublisher


class Hello(BaseWorker):
    @job
    async def hello(self, j: Job) -> dict[str, Any]:
        return {"hello": j.payload.get("name", "world")}


class HelloPlugin:
    @hookimpl
    def register_workers(self, register: Any) -> None:
        register(Hello, name="hello")


@pytest.fixture
def framework_plugins() -> list[Any]:
    return [HelloPlugin()]


@pytest.mark.anyio
async def test_framework_runner_hosts_the_workers_of_framework_plugins(
    framework_runner: WorkerRunner, framework_events: MemoryPublisher
) -> None:
    with anyio.fail_after(5):
        async with framework_runner.job("hello", payload={"name": "you"}) as hello:
            pass
        assert hello.response == {"hello": "you"}
        # events reach the publishers through a buffer, possibly after the response
        while not any(event.node_name == "hello" for event in framework_events.events):
            await anyio.sleep(0.01)


@pytest.mark.parametrize("name", ["runner", "plugin_host", "host", "events"])
def test_there_are_no_generic_fixture_names(request: pytest.FixtureRequest, name: str) -> None:
    """Every fixture is ``framework_...``: a plugin's tests keep ``runner`` and the others
    for their own fixtures and variables."""
    with pytest.raises(pytest.FixtureLookupError):
        request.getfixturevalue(name)


def test_framework_host_registers_a_plugin_for_one_test(framework_host: Any) -> None:
    framework_host.register(HelloPlugin())
    framework_host.collect_registrations()
    assert "hello" in framework_host.workers


def _pytest(tmp_path: Any, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_forgot.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_forgot.py"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )


def test_an_async_test_without_the_anyio_marker_is_told_to_add_it(tmp_path: Any) -> None:
    result = _pytest(
        tmp_path,
        "async def test_one(framework_runner):\n    pass\n\n"
        "async def test_two(framework_runner):\n    pass\n\n"
        "async def test_plain():\n    pass\n",
    )
    assert result.returncode == 1, result.stdout
    for name in ("test_one", "test_two"):
        assert (
            f"test_forgot.py::{name} is an async test without @pytest.mark.anyio: add the "
            "marker" in result.stdout
        )
        assert "and its async fixture framework_runner" in result.stdout
    assert "test_forgot.py::test_plain is an async test without @pytest.mark.anyio" in (
        result.stdout
    )
    assert "3 errors" in result.stdout
    marked = _pytest(
        tmp_path,
        "import pytest\n\npytestmark = pytest.mark.anyio\n\n"
        "@pytest.fixture\ndef anyio_backend():\n    return 'asyncio'\n\n"
        "async def test_one(framework_runner):\n    assert framework_runner.workers is not None\n",
    )
    assert marked.returncode == 0, marked.stdout


def test_importing_it_loads_no_runtime() -> None:
    code = (
        "import sys, framework.testing; heavy = ('anyio', 'pydantic', 'framework.runner', "
        "'framework.worker', 'framework.plugins', 'framework.config', 'framework._run_command', "
        "'framework.builtins', 'framework.hookspecs'); "
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"
