"""The runner's jobs as MCP tools, spoken to by the official MCP Python SDK's client: over
stdio (``framework mcp``, started by the client) and over streamable HTTP (``/mcp`` of
``framework run --http``, behind its token). Every test runs on both."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from conftest import PLUGINS, TESTS, TOKEN, HttpRunner, framework_command, framework_env
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module", params=["stdio", "http"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    """A client connected to the test workers' MCP server, one per transport."""
    if request.param == "stdio":
        program, *args = framework_command()
        params = StdioServerParameters(
            command=program, args=[*args, *PLUGINS, "mcp"], env=framework_env(), cwd=TESTS
        )
        with anyio.fail_after(30):
            async with Client(params) as connected:
                yield connected
        return
    served: HttpRunner = request.getfixturevalue("http_runner")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx2.AsyncClient(headers=auth, timeout=30) as http:
        with anyio.fail_after(30):
            transport = streamable_http_client(f"{served.url}/mcp", http_client=http)
            async with Client(transport) as connected:
                yield connected


async def test_every_described_job_is_a_tool_with_its_schemas(client: Client) -> None:
    with anyio.fail_after(10):
        listed = (await client.list_tools()).tools
    tools = {tool.name: tool for tool in listed}
    assert {
        "tools",
        "tools.reverse",
        "tools.spell",
        "tools.fail",
        "tools.crash",
        "tools.sleep",
        "tools.cancelled",
        "quiet",
        "assistant",
    } <= set(tools)
    reverse = tools["tools.reverse"]
    assert reverse.input_schema["required"] == ["text"]
    assert reverse.input_schema["properties"]["times"]["type"] == "integer"
    assert reverse.output_schema is not None
    assert reverse.output_schema["properties"]["text"]["type"] == "string"
    assert reverse.description is not None
    assert reverse.description.startswith("Reverse a text, ``times`` times")
    assert "job 'reverse' of worker 'tools'" in reverse.description
    # An untyped job takes any object; a job without a docstring says what it sends.
    assert tools["tools.fail"].input_schema == {"type": "object", "additionalProperties": True}
    assert tools["quiet"].description == "Send a job to the worker 'quiet'."
    assert tools["quiet.nap"].description == "Send the job 'nap' to the worker 'quiet'."
    # The LLM worker's chat job, described by the worker itself.
    assert tools["assistant"].input_schema["required"] == ["messages"]


async def test_a_call_reports_updates_as_progress_and_returns_the_response(
    client: Client,
) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    with anyio.fail_after(10):
        result = await client.call_tool(
            "tools.reverse", {"text": "abc", "times": 3}, progress_callback=on_progress
        )
    assert result.is_error is False
    assert result.structured_content == {"text": "cba"}
    assert json.loads(result.content[-1].text) == {"text": "cba"}  # type: ignore[union-attr]
    assert progress == [
        (1, '{"turn": 1, "of": 3}'),
        (2, '{"turn": 2, "of": 3}'),
        (3, '{"turn": 3, "of": 3}'),
    ]


async def test_a_stream_is_gathered_into_the_result(client: Client) -> None:
    with anyio.fail_after(10):
        result = await client.call_tool("tools.spell", {"text": "mcp"})
    texts = [block.text for block in result.content]  # type: ignore[union-attr]
    assert texts[0] == "MCP"
    assert result.structured_content == {"chunks": 3}


async def test_the_default_job_takes_any_object(client: Client) -> None:
    with anyio.fail_after(10):
        result = await client.call_tool("tools", {"any": ["thing", 1]})
    assert result.structured_content is not None
    assert result.structured_content["echo"] == {"any": ["thing", 1]}


async def test_failed_and_error_are_tool_errors_with_the_message(client: Client) -> None:
    with anyio.fail_after(10):
        failed = await client.call_tool("tools.fail", {})
        crashed = await client.call_tool("tools.crash", {})
    assert failed.is_error is True
    assert failed.content[0].text == "the job failed: it failed on purpose"  # type: ignore[union-attr]
    assert crashed.is_error is True
    text = crashed.content[0].text  # type: ignore[union-attr]
    assert text.startswith("the job ended in error:")
    assert "it broke" in text


async def test_arguments_that_do_not_validate_are_a_tool_error_naming_the_field(
    client: Client,
) -> None:
    with anyio.fail_after(10):
        missing = await client.call_tool("tools.reverse", {"txt": "abc"})
        wrong = await client.call_tool("tools.reverse", {"text": "abc", "times": "many"})
    assert missing.is_error is True
    assert "text: Field required" in missing.content[0].text  # type: ignore[union-attr]
    assert wrong.is_error is True
    assert "times:" in wrong.content[0].text  # type: ignore[union-attr]


async def test_an_unknown_tool_is_a_protocol_error_naming_it(client: Client) -> None:
    with anyio.fail_after(10), pytest.raises(MCPError) as caught:
        await client.call_tool("tools.nope", {})
    assert caught.value.code == -32602
    assert "'tools.nope' is not a tool of runner" in caught.value.message


async def test_cancelling_the_call_cancels_the_job(client: Client) -> None:
    async def cancelled() -> int:
        result = await client.call_tool("tools.cancelled", {})
        assert result.structured_content is not None
        count: int = result.structured_content["cancelled"]
        return count

    with anyio.fail_after(20):
        before = await cancelled()
        started = anyio.Event()

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            started.set()  # the job's first update: it is running

        async def sleep() -> None:
            await client.call_tool("tools.sleep", {}, progress_callback=on_progress)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleep)
            await started.wait()
            tg.cancel_scope.cancel()
        while await cancelled() == before:
            await anyio.sleep(0.05)
    assert await cancelled() == before + 1


async def test_calls_run_at_the_same_time(client: Client) -> None:
    results: dict[float, Any] = {}

    async def call(seconds: float) -> None:
        results[seconds] = await client.call_tool("tools.sleep", {"seconds": seconds})

    with anyio.fail_after(10):
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for seconds in (0.5, 0.6, 0.7):
                tg.start_soon(call, seconds)
        elapsed = anyio.current_time() - start
    assert all(result.structured_content == {"slept": True} for result in results.values())
    assert elapsed < 1.5  # not 1.8: one slow job never waits for another


# ----------------------------------------------------------------- HTTP only


async def test_http_needs_the_token_and_answers_a_malformed_request(
    http_runner: HttpRunner,
) -> None:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {TOKEN}", **headers}
    async with httpx2.AsyncClient(base_url=http_runner.url, timeout=10) as http:
        with anyio.fail_after(20):
            refused = await http.post("/mcp", content=b"{}", headers=headers)
            garbage = await http.post("/mcp", content=b"{not json", headers=auth)
            wrong = await http.post("/mcp", content=b'{"jsonrpc": "2.0", "id": 1}', headers=auth)
            health = await http.get("/v1/health")
    assert refused.status_code == 401
    assert garbage.status_code == 400
    assert garbage.json()["error"]["code"] == -32700  # JSON-RPC's parse error
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] in (-32600, -32602)  # an invalid request
    assert health.json()["status"] == "ok"  # the runner is none the worse
