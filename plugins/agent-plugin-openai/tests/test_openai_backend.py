"""The ``openai`` backend on its own: ``stream()`` iterated against the test server."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import traceback
from typing import Any

import agent_plugin_openai
import anyio
import pytest
from agent_plugin_openai.backend import OpenAIBackend, OpenAIBackendError, OpenAIOptions
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
    usage,
)
from pydantic import BaseModel, ValidationError

from framework.llm.backend import Chunk, Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from framework.testing import make_host

# Every async test body runs under a deadline: a bug makes a test fail, never hang.
TIMEOUT = 5

HELLO = [{"role": "user", "content": "hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def options(server_or_url: OpenAIServer | str, **settings: Any) -> OpenAIOptions:
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    return OpenAIOptions(**{"base_url": url, "model": "test-model", "backoff": 0.01, **settings})


async def collect(opts: OpenAIOptions, tools: list[dict[str, Any]] | None = None) -> list[Chunk]:
    return [chunk async for chunk in OpenAIBackend().stream(HELLO, tools or [], opts)]


async def failure(opts: OpenAIOptions, seen: list[Chunk] | None = None) -> OpenAIBackendError:
    """The error ``stream()`` raises; the chunks before it go to ``seen``."""
    with pytest.raises(OpenAIBackendError) as info:
        async for chunk in OpenAIBackend().stream(HELLO, [], opts):
            if seen is not None:
                seen.append(chunk)
    return info.value


# --------------------------------------------------------------------------- the plugin


def test_hook_register_llm_backends() -> None:
    host = make_host(agent_plugin_openai)
    host.collect_registrations()
    assert host.registration_errors == []
    assert host.llm_backends.names_by_plugin("agent_plugin_openai") == ["openai"]
    backend = host.llm_backends.resolve("openai")
    assert isinstance(backend, OpenAIBackend)
    assert backend.name == "openai"
    assert backend.options_model is OpenAIOptions


def test_plugin_module_is_light() -> None:
    # The entry-point module is imported for every `framework` command, --help included:
    # it must not pull in the backend, httpx or the runtime.
    code = (
        "import sys, agent_plugin_openai; "
        "heavy = {'agent_plugin_openai.backend', 'httpx', 'anyio', 'pydantic'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- options


def test_options_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    opts = OpenAIOptions()
    assert opts.base_url == "https://api.openai.com/v1"
    assert opts.model == "gpt-4o-mini"
    assert opts.api_key.get_secret_value() == ""
    assert (opts.max_retries, opts.temperature) == (3, None)
    monkeypatch.setenv("OPENAI_API_KEY", f"{KEY}\n")
    assert OpenAIOptions().api_key.get_secret_value() == KEY
    # The options win over the environment; an empty key means "send none".
    assert OpenAIOptions.model_validate({"api_key": ""}).api_key.get_secret_value() == ""
    other = OpenAIOptions.model_validate({"api_key": "sk-other"})
    assert other.api_key.get_secret_value() == "sk-other"


def test_options_validation() -> None:
    assert OpenAIOptions(base_url=" http://localhost:11434/v1/ ").base_url == (
        "http://localhost:11434/v1"
    )
    with pytest.raises(ValidationError, match="base_url must start with http"):
        OpenAIOptions(base_url="localhost:8000/v1")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        OpenAIOptions(modle="gpt-4o")  # type: ignore[call-arg]
    for bad in ({"timeout": 0}, {"max_retries": -1}, {"temperature": 3}, {"model": ""}):
        with pytest.raises(ValidationError):
            OpenAIOptions(**bad)


def test_options_hide_the_key() -> None:
    opts = OpenAIOptions.model_validate({"api_key": KEY})
    for shown in (repr(opts), str(opts), opts.model_dump_json(), str(opts.model_dump())):
        assert KEY not in shown


# --------------------------------------------------------------------------- replies


@pytest.mark.anyio
async def test_plain_reply_streams_in_chunks(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(text_reply("Hel", "lo, ", "world", tokens=(9, 4)))
        chunks = await collect(options(server, api_key=KEY))
        assert chunks == [
            TextDelta("Hel"),
            TextDelta("lo, "),
            TextDelta("world"),
            Finish("stop"),
            Usage(prompt_tokens=9, completion_tokens=4),
        ]
        [request] = server.requests
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["accept"] == "text/event-stream"
        assert request.body == {
            "model": "test-model",
            "messages": HELLO,
            "stream": True,
            "stream_options": {"include_usage": True},
        }


@pytest.mark.anyio
async def test_no_key_sends_no_authorization(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(text_reply("hi"))
        await collect(options(server))
        assert "authorization" not in server.requests[0].headers


@pytest.mark.anyio
async def test_key_from_the_environment(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(TIMEOUT):
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        server.script(text_reply("hi"))
        await collect(options(server))
        assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
async def test_tools_and_temperature_are_sent(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(text_reply("hi"))
        await collect(options(server, temperature=0.2), tools=[WEATHER_TOOL])
        body = server.requests[0].body
        assert body["tools"] == [WEATHER_TOOL]
        assert body["temperature"] == 0.2


@pytest.mark.anyio
async def test_tool_call_split_across_chunks(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        reply = tool_reply(
            call(0, "", id="call_a", name="weather"),
            call(0, '{"ci'),
            call(0, 'ty": "Par'),
            call(0, 'is"}'),
        )
        # And the bytes themselves arrive in 7-byte writes: events and lines split anywhere.
        body = b"".join(reply.parts)
        reply.parts = [body[i : i + 7] for i in range(0, len(body), 7)]
        server.script(reply)
        chunks = await collect(options(server), tools=[WEATHER_TOOL])
        calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
        assert calls[0] == ToolCallDelta(0, id="call_a", name="weather", arguments="")
        assert {c.index for c in calls} == {0}
        assert json.loads("".join(c.arguments for c in calls)) == {"city": "Paris"}
        assert chunks[-1] == Usage(7, 2)
        assert not any(isinstance(c, TextDelta) for c in chunks)


@pytest.mark.anyio
async def test_several_tool_calls_in_one_turn(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(
            tool_reply(
                call(0, "", id="call_a", name="weather"),
                call(0, '{"city": "Oslo"}'),
                call(1, '{"city":', id="call_b", name="weather"),
                call(1, ' "Lima"}'),
                call(2, "{}", id="call_c", name="time"),
            )
        )
        chunks = await collect(options(server), tools=[WEATHER_TOOL])
        calls: dict[int, dict[str, str]] = {}
        for chunk in chunks:
            if isinstance(chunk, ToolCallDelta):
                entry = calls.setdefault(chunk.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = chunk.id or entry["id"]
                entry["name"] = chunk.name or entry["name"]
                entry["arguments"] += chunk.arguments
        assert calls == {
            0: {"id": "call_a", "name": "weather", "arguments": '{"city": "Oslo"}'},
            1: {"id": "call_b", "name": "weather", "arguments": '{"city": "Lima"}'},
            2: {"id": "call_c", "name": "time", "arguments": "{}"},
        }


@pytest.mark.anyio
async def test_sse_comments_other_fields_and_crlf(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        parts = [
            b": keep-alive\r\n\r\n",
            b"event: message\r\nid: 1\r\ndata: " + json.dumps(delta("A")).encode() + b"\r\n\r\n",
            b"data:" + json.dumps(delta("B", finish="stop")).encode() + b"\r\n\r\n",
            b"data: [DONE]\r\n\r\n",
        ]
        server.script(Reply(parts=parts))
        # No usage chunk (a server without stream_options): no Usage, the counts are unknown.
        assert await collect(options(server)) == [TextDelta("A"), TextDelta("B"), Finish("stop")]


@pytest.mark.anyio
async def test_a_whole_json_reply_is_accepted(server: OpenAIServer) -> None:
    # A server that ignores stream=true answers with one chat.completion.
    with anyio.fail_after(TIMEOUT):
        completion = {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Let me look.",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "weather", "arguments": {"city": "Rome"}},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 6},
        }
        server.script(
            Reply(
                headers={"Content-Type": "application/json"},
                parts=[json.dumps(completion).encode()],
            )
        )
        assert await collect(options(server)) == [
            TextDelta("Let me look."),
            ToolCallDelta(0, id="call_1", name="weather", arguments='{"city": "Rome"}'),
            Finish("tool_calls"),
            Usage(3, 6),
        ]


@pytest.mark.anyio
async def test_a_finished_reply_without_done_is_accepted(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        parts = [event(delta("ok")), event(delta(finish="stop")), event(usage(1, 1))]
        server.script(Reply(parts=parts, chunked=False))  # ends when the connection closes
        assert await collect(options(server)) == [TextDelta("ok"), Finish("stop"), Usage(1, 1)]


# --------------------------------------------------------------------------- retries


@pytest.mark.anyio
async def test_429_then_success_honours_retry_after(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(
            error_reply(429, "Rate limit reached", headers={"Retry-After": "1"}),
            text_reply("fine"),
        )
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="agent_plugin_openai"):
            chunks = await collect(options(server, backoff=0))
        assert time.monotonic() - started >= 0.9  # Retry-After, not the backoff of 0
        assert chunks[0] == TextDelta("fine")
        assert len(server.requests) == 2
        assert "HTTP 429; retry 1 of 3 in 1.00 s" in caplog.text


@pytest.mark.anyio
async def test_500_then_success(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(error_reply(500, "boom"), error_reply(503, "busy"), text_reply("fine"))
        chunks = await collect(options(server))
        assert chunks[0] == TextDelta("fine")
        assert len(server.requests) == 3


@pytest.mark.anyio
async def test_500_every_time_fails_after_the_retries(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(*[error_reply(500, "the model crashed")] * 3)
        error = await failure(options(server, max_retries=2))
        assert len(server.requests) == 3
        assert error.status == 500
        assert str(error) == (
            f"the server at {server.base_url} failed (HTTP 500: the model crashed) on all 3 "
            "attempts: try again later, or check the server's logs"
        )


@pytest.mark.anyio
async def test_429_every_time(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(*[error_reply(429, "slow down")] * 2)
        error = await failure(options(server, max_retries=1))
        assert "is rate limiting (HTTP 429: slow down) and still was after 2 attempts" in str(error)
        assert "raise [llm] options max_retries" in str(error)


@pytest.mark.anyio
async def test_a_long_retry_after_fails_at_once(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(error_reply(429, "later", headers={"Retry-After": "3600"}))
        error = await failure(options(server))
        assert len(server.requests) == 1
        assert "asks to wait 3600 s before trying again" in str(error)


@pytest.mark.anyio
async def test_no_quota_is_not_retried(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        body = {
            "error": {"message": "You exceeded your current quota.", "code": "insufficient_quota"}
        }
        server.script(Reply(status=429, parts=[json.dumps(body).encode()], chunked=False))
        error = await failure(options(server))
        assert len(server.requests) == 1
        assert "no quota left" in str(error) and "billing" in str(error)


# --------------------------------------------------------------------------- errors


@pytest.mark.anyio
async def test_401_says_to_set_the_key(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(error_reply(401, "Incorrect API key provided"))
        error = await failure(options(server, api_key=KEY))
        assert len(server.requests) == 1  # not retried
        assert error.status == 401
        assert str(error) == (
            f"the server at {server.base_url} refused the API key (HTTP 401; the key came "
            "from [llm] options api_key): check api_key there (it is used instead of "
            "OPENAI_API_KEY)"
        )


@pytest.mark.anyio
async def test_401_with_the_key_from_the_environment_says_to_check_it(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(TIMEOUT):
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        server.script(error_reply(401, "Incorrect API key provided"))
        error = await failure(options(server))
        assert str(error).endswith(
            "(HTTP 401; the key came from OPENAI_API_KEY): check OPENAI_API_KEY, or set "
            "[llm] options api_key"
        )


@pytest.mark.anyio
async def test_401_without_a_key_says_none_was_sent(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(error_reply(401, "no key"))
        error = await failure(options(server))
        assert "; none was sent: OPENAI_API_KEY is not set)" in str(error)


@pytest.mark.anyio
async def test_404_names_the_model(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(error_reply(404, 'model "test-model" not found, try pulling it first'))
        error = await failure(options(server))
        assert str(error) == (
            f"model 'test-model' not found at {server.base_url} (HTTP 404: model "
            '"test-model" not found, try pulling it first): check the model name (the server '
            f"lists its models at {server.base_url}/models) and that base_url includes the "
            "API prefix (usually /v1)"
        )


@pytest.mark.anyio
async def test_400_quotes_the_server(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(error_reply(400, "this model does not support tools"))
        error = await failure(options(server))
        assert "rejected the request for model 'test-model'" in str(error)
        assert "(HTTP 400: this model does not support tools)" in str(error)


@pytest.mark.anyio
async def test_connection_refused(refused_url: str) -> None:
    with anyio.fail_after(TIMEOUT):
        error = await failure(options(refused_url, max_retries=0))
        assert str(error) == (
            f"cannot connect to {refused_url}: is the server running? (Connection refused)"
        )


@pytest.mark.anyio
async def test_stream_cut_in_the_middle(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(delta("Once upon")), event(delta(" a"))], end="cut"))
        seen: list[Chunk] = []
        error = await failure(options(server), seen)
        assert seen == [TextDelta("Once upon"), TextDelta(" a")]
        assert str(error).startswith(
            f"the reply from {server.base_url} was cut off before it was complete ("
        )
        assert str(error).endswith("): try again")


@pytest.mark.anyio
async def test_stream_ended_without_done(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(delta("Once upon"))], chunked=False))
        error = await failure(options(server))
        assert "cut off before it was complete (the stream ended without [DONE])" in str(error)


@pytest.mark.anyio
async def test_stream_stalled(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(delta("Once"))], end="stall"))
        started = time.monotonic()
        error = await failure(options(server, timeout=0.3))
        assert time.monotonic() - started < 2
        assert str(error) == (
            f"the reply from {server.base_url} stalled: nothing came for 0.3 s; try again, "
            "or raise [llm] options timeout"
        )


@pytest.mark.anyio
async def test_no_answer_within_the_timeout(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(silent=True), Reply(status=200, parts=[], end="stall"))
        error = await failure(options(server, timeout=0.3))
        assert str(error) == (
            f"{server.base_url} did not answer within 0.3 s: raise [llm] options timeout, or "
            "check the server"
        )
        assert len(server.requests) == 1  # a timeout is not retried
        # The headers come, then nothing: the body times out like a stalled stream.
        error = await failure(options(server, timeout=0.3))
        assert "stalled: nothing came for 0.3 s" in str(error)


@pytest.mark.anyio
async def test_malformed_json(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(delta("ok")), b'data: {"choices": [\n\n']))
        error = await failure(options(server))
        assert str(error) == (
            f"the server at {server.base_url} sent a malformed reply (not JSON): "
            "'{\"choices\": ['; is base_url an OpenAI-compatible API?"
        )


@pytest.mark.anyio
async def test_a_broken_chunk_of_the_api_is_not_blamed_on_base_url(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        broken = b'data: {"id": "c1", "object": "chat.completion.chunk", "choices": [{"del\n\n'
        server.script(Reply(parts=[event(delta("ok")), broken]))
        error = await failure(options(server))
        assert "sent a malformed reply (not JSON)" in str(error)
        assert str(error).endswith("; try again, or check the server's logs")


@pytest.mark.anyio
async def test_not_a_chunk(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event({"choices": "nope"}), event("[DONE]")]))
        error = await failure(options(server))
        assert "malformed reply (not a chat completion chunk)" in str(error)


@pytest.mark.anyio
async def test_error_in_the_middle_of_the_stream(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        parts = [event(delta("ok")), event({"error": {"message": "the model overloaded"}})]
        server.script(Reply(parts=parts))
        error = await failure(options(server))
        assert str(error) == (
            f"the server at {server.base_url} reported an error in the middle of the reply: "
            "the model overloaded"
        )


@pytest.mark.anyio
async def test_leaving_early_closes_the_connection(server: OpenAIServer) -> None:
    # A consumer that stops (a cancelled job) leaves no connection open and nothing hanging.
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(delta("Once"))], end="stall"))
        seen: list[Chunk] = []
        with anyio.move_on_after(0.3):
            async for chunk in OpenAIBackend().stream(HELLO, [], options(server)):
                seen.append(chunk)
        assert seen == [TextDelta("Once")]
        # A consumer that stops iterating and closes the generator.
        server.script(Reply(parts=[event(delta("a")), event(delta("b"))], end="stall"))
        stream = OpenAIBackend().stream(HELLO, [], options(server))
        assert await stream.__anext__() == TextDelta("a")
        await stream.aclose()
        while server.hangups < 2:  # the server saw both connections closed
            await anyio.sleep(0.01)


# --------------------------------------------------------------------------- the key


def _error_scripts(server_url: str) -> list[Reply]:
    return [
        error_reply(401, f"Incorrect API key provided: {KEY}"),
        error_reply(403, f"key {KEY} may not use this model"),
        error_reply(404, f"no model for key {KEY}"),
        error_reply(400, f"bad request from {KEY}"),
        error_reply(500, f"crash while serving {KEY}"),
        Reply(parts=[event(delta("x")), f"data: {{{KEY}\n\n".encode()]),
        Reply(parts=[event({"error": {"message": f"stream failed for {KEY}"}})]),
        Reply(parts=[event(delta("x"))], end="cut"),
    ]


@pytest.mark.anyio
async def test_the_key_appears_in_no_error_or_log(
    server: OpenAIServer, refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(TIMEOUT):
        caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
        errors: list[OpenAIBackendError] = []
        for reply in _error_scripts(server.base_url):
            server.script(reply)
            errors.append(await failure(options(server, api_key=KEY, max_retries=0)))
        server.script(error_reply(503, f"busy {KEY}"), error_reply(503, f"busy {KEY}"))
        errors.append(await failure(options(server, api_key=KEY, max_retries=1)))
        errors.append(await failure(options(refused_url, api_key=KEY)))
        assert len(errors) == 10
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
        for error in errors:
            shown = [str(error), repr(error), *map(str, error.args)]
            shown.append("".join(traceback.format_exception(error)))
            assert not [text for text in shown if KEY in text], shown
        assert "***" in str(errors[3])  # the server quoted the key: scrubbed
        assert caplog.records  # the retry was logged, and httpx logged its requests
        assert KEY not in caplog.text
        for record in caplog.records:
            assert KEY not in record.getMessage()


# --------------------------------------------------------------------------- odd servers


@pytest.mark.anyio
async def test_a_200_json_error_is_an_error_not_an_empty_answer(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        body = json.dumps({"error": {"message": "model is overloaded"}}).encode()
        server.script(Reply(headers={"Content-Type": "application/json"}, parts=[body]))
        error = await failure(options(server, max_retries=0))
        assert "reported an error at the start of the reply: model is overloaded" in str(error)
        other = json.dumps({"status": "ok"}).encode()
        server.script(Reply(headers={"Content-Type": "application/json"}, parts=[other]))
        assert "not a chat completion" in str(await failure(options(server)))


@pytest.mark.anyio
async def test_a_stream_of_something_else_is_malformed(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(
            Reply(
                headers={"Content-Type": "text/event-stream"},
                parts=[event({"type": "ping"}), event("[DONE]")],
            )
        )
        error = await failure(options(server))
        assert "no chat completion event" in str(error)


@pytest.mark.anyio
async def test_a_redirect_names_where_to_point_base_url(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        location = "https://example.invalid/v1/chat/completions"
        server.script(Reply(status=308, headers={"Location": location}))
        error = await failure(options(server))
        assert f"redirects the request (HTTP 308) to {location}" in str(error)
        assert "set base_url" in str(error)


@pytest.mark.anyio
async def test_a_masked_key_quoted_by_the_server_is_scrubbed(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        key = "sk-SECRET-0123456789-7890"
        server.script(error_reply(400, "Incorrect API key provided: sk-SEC****7890. bad"))
        error = await failure(options(server, api_key=key))
        assert "sk-SEC" not in str(error) and "7890" not in str(error)
        assert "Incorrect API key provided: ***" in str(error)


# --------------------------------------------------------------------------- more servers


@pytest.mark.anyio
async def test_a_refused_connection_is_retried(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(TIMEOUT):
        with caplog.at_level(logging.WARNING, logger="agent_plugin_openai"):
            error = await failure(options(refused_url, max_retries=2))
        assert str(error) == (
            f"cannot connect to {refused_url}: is the server running? (Connection refused) "
            "(3 attempts)"
        )
        assert "retry 2 of 2" in caplog.text


@pytest.mark.anyio
async def test_a_dead_proxy_is_named_not_the_server(
    server: OpenAIServer, refused_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = refused_url.removesuffix("/v1")
    with anyio.fail_after(TIMEOUT):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        error = await failure(options(server, max_retries=0))
        assert f"cannot reach {server.base_url} through the proxy {proxy}" in str(error)
        assert "is the proxy running" in str(error) and "NO_PROXY" in str(error)
        assert "is the server running" not in str(error)
        monkeypatch.delenv("HTTP_PROXY")
        error = await failure(options(server, max_retries=0, proxy=proxy))
        assert f"through the proxy {proxy}" in str(error)
        assert server.requests == []


@pytest.mark.anyio
async def test_a_base_url_with_a_query_string_keeps_it(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(text_reply("hi"), text_reply("hi"))
        await collect(options(f"{server.base_url}/?api-version=2024-10-21&x=1"))
        assert server.requests[0].path == "/v1/chat/completions?api-version=2024-10-21&x=1"
        await collect(options(f"{server.base_url}?tenant=a", api_version="2025-01-01"))
        assert server.requests[1].path == "/v1/chat/completions?tenant=a&api-version=2025-01-01"


@pytest.mark.anyio
async def test_azure_deployment_url_api_version_and_api_key_header(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with anyio.fail_after(TIMEOUT):
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-not-this-one")
        server.script(text_reply("hi"))
        endpoint = server.base_url.removesuffix("/v1")
        opts = OpenAIOptions(azure_endpoint=endpoint, model="gpt-4o", azure_deployment="prod-4o")
        await collect(opts)
        [request] = server.requests
        assert request.path == "/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        assert request.headers["api-key"] == KEY
        assert "authorization" not in request.headers


@pytest.mark.anyio
async def test_azure_responses_api_goes_to_the_v1_api_naming_the_deployment(
    server: OpenAIServer,
) -> None:
    done = {"type": "response.completed", "response": {"status": "completed", "output": []}}
    streamed = [{"type": "response.output_text.delta", "delta": "hi"}, done]
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(e) for e in streamed]))
        endpoint = server.base_url.removesuffix("/v1")
        opts = OpenAIOptions(
            azure_endpoint=endpoint,
            model="gpt-4o",
            azure_deployment="prod-4o",
            api="responses",
            api_key=KEY,
        )
        assert await collect(opts) == [TextDelta("hi"), Finish("stop")]
        [request] = server.requests
        # Azure has the Responses API in its v1 API only: no deployment URL, no api-version.
        assert request.path == "/openai/v1/responses"
        assert request.body["model"] == "prod-4o"
        assert request.headers["api-key"] == KEY


def test_a_pasted_endpoint_url_is_refused_saying_what_to_write() -> None:
    portal = (
        "https://r.openai.azure.com/openai/deployments/gpt4/chat/completions"
        "?api-version=2025-01-01-preview"
    )
    for bad, says in (
        (
            {"azure_endpoint": portal},
            'write azure_endpoint = "https://r.openai.azure.com" and azure_deployment = "gpt4"'
            ' and api_version = "2025-01-01-preview"',
        ),
        (
            {"azure_endpoint": "https://r.openai.azure.com/openai/v1/"},
            'base_url = "https://r.openai.azure.com/openai/v1"',
        ),
        (
            {"base_url": "http://localhost:8000/v1/chat/completions"},
            'base_url is the API root, without the endpoint: write base_url = "http://localhost:8000/v1"',
        ),
        (
            {"base_url": "https://x.example/v1/responses?tenant=a"},
            'write base_url = "https://x.example/v1\\?tenant=a"',
        ),
    ):
        with pytest.raises(ValidationError, match=says):
            OpenAIOptions(**bad)
    # From the environment, the message says so: the options do not name base_url.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1/chat/completions")
        with pytest.raises(ValidationError, match=r"\(it came from \$OPENAI_BASE_URL\)"):
            OpenAIOptions()
        patch.setenv("OPENAI_BASE_URL", "localhost:8000/v1")
        with pytest.raises(ValidationError, match=r"http:// .*\$OPENAI_BASE_URL"):
            OpenAIOptions()
    # A gateway in front of Azure may have a path of its own.
    gateway = OpenAIOptions(azure_endpoint="https://gw.example/team-a", model="m", api_key="k")
    assert gateway.url("/chat/completions") == (
        "https://gw.example/team-a/openai/deployments/m/chat/completions?api-version=2024-10-21"
    )


@pytest.mark.anyio
async def test_request_options_headers_and_extra_body_are_sent(server: OpenAIServer) -> None:
    class Answer(BaseModel):
        city: str

    with anyio.fail_after(TIMEOUT):
        server.script(text_reply("{}"), text_reply("{}"))
        opts = options(
            server,
            max_completion_tokens=50,
            stop="END",
            seed=3,
            top_p=0.9,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            tool_choice="weather",
            parallel_tool_calls=False,
            response_format=Answer,
            reasoning_effort="low",
            system_role="developer",
            organization="org-1",
            project="proj-1",
            headers={"X-Team": "blue"},
            extra_body={"top_k": 20, "seed": 4},
        )
        system = {"role": "system", "content": "Be brief."}
        async for _ in OpenAIBackend().stream([system, *HELLO], [WEATHER_TOOL], opts):
            pass
        request = server.requests[0]
        body = request.body
        assert body["messages"][0] == {"role": "developer", "content": "Be brief."}
        assert body["max_completion_tokens"] == 50 and body["stop"] == "END"
        assert body["seed"] == 4 and body["top_k"] == 20  # extra_body wins
        assert (body["top_p"], body["presence_penalty"], body["frequency_penalty"]) == (
            0.9,
            0.5,
            -0.5,
        )
        assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
        assert body["parallel_tool_calls"] is False and body["reasoning_effort"] == "low"
        schema = body["response_format"]["json_schema"]
        assert body["response_format"]["type"] == "json_schema"
        assert schema["name"] == "Answer" and schema["schema"]["required"] == ["city"]
        assert request.headers["openai-organization"] == "org-1"
        assert request.headers["openai-project"] == "proj-1"
        assert request.headers["x-team"] == "blue"
        # Without tools, no tool_choice (servers refuse one): JSON mode by name.
        await collect(options(server, tool_choice="auto", response_format="json_object"))
        body = server.requests[1].body
        assert "tool_choice" not in body and body["response_format"] == {"type": "json_object"}


def test_new_options_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for bad, says in (
        ({"max_tokens": 5, "max_completion_tokens": 5}, "not both"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4"),
        ({"api": "responses", "seed": 1}, "seed: not options of the Responses API"),
        ({"response_format": "xml"}, "response_format must be"),
        ({"proxy": "127.0.0.1:3128"}, "proxy must be a URL"),
        ({"ca_bundle": str(tmp_path / "none.pem")}, "is not a file"),
        ({"reasoning_effort": "max"}, "reasoning_effort"),
        ({"api": "assistants"}, "api"),
        ({"top_p": 2}, "top_p"),
        (
            {"azure_endpoint": "https://r.openai.azure.com", "base_url": "http://x/v1"},
            "give base_url or azure_endpoint, not both",
        ),
        ({"azure_deployment": "prod"}, "azure_deployment is for Azure OpenAI: set azure_endpoint"),
    ):
        with pytest.raises(ValidationError, match=says):
            OpenAIOptions(**bad)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1/")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-env")
    opts = OpenAIOptions()
    assert (opts.base_url, opts.organization) == ("http://localhost:8000/v1", "org-env")
    assert opts.stream is True and opts.api == "chat"


@pytest.mark.anyio
async def test_reasoning_text_and_cached_and_reasoning_tokens(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        figures = usage(30, 12)
        figures["usage"]["prompt_tokens_details"] = {"cached_tokens": 24}
        figures["usage"]["completion_tokens_details"] = {"reasoning_tokens": 9}
        thinking = {"choices": [{"index": 0, "delta": {"reasoning_content": "Hmm, "}}]}
        other = {"choices": [{"index": 0, "delta": {"reasoning": "think."}}]}
        parts = [event(thinking), event(other), event(delta("Four.", finish="stop"))]
        server.script(Reply(parts=[*parts, event(figures), event("[DONE]")]))
        assert await collect(options(server)) == [
            ReasoningDelta("Hmm, "),
            ReasoningDelta("think."),
            TextDelta("Four."),
            Finish("stop"),
            Usage(30, 12, cached_tokens=24, reasoning_tokens=9),
        ]


@pytest.mark.anyio
async def test_request_ids_go_into_errors_and_x_should_retry_is_obeyed(
    server: OpenAIServer,
) -> None:
    with anyio.fail_after(TIMEOUT):
        headers = {"x-request-id": "req_abc123", "x-should-retry": "false"}
        server.script(error_reply(500, "no", headers=headers))
        error = await failure(options(server))
        assert len(server.requests) == 1
        assert error.request_id == "req_abc123"
        assert str(error).endswith("[request id req_abc123]")
        # An error event inside a 200 reply is tagged with the reply's request id too.
        parts = [event(delta("ok")), event({"error": {"message": "overloaded"}})]
        server.script(Reply(headers={"x-request-id": "req_def456"}, parts=parts))
        error = await failure(options(server))
        assert str(error).endswith("overloaded [request id req_def456]")


@pytest.mark.anyio
async def test_the_http_debug_log(server: OpenAIServer, caplog: pytest.LogCaptureFixture) -> None:
    with anyio.fail_after(TIMEOUT):
        server.script(text_reply("hi"))
        with caplog.at_level(logging.DEBUG, logger="agent_plugin_openai.http"):
            await collect(options(server, api_key=KEY))
        assert f"POST {server.base_url}/chat/completions" in caplog.text
        assert "answered HTTP 200" in caplog.text
        assert KEY not in caplog.text


@pytest.mark.anyio
async def test_openai_log_debug_turns_the_http_log_on(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What framework run -v sets up: INFO at the root; the variable adds the HTTP log.
    http_log, root = logging.getLogger("agent_plugin_openai.http"), logging.getLogger()
    levels = http_log.level, root.level
    http_log.setLevel(logging.NOTSET)  # setLevel, not the attribute: it clears the cache
    root.setLevel(logging.INFO)  # a handler of any level, as logging.basicConfig adds
    try:
        with anyio.fail_after(TIMEOUT):
            server.script(text_reply("hi"), text_reply("hi"))
            await collect(options(server, api_key=KEY))
            assert not [r for r in caplog.records if r.name == http_log.name]
            monkeypatch.setenv("OPENAI_LOG", "debug")
            await collect(options(server, api_key=KEY))
            logged = "\n".join(r.getMessage() for r in caplog.records if r.name == http_log.name)
            assert f"POST {server.base_url}/chat/completions" in logged
            assert "answered HTTP 200 in" in logged and "request id None" not in logged
            assert KEY not in caplog.text
    finally:
        http_log.setLevel(levels[0])
        root.setLevel(levels[1])


def test_a_ca_bundle_is_what_tls_trusts(tmp_path: Any) -> None:
    import certifi

    pem = tmp_path / "one.pem"
    first = certifi.contents().split("-----END CERTIFICATE-----")[0]
    pem.write_text(first + "-----END CERTIFICATE-----\n")
    backend = OpenAIBackend()
    assert len(backend._ssl_context(str(pem)).get_ca_certs()) == 1
    assert len(backend._ssl_context(None).get_ca_certs()) > 1
    assert backend._ssl_context(str(pem)) is backend._ssl_context(str(pem))  # made once


def test_response_format_shapes() -> None:
    from agent_plugin_openai._chat import response_format

    strict = {"name": "forecast", "schema": {"type": "object"}, "strict": True}
    assert response_format(strict) == {"type": "json_schema", "json_schema": strict}
    bare = {"title": "An answer", "type": "object"}
    assert response_format(bare)["json_schema"] == {
        "name": "An_answer",
        "schema": bare,
        "strict": False,
    }
    whole = {"type": "json_schema", "json_schema": strict}
    assert response_format(whole) == whole
    assert response_format("json_object") == {"type": "json_object"}


@pytest.mark.anyio
async def test_a_refusal_is_the_answer_not_an_empty_reply(server: OpenAIServer) -> None:
    no = "I'm sorry, I cannot help with that."
    refused = {"choices": [{"index": 0, "delta": {"content": None, "refusal": no}}]}
    whole = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "refusal": no},
                "finish_reason": "stop",
            }
        ],
    }
    part = {"type": "refusal", "refusal": no}
    response = {"status": "completed", "output": [{"type": "message", "content": [part]}]}
    streamed = [
        {"type": "response.refusal.delta", "output_index": 0, "delta": no},
        {"type": "response.completed", "response": response},
    ]
    with anyio.fail_after(TIMEOUT):
        server.script(
            Reply(parts=[event(refused), event(delta(finish="stop")), event("[DONE]")]),
            Reply(headers={"Content-Type": "application/json"}, parts=[json.dumps(whole).encode()]),
            Reply(parts=[event(e) for e in streamed]),
            Reply(
                headers={"Content-Type": "application/json"}, parts=[json.dumps(response).encode()]
            ),
        )
        ways: list[dict[str, Any]] = [
            {},
            {"stream": False},
            {"api": "responses"},
            {"api": "responses", "stream": False},
        ]
        for settings in ways:
            assert await collect(options(server, **settings)) == [TextDelta(no), Finish("stop")]


@pytest.mark.anyio
async def test_a_server_refusing_stream_options_is_asked_without(server: OpenAIServer) -> None:
    with anyio.fail_after(TIMEOUT):
        refusal = "Unrecognized request argument supplied: stream_options"
        server.script(error_reply(400, refusal), text_reply("hi"))
        chunks = await collect(options(server, max_retries=0))
        assert TextDelta("hi") in chunks
        first, second = server.requests
        assert "stream_options" in first.body and "stream_options" not in second.body
        assert second.body["stream"] is True


@pytest.mark.anyio
async def test_azure_filtering_the_prompt_is_the_finish_reason_content_filter(
    server: OpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Azure answers 400 with code content_filter: the worker then fails the job saying so.
    said = "The response was filtered due to the prompt triggering the content policy."
    body = {"error": {"message": said, "code": "content_filter", "param": "prompt"}}
    with anyio.fail_after(TIMEOUT):
        server.script(
            Reply(
                status=400,
                headers={"Content-Type": "application/json"},
                parts=[json.dumps(body).encode()],
                chunked=False,
            )
        )
        with caplog.at_level(logging.WARNING, logger="agent_plugin_openai"):
            assert await collect(options(server)) == [Finish("content_filter")]
        assert len(server.requests) == 1
        assert said in caplog.text


@pytest.mark.anyio
async def test_responses_tool_call_arguments_are_taken_once_whatever_events_carry_them(
    server: OpenAIServer,
) -> None:
    args = '{"city": "Oslo"}'

    def added(arguments: str) -> dict[str, Any]:
        item = {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": arguments}
        return {"type": "response.output_item.added", "output_index": 0, "item": item}

    done_item = {**added(args), "type": "response.output_item.done"}
    end = {"type": "response.completed", "response": {"status": "completed", "output": []}}
    args_done = {"type": "response.function_call_arguments.done", "output_index": 0}
    with anyio.fail_after(TIMEOUT):
        server.script(
            # Whole in the added item, then again when done.
            Reply(parts=[event(e) for e in (added(args), {**args_done, "arguments": args}, end)]),
            # Only in the item that is done (no argument events at all).
            Reply(parts=[event(e) for e in (added(""), done_item, end)]),
        )
        for _ in range(2):
            chunks = await collect(options(server, api="responses"), [WEATHER_TOOL])
            sent = "".join(c.arguments for c in chunks if isinstance(c, ToolCallDelta))
            assert sent == args
            assert chunks[-1] == Finish("tool_calls")


@pytest.mark.anyio
async def test_responses_stream_without_deltas_takes_the_completed_output(
    server: OpenAIServer,
) -> None:
    message = {"type": "message", "content": [{"type": "output_text", "text": "Four."}]}
    response = {"status": "completed", "output": [message]}
    streamed = [
        {"type": "response.created", "response": {"status": "in_progress", "output": []}},
        {"type": "response.completed", "response": response},
    ]
    with anyio.fail_after(TIMEOUT):
        server.script(Reply(parts=[event(e) for e in streamed]))
        chunks = await collect(options(server, api="responses"))
        assert chunks == [TextDelta("Four."), Finish("stop")]
