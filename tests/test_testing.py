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


def test_there_is_no_fixture_named_runner(request: pytest.FixtureRequest) -> None:
    """The fixture is ``framework_runner``: a plugin's tests keep the name ``runner`` for
    their own fixtures and variables."""
    with pytest.raises(pytest.FixtureLookupError):
        request.getfixturevalue("runner")


def test_importing_it_loads_no_runtime() -> None:
    code = (
        "import sys, framework.testing; heavy = ('anyio', 'pydantic', 'framework.runner', "
        "'framework.worker', 'framework.plugins', 'framework.config', 'framework._run_command'); "
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"
