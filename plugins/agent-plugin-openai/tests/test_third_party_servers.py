"""The backend against OpenAI-compatible servers we did not write: LLMock (PyPI; fault
injection: finish reasons, cut and empty streams, dropped connections, 429 with
``retry-after-ms``, broken tool calls, the Responses API), ``@dwmkerr/mock-llm`` (npm;
errors inside a 200 stream, ``content: null``, a 500 for streamed tool calls) and
``openai-mock-api`` (npm; tool calls without ``index``, an API key it checks)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import agent_plugin_openai
import anyio
import pytest
from agent_plugin_openai.backend import OpenAIBackend, OpenAIBackendError, OpenAIOptions
from conftest import KEY
from llmock.scenarios import Reply, StreamFault, ToolCall
from third_party import OPENAI_MOCK_API_KEY, MockLLM, OpenAIMockAPI, completion

from framework import JobError, JobEvent, JobStatus, LLMWorker, tool
from framework.llm.backend import Chunk, Finish, TextDelta, Usage
from framework.testing import build_runner, make_host

TIMEOUT = 10
HELLO = [{"role": "user", "content": "hello"}]


class Forecaster(LLMWorker):
    """An LLM worker with one tool, which notes the cities it was asked about."""

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


def settings(url: str, **more: Any) -> dict[str, Any]:
    return {"base_url": url, "model": "test-model", "api_key": KEY, "backoff": 0.01, **more}


async def collect(url: str, **more: Any) -> list[Chunk]:
    opts = OpenAIOptions(**settings(url, **more))
    return [chunk async for chunk in OpenAIBackend().stream(HELLO, [], opts)]


async def failure(url: str, **more: Any) -> OpenAIBackendError:
    with pytest.raises(OpenAIBackendError) as info:
        await collect(url, **more)
    return info.value


async def ask(url: str, text: str, **more: Any) -> tuple[Any, Forecaster]:
    """One job to a ``Forecaster`` on the backend: the job (or its JobError), the worker."""
    worker = Forecaster("forecaster", backend="openai", backend_options=settings(url, **more))
    runner = await build_runner(make_host(agent_plugin_openai))
    await runner.add_worker(worker)
    payload = {"messages": [{"role": "user", "content": text}]}
    async with runner:
        try:
            async with runner.job("forecaster", payload=payload, timeout=TIMEOUT) as job:
                job.events = [e async for e in job]  # type: ignore[attr-defined]
        except JobError as error:
            return error, worker
    return job, worker


def text(chunks: list[Chunk]) -> str:
    return "".join(c.text for c in chunks if isinstance(c, TextDelta))


# --------------------------------------------------------------------------- LLMock


@pytest.mark.anyio
async def test_llmock_arguments_cut_in_half_are_not_sent_back(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.break_tool_call("malformed_arguments")
        job, worker = await ask(llmock.base_url(), "weather in Paris?")
        assert job.status is JobStatus.COMPLETED
        assert worker.asked == []  # the cut call did not run
        second = llmock.requests[1].body
        [assistant] = [m for m in second["messages"] if m["role"] == "assistant"]
        [sent] = assistant["tool_calls"]
        assert sent["function"]["arguments"] == "{}"
        [result] = [m for m in second["messages"] if m["role"] == "tool"]
        assert "not valid JSON" in json.loads(result["content"])["error"]


@pytest.mark.anyio
async def test_llmock_length_completes_with_the_finish_reason_and_a_warning(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.add(Reply(text="Once upon a time", finish_reason="length"))
        job, _ = await ask(llmock.base_url(), "a story", max_tokens=4)
        assert job.status is JobStatus.COMPLETED
        assert job.response["finish_reason"] == "length"
        assert job.response["message"]["content"] == "Once upon a time"
        [update] = [e.data for e in job.events if e.type == JobEvent.UPDATE]
        assert update["finish_reason"] == "length"
        assert llmock.requests[0].body["max_tokens"] == 4


@pytest.mark.anyio
async def test_llmock_a_tool_call_cut_by_the_limit_is_not_run(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        call = ToolCall("weather", {"city": "Paris"})
        llmock.add(Reply(tool_calls=(call,), finish_reason="length"))
        error, worker = await ask(llmock.base_url(), "weather in Paris?")
        assert isinstance(error, JobError) and error.status is JobStatus.FAILED
        assert "in the middle of a tool call (weather" in error.response["error"]
        assert "max_tokens" in error.response["error"]
        assert worker.asked == [] and len(llmock.requests) == 1


@pytest.mark.anyio
async def test_llmock_a_cut_reply_names_the_limit_option_that_was_set(llmock: Any) -> None:
    # Told to raise max_tokens, a user of max_completion_tokens would set both: refused.
    with anyio.fail_after(TIMEOUT):
        call = ToolCall("weather", {"city": "Paris"})
        llmock.add(Reply(text="Once upon", finish_reason="length"))
        llmock.add(Reply(tool_calls=(call,), finish_reason="length"))
        job, _ = await ask(llmock.base_url(), "a story", max_completion_tokens=4)
        [update] = [e.data for e in job.events if e.type == JobEvent.UPDATE]
        assert "raise the backend's max_completion_tokens option" in update["warning"]
        error, _ = await ask(llmock.base_url(), "weather in Paris?", max_completion_tokens=4)
        assert isinstance(error, JobError) and error.status is JobStatus.FAILED
        assert "raise the backend's max_completion_tokens option" in error.response["error"]


@pytest.mark.anyio
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_llmock_a_forced_tool_choice_lets_the_model_answer_after_the_tools(
    llmock: Any, api: str
) -> None:
    # Forced every round, the model could only call tools until max_rounds.
    with anyio.fail_after(TIMEOUT):
        job, worker = await ask(
            llmock.base_url(), "weather in Paris?", tool_choice="required", api=api
        )
        assert job.status is JobStatus.COMPLETED and worker.asked
        choices = [r.body.get("tool_choice") for r in llmock.requests]
        assert choices == ["required", "auto"]


@pytest.mark.anyio
async def test_llmock_content_filter_fails_the_job(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.add(Reply(text="", finish_reason="content_filter"))
        error, _ = await ask(llmock.base_url(), "something unsafe")
        assert isinstance(error, JobError) and error.status is JobStatus.FAILED
        assert "content filter stopped the reply" in error.response["error"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["disconnect", "truncate"])
async def test_llmock_a_stream_broken_before_its_first_chunk_is_retried(
    llmock: Any, kind: str
) -> None:
    # truncate at 0: an empty 200 body; disconnect at 0: the connection drops first.
    with anyio.fail_after(TIMEOUT):
        # One behaviour of each kind per request: the reply serves both attempts.
        llmock.add(StreamFault(kind, after_chunks=0), Reply(text="second try", times=2))  # type: ignore[arg-type]
        chunks = await collect(llmock.base_url())
        assert text(chunks) == "second try"
        assert len(llmock.requests) == 2


@pytest.mark.anyio
async def test_llmock_an_empty_body_is_called_empty_not_malformed(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.add(StreamFault("truncate", after_chunks=0, times=None))
        error = await failure(llmock.base_url(), max_retries=1)
        assert "answered HTTP 200 with an empty body" in str(error)
        assert "malformed" not in str(error) and "(2 attempts)" in str(error)


@pytest.mark.anyio
async def test_llmock_a_stream_cut_after_its_first_chunk_is_not_retried(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.add(StreamFault("disconnect", after_chunks=2), Reply(text="one two three four"))
        error = await failure(llmock.base_url())
        assert "cut off before it was complete" in str(error)
        assert len(llmock.requests) == 1  # text went out: it cannot be taken back


@pytest.mark.anyio
async def test_llmock_retry_after_ms_is_honoured(
    llmock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # LLMock sends retry-after: 1 (whole seconds, as HTTP wants) and retry-after-ms: 50.
    with anyio.fail_after(TIMEOUT):
        llmock.rate_limit(times=1, retry_after=0.05)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="agent_plugin_openai"):
            chunks = await collect(llmock.base_url(), backoff=5)
        assert time.monotonic() - started < 0.8  # not the second of retry-after
        assert text(chunks)
        assert "retry 1 of 3 in 0.05 s" in caplog.text
        assert not [f for f in llmock.verdict().findings if "retry_after" in str(f)]


@pytest.mark.anyio
async def test_llmock_429_keeps_the_servers_explanation(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        explanation = "Rate limit reached for test-model: 3 requests per minute"
        llmock.fail(429, message=explanation, retry_after=0, times=2)
        error = await failure(llmock.base_url(), max_retries=1)
        assert f"(HTTP 429: {explanation})" in str(error)
        assert "still was after 2 attempts" in str(error)


@pytest.mark.anyio
async def test_llmock_usage_and_request_options(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.add(Reply(text="fine"))
        chunks = await collect(
            llmock.base_url(), seed=7, top_p=0.5, stop=["\n\n"], presence_penalty=0.1
        )
        finish, usage = chunks[-2:]
        assert finish == Finish("stop")
        assert isinstance(usage, Usage) and usage.completion_tokens == 1
        body = llmock.requests[0].body
        assert (body["seed"], body["top_p"], body["stop"], body["presence_penalty"]) == (
            7,
            0.5,
            ["\n\n"],
            0.1,
        )


@pytest.mark.anyio
async def test_llmock_not_streamed(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.add(Reply(text="all at once"))
        chunks = await collect(llmock.base_url(), stream=False)
        assert chunks[:2] == [TextDelta("all at once"), Finish("stop")]
        assert isinstance(chunks[2], Usage) and isinstance(chunks[2].completion_tokens, int)
        body = llmock.requests[0].body
        assert "stream" not in body and "stream_options" not in body


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [True, False])
async def test_llmock_the_responses_api_runs_the_tool_loop(llmock: Any, stream: bool) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.add(Reply(tool_calls=(ToolCall("weather", {"city": "Lima"}),)))
        llmock.add(Reply(text="Clear in Lima."))
        job, worker = await ask(llmock.base_url(), "weather?", api="responses", stream=stream)
        assert job.status is JobStatus.COMPLETED, job
        assert job.response["message"]["content"] == "Clear in Lima."
        assert job.response["finish_reason"] == "stop"
        assert worker.asked == ["Lima"]
        first, second = (r for r in llmock.requests)
        assert first.path == second.path == "/v1/responses"
        items = second.body["input"]
        assert items[0] == {"role": "system", "content": "You forecast the weather."}
        kinds = [item.get("type") for item in items[2:]]
        assert kinds == ["function_call", "function_call_output"]
        assert json.loads(items[2]["arguments"]) == {"city": "Lima"}
        assert items[3]["call_id"] == items[2]["call_id"]
        assert first.body["tools"][0]["name"] == "weather"  # the flat Responses form


@pytest.mark.anyio
async def test_llmock_responses_api_incomplete_is_length(llmock: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        llmock.add(Reply(text="Once upon", finish_reason="length"))
        chunks = await collect(llmock.base_url(), api="responses", max_tokens=2)
        assert text(chunks) == "Once upon"
        assert Finish("length") in chunks
        assert llmock.requests[0].body["max_output_tokens"] == 2


# --------------------------------------------------------------------------- mock-llm


@pytest.mark.anyio
async def test_mock_llm_an_error_as_the_first_event_is_retried(mock_llm: MockLLM) -> None:
    with anyio.fail_after(TIMEOUT):
        overloaded = {"error": {"message": "overloaded", "type": "server_error"}}
        mock_llm.rules(
            {"sequence": 0, "response": {"status": 503, "content": overloaded}},
            {"sequence": 1, "response": {"content": completion("back again")}},
        )
        chunks = await collect(mock_llm.base_url)
        assert text(chunks) == "back again"
        assert Finish("stop") in chunks
        assert not any(isinstance(c, Usage) for c in chunks)  # it sends none: unknown


@pytest.mark.anyio
async def test_mock_llm_an_error_event_that_blames_the_request_is_not_retried(
    mock_llm: MockLLM,
) -> None:
    with anyio.fail_after(TIMEOUT):
        bad = {"error": {"message": "Invalid 'messages'", "type": "invalid_request_error"}}
        mock_llm.rules({"response": {"status": 400, "content": bad}})
        error = await failure(mock_llm.base_url)
        assert "reported an error at the start of the reply: Invalid 'messages'" in str(error)
        assert "attempts" not in str(error)


@pytest.mark.anyio
async def test_mock_llm_its_error_text_is_shown_not_just_typeerror(mock_llm: MockLLM) -> None:
    # mock-llm cannot stream a reply whose content is null (a tool call): it answers 500
    # {"error": "TypeError", "message": "Cannot read properties of null ..."}.
    with anyio.fail_after(TIMEOUT):
        call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        mock_llm.rules({"response": {"content": completion(None, tool_calls=[call])}})
        error = await failure(mock_llm.base_url, max_retries=0)
        assert "HTTP 500: TypeError: Cannot read properties of null" in str(error)


@pytest.mark.anyio
async def test_mock_llm_tool_calls_without_streaming(mock_llm: MockLLM) -> None:
    # The same server runs the whole tool loop once the backend does not stream.
    with anyio.fail_after(TIMEOUT):
        call = {
            "id": "c1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Quito"}'},
        }
        mock_llm.rules(
            {"sequence": 0, "response": {"content": completion(None, tool_calls=[call])}},
            {"sequence": 1, "response": {"content": completion("Clear in Quito.")}},
        )
        job, worker = await ask(mock_llm.base_url, "weather in Quito?", stream=False)
        assert job.status is JobStatus.COMPLETED
        assert worker.asked == ["Quito"]
        assert job.response["message"]["content"] == "Clear in Quito."
        assert job.response["usage"]["total_tokens"] is None  # it sent no usage


# --------------------------------------------------------------------------- openai-mock-api


@pytest.mark.anyio
async def test_openai_mock_api_two_tool_calls_without_index(
    openai_mock_api: OpenAIMockAPI,
) -> None:
    with anyio.fail_after(TIMEOUT):
        job, worker = await ask(
            openai_mock_api.base_url, "weather in two cities", api_key=OPENAI_MOCK_API_KEY
        )
        assert job.status is JobStatus.COMPLETED, job
        assert sorted(worker.asked) == ["Lima", "Oslo"]
        assert job.response["message"]["content"] == "Clear in Oslo and in Lima."


@pytest.mark.anyio
async def test_openai_mock_api_an_empty_api_key_option_is_named(
    openai_mock_api: OpenAIMockAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(TIMEOUT):
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_MOCK_API_KEY)
        error = await failure(openai_mock_api.base_url, api_key="")
        assert error.status == 401
        assert 'none was sent: [llm] options api_key is ""' in str(error)
        assert "OPENAI_API_KEY is not set" not in str(error)
