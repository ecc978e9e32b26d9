"""The plugin module: light to import, its routes, and its apps before a runner serves."""

from __future__ import annotations

import subprocess
import sys

import anyio
import httpx
import pytest
from agent_plugin_a2a import A2APlugin

from framework import WorkerRunner

pytestmark = pytest.mark.anyio


def test_the_plugin_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, agent_plugin_a2a\n"
        "heavy = ('a2a', 'anyio', 'pydantic', 'starlette', 'httpx', 'google')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert found.stdout.strip() == "[]"


def test_the_card_is_public_and_the_tasks_are_mounted_under_a2a() -> None:
    routes = WorkerRunner(plugins=[A2APlugin()]).routes
    assert sorted(routes.entries) == ["/.well-known/agent-card.json", "/a2a"]
    assert routes.public == {"/.well-known/agent-card.json"}


async def test_before_a_runner_serves_the_apps_answer_503() -> None:
    plugin = A2APlugin()
    with anyio.fail_after(10):
        for app, path in ((plugin.card_app, "/"), (plugin.tasks_app, "/jsonrpc")):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                answer = await client.get(path)
            assert answer.status_code == 503
            assert "not serving A2A yet" in answer.json()["error"]


async def test_the_task_store_forgets_the_oldest_finished_tasks() -> None:
    from a2a.server.context import ServerCallContext
    from a2a.types import Task, TaskState, TaskStatus
    from agent_plugin_a2a._server import BoundedTaskStore

    store = BoundedTaskStore(2)
    context = ServerCallContext()
    with anyio.fail_after(10):
        await store.save(
            Task(id="running", status=TaskStatus(state=TaskState.TASK_STATE_WORKING)), context
        )
        for name in ("a", "b", "c"):
            done = Task(id=name, status=TaskStatus(state=TaskState.TASK_STATE_COMPLETED))
            await store.save(done, context)
            await store.save(done, context)  # saved again: counted once
        kept = {
            name: await store.get(name, context) is not None for name in ("running", "a", "b", "c")
        }
    assert kept == {"running": True, "a": False, "b": True, "c": True}
