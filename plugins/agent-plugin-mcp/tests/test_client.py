"""MCP servers' tools for LLM workers (``tools = ["mcp:NAME"]``), on the built-in offline
backend, which calls a tool when the user writes ``use TOOL {json}``.

The servers are real and started by the tests: ``mcp-server-time`` (PyPI) and
``@modelcontextprotocol/server-everything`` (npm) over stdio, ``flaky_server.py`` (made with
the SDK; it can crash in the middle of a call) over stdio and streamable HTTP, and servers
that are down, missing, or that answer garbage.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import agent_plugin_mcp
import anyio
import pytest
from conftest import (
    MODULES,
    TESTS,
    framework_command,
    framework_env,
    free_port,
    node_script,
)

from framework import JobEvent, JobStatus, LLMWorker, WorkerRunner
from framework.llm.tools import TOOL_NAME

EVERYTHING = "@modelcontextprotocol/server-everything/dist/index.js"
GARBAGE = "import sys\nfor line in sys.stdin:\n    print('garbage, not JSON-RPC', flush=True)\n"


def _ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def chat(runner: WorkerRunner, worker: str, text: str) -> tuple[str, list[Any]]:
    """Run one job; its reply and its updates. The job must complete."""
    with anyio.fail_after(30):
        async with runner.job(worker, payload=_ask(text)) as job:
            updates = [event.data async for event in job if event.type == JobEvent.UPDATE]
    assert job.status == JobStatus.COMPLETED
    assert job.response is not None
    reply: str = job.response["message"]["content"]
    return reply, updates


class FlakyHttp:
    """``flaky_server.py`` over streamable HTTP on a free port: it can be stopped and
    started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(TESTS / "flaky_server.py"), str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "flaky_server.py did not serve HTTP"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def flaky_http() -> Iterator[FlakyHttp]:
    server = FlakyHttp()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def runner(flaky_http: FlakyHttp) -> AsyncIterator[WorkerRunner]:
    """One runner for the module, with its MCP servers and a worker per case."""
    down = free_port()  # nothing listens there
    python = sys.executable
    runner = WorkerRunner(plugins=[agent_plugin_mcp])
    node = shutil.which("node")
    if node is not None and (MODULES / EVERYTHING).exists():  # else its tests skip (or fail)
        agent_plugin_mcp.add_servers(
            runner, {"everything": {"command": [node, str(MODULES / EVERYTHING), "stdio"]}}
        )
    agent_plugin_mcp.add_servers(
        runner,
        {
            "time": {"command": [python, "-m", "mcp_server_time"]},
            "flaky": {"command": [python, str(TESTS / "flaky_server.py")]},
            "flakyhttp": {"url": flaky_http.url, "timeout": 5},
            "down": {"url": f"http://127.0.0.1:{down}/mcp"},
            "missing": {"command": ["no-such-mcp-server-program"]},
            "garbage": {"command": [python, "-c", GARBAGE], "startup_timeout": 1},
            "exits": {"command": [python, "-c", "pass"]},
        },
    )
    for name, tools in {
        "bot": ["mcp:time"],
        "everything-bot": ["mcp:everything"],
        "flaky-bot": ["mcp:flaky"],
        "http-bot": ["mcp:flakyhttp"],
        "down-bot": ["mcp:down", "mcp:missing", "mcp:time"],
        "garbage-bot": ["mcp:garbage"],
        "exits-bot": ["mcp:exits"],
    }.items():
        await runner.add_worker(LLMWorker(name, tools=tools))
    async with runner:
        yield runner
    with pytest.raises(RuntimeError, match="add its MCP servers before it starts"):
        agent_plugin_mcp.add_servers(runner, {})


@pytest.mark.anyio
async def test_the_tools_of_mcp_server_time(runner: WorkerRunner) -> None:
    reply, updates = await chat(runner, "bot", 'use time_get_current_time {"timezone": "UTC"}')
    assert updates == []
    answer = json.loads(reply.removeprefix("time_get_current_time returned ").removesuffix("."))
    assert answer["timezone"] == "UTC"
    assert re.match(r"\d{4}-\d\d-\d\dT", answer["datetime"])


@pytest.mark.anyio
async def test_the_tools_of_server_everything_two_in_one_turn(runner: WorkerRunner) -> None:
    node_script(EVERYTHING)  # skips (fails under CI) without it
    reply, _ = await chat(
        runner,
        "everything-bot",
        'use everything_get-sum {"a": 2, "b": 3} and use everything_echo {"message": "hi"}',
    )
    assert "everything_get-sum returned" in reply and "5" in reply
    assert "everything_echo returned Echo: hi." in reply


@pytest.mark.anyio
async def test_tools_are_offered_under_names_openai_servers_accept(runner: WorkerRunner) -> None:
    from agent_plugin_mcp._source import McpToolSource

    node_script(EVERYTHING)  # skips (fails under CI) without it
    worker = runner.workers["everything-bot"]
    assert isinstance(worker, LLMWorker)
    with anyio.fail_after(20):
        specs = await McpToolSource().tools("everything", worker)
    names = {spec.name for spec in specs}
    assert {"everything_echo", "everything_get-sum"} <= names
    assert all(TOOL_NAME.match(name) for name in names)
    echo = next(spec for spec in specs if spec.name == "everything_echo")
    assert echo.parameters["required"] == ["message"]
    assert echo.description.endswith("(MCP server 'everything')")


@pytest.mark.anyio
async def test_a_server_that_crashes_mid_call_fails_the_call_and_is_started_again(
    runner: WorkerRunner,
) -> None:
    first, _ = await chat(runner, "flaky-bot", "use flaky_pid")
    crashed, _ = await chat(runner, "flaky-bot", "use flaky_crash")
    again, _ = await chat(runner, "flaky-bot", "use flaky_pid")
    assert "ServerUnavailable: the MCP server 'flaky' closed the connection" in crashed
    assert "it is started again on the next call" in crashed
    pid_before = json.loads(first.removeprefix("flaky_pid returned ").removesuffix("."))["pid"]
    pid_after = json.loads(again.removeprefix("flaky_pid returned ").removesuffix("."))["pid"]
    assert pid_after != pid_before  # a new process


@pytest.mark.anyio
async def test_a_server_that_goes_down_fails_the_calls_until_it_is_back(
    runner: WorkerRunner, flaky_http: FlakyHttp
) -> None:
    first, _ = await chat(runner, "http-bot", "use flakyhttp_pid")
    assert first.startswith("flakyhttp_pid returned {")
    flaky_http.stop()
    try:
        down, updates = await chat(runner, "http-bot", "use flakyhttp_pid")
    finally:
        flaky_http.start()
    assert updates == []  # the tools it listed before are still offered
    assert "flakyhttp_pid returned" in down and "ServerUnavailable" in down
    assert "the MCP server 'flakyhttp'" in down
    back, _ = await chat(runner, "http-bot", "use flakyhttp_pid")
    assert back.startswith("flakyhttp_pid returned {")


@pytest.mark.anyio
async def test_servers_never_reached_cost_only_their_tools_with_a_warning(
    runner: WorkerRunner,
) -> None:
    reply, updates = await chat(runner, "down-bot", 'use time_get_current_time {"timezone": "UTC"}')
    assert reply.startswith("time_get_current_time returned {")  # the other server works
    warnings = {update["tools"]: update["warning"] for update in updates}
    assert set(warnings) == {"mcp:down", "mcp:missing"}
    assert "the MCP server 'down' (url http://127.0.0.1:" in warnings["mcp:down"]
    assert "is unavailable" in warnings["mcp:down"]
    assert (
        "the MCP server 'missing' (command no-such-mcp-server-program) cannot be started"
        in (warnings["mcp:missing"])
    )
    # The model was not offered their tools.
    unknown, _ = await chat(runner, "down-bot", "use down_anything")
    assert "I have no tool named down_anything" in unknown


@pytest.mark.anyio
async def test_a_server_that_sends_garbage_is_left_out_in_time(
    runner: WorkerRunner, caplog: pytest.LogCaptureFixture
) -> None:
    start = anyio.current_time()
    reply, updates = await chat(runner, "garbage-bot", "hello")
    assert anyio.current_time() - start < 10
    assert reply == "You said: hello"
    (warning,) = updates
    assert warning["tools"] == "mcp:garbage"
    assert "the MCP server 'garbage'" in warning["warning"]
    # Each line that is not JSON-RPC is one warning naming the server and the line, not
    # the SDK's traceback.
    records = [record for record in caplog.records if record.name == "mcp.client.stdio"]
    assert records
    for record in records:
        assert record.exc_info is None and record.levelname == "WARNING"
        assert record.getMessage().startswith(
            "the MCP server 'garbage' wrote a line that is not JSON-RPC to its stdout"
        )
        assert record.getMessage().endswith(": 'garbage, not JSON-RPC'")


@pytest.mark.anyio
async def test_a_server_that_exits_at_once_says_so(runner: WorkerRunner) -> None:
    reply, updates = await chat(runner, "exits-bot", "hello")
    assert reply == "You said: hello"
    (warning,) = updates
    assert warning["tools"] == "mcp:exits"
    assert "the MCP server 'exits' (command " in warning["warning"]
    assert (
        "closed the connection before answering its handshake (did it exit at once?"
        in (warning["warning"])
    )


def test_framework_run_gives_configured_servers_to_configured_workers(tmp_path: Path) -> None:
    config = tmp_path / "framework.toml"
    config.write_text(
        '[[workers]]\ntype = "assistant"\nname = "bot"\n[workers.config]\ntools = ["mcp:time"]\n'
        f"[plugins.mcp.servers.time]\ncommand = [{json.dumps(sys.executable)}, "
        '"-m", "mcp_server_time"]\n'
    )
    payload = json.dumps(_ask('use time_get_current_time {"timezone": "Asia/Tokyo"}'))
    done = subprocess.run(
        [
            *framework_command(),
            *("-p", "mcp", "run", "--config", str(config), "--job", "bot"),
            *("--payload", payload, "--timeout", "30"),
        ],
        capture_output=True,
        text=True,
        env=framework_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "time_get_current_time returned" in done.stdout
    assert "Asia/Tokyo" in done.stdout


def test_a_tools_entry_for_a_server_that_is_not_configured_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "framework.toml"
    config.write_text(
        '[[workers]]\ntype = "assistant"\n[workers.config]\ntools = ["mcp:nope"]\n'
        '[plugins.mcp.servers.time]\ncommand = ["mcp-server-time"]\n'
    )
    done = subprocess.run(
        [*framework_command(), "-p", "mcp", "config", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        env=framework_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "workers.0.config.tools.0: 'mcp:nope': no MCP server 'nope' is configured " in (
        done.stderr
    )
    assert "(configured: time)" in done.stderr
