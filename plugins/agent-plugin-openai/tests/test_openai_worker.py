"""The ``openai`` backend behind an ``LLMWorker`` on a real runner: the whole tool loop over
HTTP to the test server, and failures ending the job ``ERROR`` with the backend's message."""

from __future__ import annotations

import json
import logging
from typing import Any

import agent_plugin_openai
import anyio
import pytest
from conftest import KEY
from openai_server import (
    OpenAIServer,
    Reply,
    call,
    delta,
    error_reply,
    event,
    text_reply,
    tool_reply,
)

from framework import Event, JobError, JobEvent, JobStatus, LLMWorker, WorkerRunner, tool
from framework.config import LLMConfig
from framework.testing import MemoryPublisher, build_runner, make_host

TIMEOUT = 5


class Forecaster(LLMWorker):
    """An LLM worker with one tool."""

    default_instructions = "You forecast the weather."

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.asked: list[str] = []

    @tool
    async def weather(self, city: str) -> dict[str, str]:
        """The weather in a city.

        Args:
            city: the city's name.
        """
        self.asked.append(city)
        return {"city": city, "sky": "clear"}


def settings(server_or_url: OpenAIServer | str, **more: Any) -> dict[str, Any]:
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    return {"base_url": url, "model": "test-model", "api_key": KEY, "backoff": 0.01, **more}


async def chat(runner: WorkerRunner, text: str) -> tuple[list[Any], dict[str, Any]]:
    """Send one user message to ``forecaster``: the streamed items and the response."""
    payload = {"messages": [{"role": "user", "content": text}]}
    async with runner.job("forecaster", payload=payload) as job:
        items = [e.data async for e in job if e.type == JobEvent.STREAM_DATA]
    assert job.response is not None
    return items, job.response


@pytest.mark.anyio
async def test_the_tool_loop_over_http(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(
            tool_reply(
                call(0, "", id="call_w1", name="weather"),
                call(0, '{"city": '),
                call(0, '"Paris"}'),
                tokens=(20, 5),
            ),
            text_reply("It is ", "clear in ", "Paris.", tokens=(40, 6)),
        )
        events = MemoryPublisher()
        worker = Forecaster("forecaster", backend="openai", backend_options=settings(server))
        runner = await build_runner(make_host(agent_plugin_openai), events)
        await runner.add_worker(worker)
        async with runner:
            items, response = await chat(runner, "Weather in Paris?")

        # Deltas that arrive in one network read go out as one chunk; the text is the same.
        assert "".join(items) == "It is clear in Paris."
        assert 1 <= len(items) <= 3
        assert response["message"] == {"role": "assistant", "content": "It is clear in Paris."}
        assert response["usage"] == {
            "prompt_tokens": 60,
            "completion_tokens": 11,
            "total_tokens": 71,
            "cached_tokens": None,
            "reasoning_tokens": None,
        }
        assert response["rounds"] == 2
        assert worker.asked == ["Paris"]

        first, second = (r.body for r in server.requests)
        assert first["messages"] == [
            {"role": "system", "content": "You forecast the weather."},
            {"role": "user", "content": "Weather in Paris?"},
        ]
        [schema] = first["tools"]
        assert schema["function"]["name"] == "weather"
        assert schema["function"]["parameters"]["properties"]["city"]["type"] == "string"
        # The second request carries the assistant's tool call and the tool's result.
        assistant, result = second["messages"][2:]
        assert assistant["tool_calls"] == [
            {
                "id": "call_w1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
            }
        ]
        assert result["role"] == "tool" and result["tool_call_id"] == "call_w1"
        assert json.loads(result["content"]) == {"city": "Paris", "sky": "clear"}

        tool_events = [e for e in events.events if e.event == Event.TOOL_EXECUTION]
        assert len(tool_events) == 2  # the call, and its result
        assert all(KEY not in e.model_dump_json() for e in events.events)


@pytest.mark.anyio
async def test_several_tool_calls_in_one_turn(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(
            tool_reply(
                call(0, '{"city": "Oslo"}', id="call_a", name="weather"),
                call(1, '{"city":', id="call_b", name="weather"),
                call(1, ' "Lima"}'),
            ),
            text_reply("Both clear."),
        )
        worker = Forecaster("forecaster", backend="openai", backend_options=settings(server))
        runner = WorkerRunner(plugins=[agent_plugin_openai])
        await runner.add_worker(worker)
        async with runner:
            _, response = await chat(runner, "Oslo and Lima?")
        assert response["message"]["content"] == "Both clear."
        assert sorted(worker.asked) == ["Lima", "Oslo"]
        results = server.requests[1].body["messages"][3:]
        assert [r["tool_call_id"] for r in results] == ["call_a", "call_b"]
        assert [json.loads(r["content"])["city"] for r in results] == ["Oslo", "Lima"]


@pytest.mark.anyio
async def test_the_backend_from_the_run_configuration(server: OpenAIServer) -> None:
    # [llm] backend = "openai" with [llm.options]: a worker that names no backend uses it.
    with anyio.fail_after(TIMEOUT):
        server.script(text_reply("configured"))
        runner = WorkerRunner(plugins=[agent_plugin_openai])
        runner.llm_config = LLMConfig(backend="openai", options=settings(server))
        await runner.add_worker(Forecaster("forecaster"))
        async with runner:
            items, _ = await chat(runner, "hi")
        assert items == ["configured"]
        assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def _failed_job(
    runner_plugins: list[Any], options: dict[str, Any], events: MemoryPublisher | None = None
) -> JobError:
    worker = Forecaster("forecaster", backend="openai", backend_options=options)
    runner = WorkerRunner(plugins=[*runner_plugins, *([events] if events else [])])
    await runner.add_worker(worker)
    async with runner:
        with pytest.raises(JobError) as info:
            await chat(runner, "Weather in Paris?")
    return info.value


@pytest.mark.anyio
async def test_a_stream_cut_in_the_middle_ends_the_job_error(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(delta("It is")), event(delta(" cle"))], end="cut"))
        error = await _failed_job([agent_plugin_openai], settings(server))
        assert error.status == JobStatus.ERROR
        assert error.response["error"].startswith(
            f"OpenAIBackendError: the reply from {server.base_url} was cut off before it was "
            "complete ("
        )


@pytest.mark.anyio
async def test_a_stalled_stream_ends_the_job_error(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(delta("It is"))], end="stall"))
        error = await _failed_job([agent_plugin_openai], settings(server, timeout=0.3))
        assert error.status == JobStatus.ERROR
        assert "stalled: nothing came for 0.3 s" in error.response["error"]


@pytest.mark.anyio
async def test_a_refused_connection_ends_the_job_error(refused_url: str) -> None:
    with anyio.fail_after(TIMEOUT):
        error = await _failed_job([agent_plugin_openai], settings(refused_url))
        assert error.status == JobStatus.ERROR
        assert f"cannot connect to {refused_url}: is the server running?" in str(
            error.response["error"]
        )


@pytest.mark.anyio
async def test_errors_through_the_runner_never_show_the_key(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(TIMEOUT):
        caplog.set_level(logging.DEBUG)
        events = MemoryPublisher()
        server.script(error_reply(401, f"Incorrect API key provided: {KEY}"))
        error = await _failed_job([agent_plugin_openai], settings(server), events)
        assert error.status == JobStatus.ERROR
        assert "refused the API key (HTTP 401; the key came from" in error.response["error"]
        server.script(error_reply(400, f"bad request from {KEY}"))
        second = await _failed_job([agent_plugin_openai], settings(server), events)
        for failed in (error, second):
            assert KEY not in str(failed) and KEY not in json.dumps(failed.response)
        assert events.events and all(KEY not in e.model_dump_json() for e in events.events)
        assert "job" in caplog.text  # the worker logged the job's exception
        assert KEY not in caplog.text


@pytest.mark.anyio
async def test_a_job_timeout_hangs_up_on_the_server(server: OpenAIServer) -> None:
    # The requester gives up: the job is cancelled and the HTTP connection closed.
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(delta("It is"))], end="stall"))
        worker = Forecaster("forecaster", backend="openai", backend_options=settings(server))
        runner = WorkerRunner(plugins=[agent_plugin_openai])
        await runner.add_worker(worker)
        async with runner:
            payload = {"messages": [{"role": "user", "content": "hi"}]}
            with pytest.raises(JobError) as info:
                async with runner.job("forecaster", payload=payload, timeout=0.3) as job:
                    async for _ in job:
                        pass
            assert info.value.timed_out
            while server.hangups < 1:
                await anyio.sleep(0.01)
