"""The MCP Inspector's CLI mode (npm ``@modelcontextprotocol/inspector``, a client written by
others) lists and calls the runner's tools: over stdio, starting ``framework mcp`` itself,
and over streamable HTTP at ``/mcp`` of ``framework run --http``, with the token."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from conftest import ENV, PLUGINS, TESTS, TOKEN, HttpRunner, node_script

INSPECTOR = "@modelcontextprotocol/inspector/clients/launcher/build/index.js"


def inspector(*args: str, code: int = 0) -> tuple[Any, subprocess.CompletedProcess[str]]:
    """Run the Inspector's CLI, expecting exit ``code``; its stdout parsed as JSON, and the
    process."""
    done = subprocess.run(
        [*node_script(INSPECTOR), "--cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=TESTS,
    )
    assert done.returncode == code, f"exit {done.returncode}: {done.stdout}\n{done.stderr}"
    return json.loads(done.stdout), done


def stdio_target() -> list[str]:
    """``framework mcp`` for the Inspector to start, with the test workers' environment
    (it starts servers with a minimal environment of its own, plus ``-e``)."""
    env = [f"-e{key}={value}" for key, value in ENV.items()]
    return [*env, sys.executable, "-m", "framework", *PLUGINS, "mcp", "--worker", "tools"]


def test_the_inspector_lists_our_tools_over_stdio_and_finds_no_portability_problem() -> None:
    listed, done = inspector(*stdio_target(), "--method", "tools/list", "--strict")
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert set(tools) == {
        "tools",
        "tools.reverse",
        "tools.spell",
        "tools.fail",
        "tools.crash",
        "tools.sleep",
        "tools.cancelled",
    }
    assert tools["tools.reverse"]["inputSchema"]["required"] == ["text"]
    assert "outputSchema" in tools["tools.reverse"]
    assert "portability" not in done.stderr  # --strict reports problems on stderr (exit 6)


def test_the_inspector_calls_a_tool_over_stdio() -> None:
    result, _ = inspector(
        *stdio_target(),
        "--method",
        "tools/call",
        "--tool-name",
        "tools.reverse",
        "--tool-arg",
        "text=inspector",
        "--tool-arg",
        "times=3",
    )
    assert result["isError"] is False
    assert result["structuredContent"] == {"text": "rotcepsni"}


def test_the_inspector_lists_and_calls_over_http(http_runner: HttpRunner) -> None:
    target = [
        f"{http_runner.url}/mcp",
        "--transport",
        "http",
        "--header",
        f"Authorization: Bearer {TOKEN}",
    ]
    listed, _ = inspector(*target, "--method", "tools/list")
    assert "tools.reverse" in {tool["name"] for tool in listed["tools"]}
    failed, done = inspector(*target, "--method", "tools/call", "--tool-name", "tools.fail", code=5)
    assert failed["isError"] is True
    assert failed["content"][0]["text"] == "the job failed: it failed on purpose"
    assert "tool_is_error" in done.stderr  # how the Inspector reports a tool error
