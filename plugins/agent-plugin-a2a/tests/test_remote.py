"""Remote A2A agents as workers: ``RemoteAgent`` against agents written with the a2a-sdk
server (``remote_agents``), against this plugin's own server (``framework run``), and
configured with ``[plugins.a2a.remote.NAME]`` for ``framework run --job`` and an LLM
worker's tool loop."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from agent_plugin_a2a import A2APlugin, RemoteAgent
from agent_plugin_a2a._settings import A2ASettings
from conftest import FRAMEWORK, TOKEN, Runner, environment, start_runner, stop
from remote_agents import Agents, serving_agents

from framework import JobError, JobStatus, WorkerRunner
from framework.config import ConfigError, parse_config

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def agents() -> Iterator[Agents]:
    with serving_agents() as served:
        yield served


@asynccontextmanager
async def remote(url: str, **config: Any) -> AsyncIterator[WorkerRunner]:
    """A runner with one ``RemoteAgent`` named ``far``."""
    async with WorkerRunner("near") as runner:
        await runner.add_worker(RemoteAgent("far", config={"url": url, **config}))
        yield runner


async def ask(
    runner: WorkerRunner, payload: dict[str, Any], name: str | None = None
) -> tuple[list[tuple[str, Any]], str, dict[str, Any]]:
    """Events, status and response of one job to ``far``."""
    events: list[tuple[str, Any]] = []
    try:
        async with runner.job("far", name=name, payload=payload) as job:
            async for event in job:
                events.append((event.type, event.data))
    except JobError as exc:
        return events, exc.status, exc.response
    assert job.status is not None and job.response is not None
    return events, job.status, job.response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ----------------------------------------------------------------- a remote a2a-sdk agent


async def test_a_remote_agents_stream_comes_through_as_updates_and_chunks(agents: Agents) -> None:
    with anyio.fail_after(20):
        async with remote(agents.good + "/.well-known/agent-card.json") as runner:
            events, status, response = await ask(runner, {"text": "stream"})
            described = runner.registry.get("far")
    assert status == JobStatus.COMPLETED
    assert events == [
        ("update", {"state": "working", "text": "thinking", "data": [{"step": 1}]}),
        ("stream_start", {}),
        ("stream_data", "Hello"),
        ("stream_data", " world"),
        ("stream_data", {"k": 1}),
        ("stream_end", {}),
    ]
    assert response["text"] == "Hello world"
    assert response["data"] == [{"k": 1}]
    assert response["state"] == "completed"
    assert response["task_id"] and response["context_id"]
    assert agents.seen.messages[-1]["text"] == "stream"
    # The card describes the worker: the default job and one job per skill.
    assert described is not None
    jobs = {job.name: job for job in described.jobs}
    assert jobs[None].description == "A test agent that echoes."
    assert jobs["echo"].description == "Echo the text."


async def test_an_agent_that_does_not_stream_answers_the_same(agents: Agents) -> None:
    with anyio.fail_after(20):
        async with remote(agents.base + "/plain") as runner:
            events, status, response = await ask(runner, {"text": "stream"})
    assert status == JobStatus.COMPLETED
    assert [data for kind, data in events if kind == "stream_data"] == [
        "Hello",
        " world",
        {"k": 1},
    ]
    assert response["text"] == "Hello world" and response["data"] == [{"k": 1}]


async def test_the_payload_and_job_name_become_the_message(agents: Agents) -> None:
    with anyio.fail_after(20):
        async with remote(agents.good, headers={"x-trace": "t1"}, token="remote-token") as runner:
            _, status, response = await ask(runner, {"text": "hi", "n": 2}, name="echo")
            _, _, only_text = await ask(runner, {"text": "plain"})
            _, _, reply = await ask(runner, {"text": "reply"})
    assert status == JobStatus.COMPLETED
    sent, plain, _ = agents.seen.messages[-3:]
    assert sent == {"text": "hi", "data": [{"text": "hi", "n": 2}], "metadata": {"skill": "echo"}}
    assert plain == {"text": "plain", "data": [], "metadata": {}}
    assert response["text"] == "echo: hi" and response["data"] == [{"text": "hi", "n": 2}]
    assert only_text["text"] == "echo: plain"
    assert reply == {
        "text": "just a message",
        "data": [],
        "task_id": None,
        "context_id": reply["context_id"],
        "state": "completed",
    }
    headers = agents.seen.headers[-1]
    assert headers["authorization"] == "Bearer remote-token"
    assert headers["x-trace"] == "t1"


async def test_a_failed_task_or_one_asking_for_input_fails_the_job(agents: Agents) -> None:
    with anyio.fail_after(20):
        async with remote(agents.good) as runner:
            _, failed, failure = await ask(runner, {"text": "fail"})
            _, waiting, question = await ask(runner, {"text": "input"})
    assert failed == JobStatus.FAILED
    assert failure["error"] == (
        f"remote A2A agent 'far' at {agents.good}: the remote task ended failed: no can do"
    )
    assert failure["state"] == "failed"
    assert waiting == JobStatus.FAILED
    assert "asks for input, which a job cannot give: which one?" in question["error"]


async def test_a_remote_that_hangs_times_out_and_its_task_is_cancelled(agents: Agents) -> None:
    with anyio.fail_after(20):
        async with remote(agents.good, timeout=1) as runner:
            before = len(agents.seen.cancelled)
            started = anyio.current_time()
            _, status, response = await ask(runner, {"text": "hang"})
            took = anyio.current_time() - started
            # Cancelled here (the requester's timeout): cancelled there too.
            with pytest.raises(JobError) as caught:
                async with runner.job("far", payload={"text": "hang"}, timeout=0.3):
                    pass
            deadline = anyio.current_time() + 5
            while len(agents.seen.cancelled) < before + 2 and anyio.current_time() < deadline:
                await anyio.sleep(0.02)
    assert status == JobStatus.ERROR
    assert response["error"].startswith(
        f"RemoteAgentError: remote A2A agent 'far' at {agents.good}: no answer within 1 s"
    )
    assert 1 <= took < 5
    assert caught.value.status == JobStatus.CANCELLED
    assert len(agents.seen.cancelled) == before + 2


async def test_a_remote_that_is_down_or_answers_garbage_ends_the_job_error(agents: Agents) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    outcomes = {}
    with anyio.fail_after(20):
        for url in (down, agents.base + "/garbage-card", agents.base + "/garbage-rpc"):
            async with remote(url, timeout=5) as runner:
                outcomes[url] = await ask(runner, {"text": "hi"})
    for url, (_, status, response) in outcomes.items():
        assert status == JobStatus.ERROR, response
        assert f"remote A2A agent 'far' at {url}: " in response["error"]
    assert "cannot read its agent card at " + down in outcomes[down][2]["error"]
    assert "cannot read its agent card" in outcomes[agents.base + "/garbage-card"][2]["error"]
    assert "JSON-RPC" in outcomes[agents.base + "/garbage-rpc"][2]["error"]


# ----------------------------------------------------------------- our own server, remotely


async def test_a_runner_serving_a2a_is_a_remote_agent_for_another(served: Runner) -> None:
    with anyio.fail_after(20):
        async with remote(served.url, token=TOKEN) as runner:
            reversed_, status, response = await ask(
                runner, {"text": "stressed"}, name="tools.reverse"
            )
            events, _, counted = await ask(runner, {"n": 2}, name="tools.count")
            _, refused, unknown = await ask(runner, {"text": "x"}, name="tools.nope")
            described = runner.registry.get("far")
    assert status == JobStatus.COMPLETED
    assert response["text"] == "desserts"
    assert response["data"] == [{"text": "desserts"}]
    # The remote's response artifact is the job's response, not chunks too.
    assert not [kind for kind, _ in reversed_ if kind == "stream_data"]
    assert events[0] == ("update", {"state": "working", "data": [{"counting": 2}]})
    assert [data for kind, data in events if kind == "stream_data"] == ["word 0", {"i": 1}]
    assert counted["data"] == [{"chunks": 2}]
    assert refused == JobStatus.FAILED  # the remote refused the message: bad input
    assert unknown["error"].startswith(
        f"remote A2A agent 'far' at {served.url} refused the message: InvalidParamsError: "
        "unknown skill 'tools.nope'"
    )
    assert described is not None
    jobs = {job.name: job for job in described.jobs}  # from the extended card
    assert jobs["tools.reverse"].input_schema is not None
    assert jobs["tools.reverse"].input_schema["properties"]["text"]["type"] == "string"
    # Numbers in the schemas come back as they were (protocol buffers made them doubles).
    assert jobs["tools.repeat"].input_schema is not None
    times = jobs["tools.repeat"].input_schema["properties"]["times"]
    assert json.dumps(times, sort_keys=True) == json.dumps(
        {"default": 2, "maximum": 10, "minimum": 0, "title": "Times", "type": "integer"},
        sort_keys=True,
    )


async def test_a_job_without_a_name_to_a_runner_says_to_name_a_skill(
    served: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(20):
        async with remote(served.url, token=TOKEN) as runner:
            _, status, response = await ask(runner, {"text": "x"})
            # A runner whose card does not say so (no skill-schemas extension): the remote
            # refuses the message, and the error says what to pass.
            monkeypatch.setattr(RemoteAgent, "is_runner", property(lambda self: False))
            _, refused, refusal = await ask(runner, {"text": "x"})
    assert status == JobStatus.FAILED
    assert response["error"].startswith(
        f"remote A2A agent 'far' at {served.url} is a runner with several skills (assistant, "
        "tools.reverse, "
    )
    assert response["error"].endswith(
        "and a job to it must name one: pass the skill as the job's name "
        "(framework run --job far --name SKILL; name=SKILL in code)"
    )
    assert "tools.repeat" in response["skills"]
    assert refused == JobStatus.FAILED
    assert refusal["error"].startswith(
        f"remote A2A agent 'far' at {served.url} refused the message: InvalidParamsError: "
        'the message names no skill: set "skill" in its metadata'
    )
    assert refusal["error"].endswith(
        " (the job had no name, so the message named no skill: pass the skill as the job's "
        "name, framework run --job far --name SKILL)"
    )


async def test_a_job_without_a_name_to_a_runner_with_one_skill_goes_to_it(
    tmp_path: Path,
) -> None:
    single = start_runner(tmp_path, 'name = "single"\n\n[[workers]]\ntype = "echo"\n')
    try:
        with anyio.fail_after(20):
            async with remote(single.url) as runner:
                events, status, response = await ask(runner, {"text": "hello"})
    finally:
        stop(single.process)
    assert status == JobStatus.COMPLETED, response
    assert not [kind for kind, _ in events if kind == "stream_data"]
    assert response["data"] == [{"text": "hello"}]  # the echo worker's answer


async def test_a_wrong_token_says_to_check_the_remotes_token(served: Runner) -> None:
    with anyio.fail_after(20):
        async with remote(served.url, token="wrong-token-0123456789") as runner:
            _, status, response = await ask(runner, {"text": "x"}, name="tools.reverse")
    assert status == JobStatus.ERROR
    assert response["error"] == (
        f"RemoteAgentError: remote A2A agent 'far' at {served.url}: it refused the credentials "
        "(HTTP 401): check the token and headers of [plugins.a2a.remote.far]"
    )


# ----------------------------------------------------------------- configured remotes


def test_remote_settings_are_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        A2ASettings.from_config({"remote": {"far": {"url": "ftp://x"}}})
    assert "plugins.a2a.remote.far.url" in str(caught.value)
    assert "not an http:// or https:// URL" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        A2ASettings.from_config({"remote": {"far": {"url": "http://x", "timout": 3}}})
    assert "plugins.a2a.remote.far.timout: unknown key" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        A2ASettings.from_config({"remote": {"far": {"url": "http://x", "timeout": 0}}})
    assert "plugins.a2a.remote.far.timeout" in str(caught.value)


async def test_a_remote_named_like_another_worker_is_a_configuration_error() -> None:
    config = parse_config({"plugins": {"a2a": {"remote": {"far": {"url": "http://x"}}}}}, "t")
    runner = WorkerRunner()
    await runner.add_worker(RemoteAgent("far", config={"url": "http://y"}))
    with pytest.raises(ConfigError) as caught:
        await A2APlugin().configure_runner(runner, config)
    assert "plugins.a2a.remote.far: " in str(caught.value)
    assert "far" in caught.value.reason


def run_job(folder: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert FRAMEWORK is not None
    path = folder / "framework.toml"
    path.write_text(config)
    return subprocess.run(
        [FRAMEWORK, "run", "--config", str(path), *args, "--json"],
        cwd=folder,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_framework_run_job_and_an_llm_tool_loop_use_a_configured_remote(
    agents: Agents, tmp_path: Path
) -> None:
    config = f"""\
workers = [{{ type = "assistant" }}]

[llm]
options = {{ delay = 0 }}

[plugins.a2a.remote.far]
url = "{agents.good}"
timeout = 10
"""
    direct = run_job(tmp_path, config, "--job", "far", "--payload", '{"text": "stream"}')
    assert direct.returncode == 0, direct.stderr
    lines = [json.loads(line) for line in direct.stdout.splitlines()]
    assert {"type": "stream_data", "data": "Hello"} in lines
    assert lines[-1]["response"]["text"] == "Hello world"
    ask_llm = {"messages": [{"role": "user", "content": 'use far {"text": "from the llm"}'}]}
    tool = run_job(tmp_path, config, "--job", "assistant", "--payload", json.dumps(ask_llm))
    assert tool.returncode == 0, tool.stderr
    answer = json.loads(tool.stdout.splitlines()[-1])["response"]["message"]["content"]
    assert "far returned" in answer and "echo: from the llm" in answer
    bad = run_job(tmp_path, config.replace(agents.good, "nowhere"), "--job", "far")
    assert bad.returncode == 2
    assert "plugins.a2a.remote.far.url" in bad.stderr
