"""``framework mcp`` as a process, spoken to line by line: stdout carries MCP and nothing
else (the test workers print on stdout), malformed input gets an error or is passed over,
``--worker`` limits what is served, and the command's mistakes exit 2 before anything
is served."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

from conftest import PLUGINS, TESTS, framework_command, framework_env

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "1"},
    },
}


def converse(
    lines: list[str], *args: str, answers: int = 0
) -> tuple[list[dict[str, Any]], str, int]:
    """Send ``lines`` to ``framework mcp ARGS``, read ``answers`` lines from stdout, close
    stdin (the server then ends), and return what came out on stdout (each line parsed),
    stderr, and the exit code."""
    process = subprocess.Popen(
        [*framework_command(), *PLUGINS, "mcp", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=framework_env(),
        cwd=TESTS,
    )
    assert process.stdin is not None and process.stdout is not None
    timer = threading.Timer(30, process.kill)  # a bug fails the test instead of hanging it
    timer.start()
    try:
        process.stdin.write("".join(line + "\n" for line in lines))
        process.stdin.flush()
        read = [process.stdout.readline() for _ in range(answers)]
        rest, err = process.communicate()
    finally:
        timer.cancel()
    out = [json.loads(line) for line in [*read, *rest.splitlines()] if line]  # all JSON
    return out, err, process.returncode


def request(number: int, method: str, params: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": number, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def test_stdout_is_mcp_only_and_bad_input_costs_only_itself() -> None:
    out, err, code = converse(
        [
            "this is not json",
            json.dumps(INITIALIZE),
            json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            request(2, "no/such/method"),
            request(3, "tools/call", {"name": "tools.reverse", "arguments": "not an object"}),
            request(4, "tools/call", {"name": "tools.reverse", "arguments": {"text": "ab"}}),
        ],
        "--worker",
        "tools",
        answers=4,
    )
    assert code == 0, err  # stdin closed: the server and the runner end
    assert all(message["jsonrpc"] == "2.0" for message in out)
    by_id = {message.get("id"): message for message in out}
    assert by_id[1]["result"]["serverInfo"]["name"] == "agent-plugin-framework"
    assert by_id[2]["error"]["code"] == -32601  # method not found
    assert by_id[3]["error"]["code"] == -32602  # invalid params
    assert by_id[4]["result"]["structuredContent"] == {"text": "ba"}
    # What the workers printed went to stderr.
    assert "tools: ready (this line goes to stdout)" in err
    assert "tools: reversing (stdout again)" in err


def test_worker_limits_the_tools_to_those_workers() -> None:
    out, err, code = converse(
        [
            json.dumps(INITIALIZE),
            json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            request(2, "tools/list"),
            request(3, "tools/call", {"name": "quiet"}),
        ],
        "--worker",
        "tools",
        answers=3,
    )
    assert code == 0, err
    by_id = {message.get("id"): message for message in out}
    names = {tool["name"] for tool in by_id[2]["result"]["tools"]}
    assert names == {
        "tools",
        "tools.reverse",
        "tools.spell",
        "tools.fail",
        "tools.crash",
        "tools.sleep",
        "tools.cancelled",
    }
    assert by_id[3]["error"]["code"] == -32602  # not served: unknown


def test_an_unknown_worker_exits_2_naming_it_and_the_workers() -> None:
    out, err, code = converse([json.dumps(INITIALIZE)], "--worker", "nobody")
    assert code == 2
    assert out == []
    assert "--worker nobody: no such worker on runner" in err
    assert "assistant, quiet, tools" in err


def test_a_bad_configuration_exits_2_before_serving(tmp_path: Path) -> None:
    config = tmp_path / "framework.toml"
    config.write_text(
        '[[workers]]\ntype = "assistant"\n[workers.config]\ntools = ["mcp:nowhere"]\n'
        "[plugins.mcp.servers.time]\ncommand = []\n"
    )
    out, err, code = converse([json.dumps(INITIALIZE)], "--config", str(config))
    assert code == 2
    assert out == []
    assert "configuration error" in err
    assert "workers.0.config.tools.0" in err
    assert "plugins.mcp" in err


def test_a_bad_plugins_mcp_table_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "framework.toml"
    config.write_text('[plugins.mcp.servers.docs]\nurl = "ftp://example.com/mcp"\n')
    out, err, code = converse([json.dumps(INITIALIZE)], "--config", str(config))
    assert code == 2
    assert out == []
    assert f"configuration error: {config}: plugins.mcp.servers.docs.url: " in err
    assert "url must be http://HOST/... or https://..." in err
