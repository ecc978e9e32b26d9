"""The plugin as the ``framework`` command sees it (light to import, what it registers),
the naming rules, and ``[plugins.mcp]``'s checks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from agent_plugin_mcp._naming import llm_names, served_names
from agent_plugin_mcp._settings import McpSettings
from conftest import framework_command, framework_env

from framework.config import ConfigError
from framework.llm.tools import TOOL_NAME


def test_the_plugin_module_imports_neither_the_sdk_nor_the_runtime() -> None:
    code = (
        "import sys, agent_plugin_mcp; print(sorted({m.split('.')[0] for m in sys.modules "
        "if m.split('.')[0] in ('mcp', 'mcp_types', 'anyio', 'pydantic', 'starlette', "
        "'httpx2')} | {m for m in sys.modules if m.startswith('agent_plugin_mcp.')}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_mcp_command_without_importing_the_sdk() -> None:
    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom framework.cli import cli\n"
        "result = CliRunner().invoke(cli, ['-p', 'mcp', '--help'])\n"
        "print(result.output)\n"
        "print('sdk imported:', 'mcp' in sys.modules or 'mcp_types' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=framework_env()
    )
    assert "  mcp " in out.stdout
    assert "Serve the workers' jobs as MCP tools over stdio" in out.stdout
    assert "sdk imported: False" in out.stdout


def test_framework_plugins_lists_what_it_registered() -> None:
    done = subprocess.run(
        [*framework_command(), "-p", "mcp", "plugins", "--json"],
        capture_output=True,
        text=True,
        env=framework_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (mcp,) = [plugin for plugin in json.loads(done.stdout) if plugin["name"] == "mcp"]
    assert mcp["distribution"] == "agent-plugin-mcp"
    assert mcp["error"] is None
    assert mcp["registered"] == {"routes": ["/mcp"], "tool_sources": ["mcp"], "commands": ["mcp"]}


# ----------------------------------------------------------------- naming


def test_served_names_follow_the_rule_and_clashes_get_a_suffix() -> None:
    names = served_names(
        [
            ("echo", None),
            ("echo", "reverse"),
            ("my worker", "say hi"),
            ("my_worker", "say_hi"),  # the same once sanitized: the later gets _2
            ("a.b", None),  # a dot in a worker's name never looks like a job
            ("a", "b"),
            ("w" * 200, None),
        ]
    )
    assert names["echo"] == ("echo", None)
    assert names["echo.reverse"] == ("echo", "reverse")
    assert names["my_worker.say_hi"] == ("my worker", "say hi")
    assert names["my_worker.say_hi_2"] == ("my_worker", "say_hi")
    assert names["a_b"] == ("a.b", None)
    assert names["a.b"] == ("a", "b")
    assert names["w" * 128] == ("w" * 200, None)
    assert all(len(name) <= 128 for name in names)


def test_names_offered_to_an_llm_are_unique_and_valid() -> None:
    tools = ["get-sum", "echo", "a.b", "a_b", "x" * 100, "ünïcode"]
    names = llm_names("everything", tools)
    assert sorted(names.values()) == sorted(tools)
    assert all(TOOL_NAME.match(name) for name in names)
    assert names["everything_get-sum"] == "get-sum"
    assert names["everything_a_b"] == "a.b"  # first in order keeps the plain name
    assert any(value == "a_b" and key != "everything_a_b" for key, value in names.items())


# ----------------------------------------------------------------- [plugins.mcp]


@pytest.mark.parametrize(
    ("table", "key", "reason"),
    [
        ({"servers": {"x": {}}}, "plugins.mcp.servers.x", "give either command"),
        (
            {"servers": {"x": {"command": ["a"], "url": "http://h/mcp"}}},
            "plugins.mcp.servers.x",
            "give either command",
        ),
        ({"servers": {"x": {"url": "ftp://h/mcp"}}}, "plugins.mcp.servers.x.url", "url must be"),
        (
            {"servers": {"x": {"url": "127.0.0.1:8000/mcp"}}},
            "plugins.mcp.servers.x.url",
            "url must be http://HOST/",
        ),
        (
            {"servers": {"x": {"command": "uvx mcp-server-time"}}},
            "plugins.mcp.servers.x.command",
            'a list of the program and its arguments: command = ["uvx", "mcp-server-time"]',
        ),
        (
            {"servers": {"x": {"command": ["a"], "headers": {"A": "b"}}}},
            "plugins.mcp.servers.x",
            "headers go with url",
        ),
        (
            {"servers": {"x": {"url": "http://h/mcp", "env": {"A": "b"}}}},
            "plugins.mcp.servers.x",
            "env and cwd go with command",
        ),
        ({"servers": {"x": {"command": []}}}, "plugins.mcp.servers.x.command", "at least 1"),
        (
            {"servers": {"x": {"command": ["a"], "timeout": 0}}},
            "plugins.mcp.servers.x.timeout",
            "greater than 0",
        ),
        (
            {"servers": {"x": {"command": ["a"], "comand": 1}}},
            "plugins.mcp.servers.x.comand",
            "unknown key (check the spelling; the keys: https://",
        ),
        ({"server": {}}, "plugins.mcp.server", "docs/mcp.md#using-mcp-servers-from-llm-workers"),
        ({"servers": {"has space": {"command": ["a"]}}}, "plugins.mcp.servers", "the server name"),
    ],
)
def test_a_bad_table_is_a_config_error_naming_the_key(
    table: dict[str, object], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        McpSettings.from_config(table)
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert "Value error" not in str(caught.value)  # pydantic's wording stays out


def test_header_values_are_never_shown() -> None:
    settings = McpSettings.from_config(
        {"servers": {"docs": {"url": "http://h/mcp", "headers": {"Authorization": "Bearer s3"}}}}
    )
    server = settings.servers["docs"]
    assert "s3" not in repr(server) and "s3" not in server.describe()
    assert server.headers["Authorization"].get_secret_value() == "Bearer s3"
