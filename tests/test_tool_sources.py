"""Tool sources: ``register_tool_sources`` and an LLM worker's ``tools = ["PREFIX:NAME"]``,
in code (a runner on the offline backend) and in ``framework run``'s checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import tool_source_plugin
from click.testing import CliRunner, Result

from framework import JobEvent, LLMWorker, WorkerRunner, hookimpl
from framework.cli import cli
from framework.llm.worker import LLMWorkerConfig
from framework.plugins import PluginHost
from framework.registrars import ToolSourceRegistrar

ENV = {"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1", "FRAMEWORK_PLUGINS": None}


class Elsewhere:
    """A second plugin: clashes with ``toy``, and registers by import path."""

    @hookimpl
    def register_tool_sources(self, register: ToolSourceRegistrar) -> None:
        register("toy", tool_source_plugin.ToySource())  # taken by tool_source_plugin
        register("Bad Prefix", tool_source_plugin.source)
        register("nothing", object())  # not a tool source
        register("lazy", "tool_source_plugin:ToySource")


def test_hook_register_tool_sources() -> None:
    host = PluginHost(plugins=[Elsewhere(), tool_source_plugin], report=False)
    host.collect_registrations()
    assert sorted(host.tool_sources.entries) == ["lazy", "toy"]
    assert host.tool_sources.get("toy") is tool_source_plugin.source
    assert host.tool_sources.get("lazy") == "tool_source_plugin:ToySource"  # not imported yet
    lazy = host.tool_sources.resolve("lazy")
    assert type(lazy).__name__ == "ToySource" and lazy is not tool_source_plugin.source
    errors = "\n".join(host.registration_errors)
    assert "'toy' is registered by both plugin 'tool_source_plugin' and plugin 'Elsewhere'" in (
        errors
    )
    assert "the tool source prefix 'Bad Prefix'" in errors
    assert "has the methods of framework.llm.ToolSource" in errors
    by_name = {info.name: info for info in host.plugin_infos()}
    assert by_name["tool_source_plugin"].registered["tool_sources"] == ["toy"]
    assert by_name["Elsewhere"].registered["tool_sources"] == ["lazy"]
    # A runner built in code collects its own plugins' sources.
    runner = WorkerRunner(plugins=[tool_source_plugin])
    assert list(runner.tool_sources.entries) == ["toy"]


def _ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.mark.anyio
async def test_an_llm_worker_calls_the_tools_of_its_sources() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[tool_source_plugin]) as runner:
            await runner.add_worker(LLMWorker("bot", tools=["toy:greeter"]))
            await runner.add_worker(LLMWorker("plain"))
            async with runner.job("bot", payload=_ask('use greeter_hello {"who": "ann"}')) as job:
                pass
            async with runner.job("bot", payload=_ask("use greeter_hello {}")) as failing:
                pass
            async with runner.job("plain", payload=_ask("use greeter_hello {}")) as plain:
                pass
    reply = job.response["message"]["content"]
    assert 'greeter_hello returned {"hello": "ann", "from": "greeter"}' in reply
    # A tool that raises: the model is told, and the job goes on.
    assert "say who" in failing.response["message"]["content"]
    assert "I have no tool named greeter_hello" in plain.response["message"]["content"]


@pytest.mark.anyio
async def test_a_source_that_fails_costs_its_tools_for_the_run_with_a_warning() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[tool_source_plugin]) as runner:
            await runner.add_worker(LLMWorker("bot", tools=["toy:down", "toy:up"]))
            async with runner.job("bot", payload=_ask('use up_hello {"who": "bo"}')) as job:
                updates = [e.data async for e in job if e.type == JobEvent.UPDATE]
    assert updates == [
        {
            "warning": "worker 'bot': the tools of 'toy:down' are left out of this run: "
            "ConnectionError: the toy server is down",
            "tools": "toy:down",
        }
    ]
    assert '"hello": "bo"' in job.response["message"]["content"]


@pytest.mark.anyio
async def test_an_unknown_prefix_fails_the_worker_at_start() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[tool_source_plugin]) as runner:
            await runner.add_worker(LLMWorker("bot", tools=["nope:x"]))
            while "bot" not in runner.failed_workers:
                await anyio.sleep(0.01)
            error = runner.failed_workers["bot"].error
    assert "tools entry 'nope:x': no tool source 'nope' is installed (installed: 'toy:')" in error


@pytest.mark.anyio
async def test_a_misspelt_prefix_says_which_entry_was_meant() -> None:
    with anyio.fail_after(10):
        async with WorkerRunner(plugins=[tool_source_plugin]) as runner:
            await runner.add_worker(LLMWorker("bot", tools=["tyo:greeter"]))
            while "bot" not in runner.failed_workers:
                await anyio.sleep(0.01)
            error = runner.failed_workers["bot"].error
    assert (
        "tools entry 'tyo:greeter': no tool source 'tyo' is installed; "
        "did you mean 'toy:greeter'? (installed: 'toy:')"
    ) in error
    assert "install the plugin" not in error


def test_entries_that_are_not_prefix_colon_name_are_refused() -> None:
    with pytest.raises(ValueError, match="write 'PREFIX:NAME'"):
        LLMWorker("bot", tools=["time"])
    with pytest.raises(ValueError, match="write 'PREFIX:NAME'"):
        LLMWorkerConfig(tools=["Mcp:time"])
    assert LLMWorker("bot", config={"tools": ["mcp:time"]}).tool_refs == ["mcp:time"]


# ----------------------------------------------------------------- framework run's checks


def run_with(tmp_path: Path, config: str, *args: str) -> Result:
    path = tmp_path / "framework.toml"
    path.write_text(config)
    return CliRunner().invoke(
        cli,
        ["-p", "tool_source_plugin", *args, "config", "check", "--config", str(path)],
        env=ENV,
        catch_exceptions=False,
    )


def test_framework_run_checks_each_entry_before_starting(tmp_path: Path) -> None:
    result = run_with(
        tmp_path,
        '[[workers]]\ntype = "assistant"\n[workers.config]\n'
        'tools = ["toy:greeter", "nope:x", "toy:nobody", "tyo:greeter"]\n',
    )
    assert result.exit_code == 2, result.output
    assert "3 problems" in result.stderr
    assert (
        "workers.0.config.tools.3: no tool source 'tyo' is installed; "
        "did you mean 'toy:greeter'? (installed: 'toy:')"
    ) in result.stderr
    assert (
        "workers.0.config.tools.1: no tool source 'nope' is installed (installed: 'toy:')"
        in result.stderr
    )
    assert (
        "workers.0.config.tools.2: 'toy:nobody': there is nobody to say hello to" in result.stderr
    )


def test_a_malformed_entry_or_key_names_the_key(tmp_path: Path) -> None:
    result = run_with(
        tmp_path, '[[workers]]\ntype = "assistant"\n[workers.config]\ntools = ["x"]\n'
    )
    assert result.exit_code == 2
    assert "workers.0.config.tools.0" in result.stderr
    assert "write 'PREFIX:NAME'" in result.stderr
    result = run_with(tmp_path, '[[workers]]\ntype = "assistant"\n[workers.config]\ntool = []\n')
    assert result.exit_code == 2
    assert "workers.0.config.tool" in result.stderr


def test_good_entries_pass_the_check(tmp_path: Path) -> None:
    result = run_with(
        tmp_path, '[[workers]]\ntype = "assistant"\n[workers.config]\ntools = ["toy:greeter"]\n'
    )
    assert result.exit_code == 0, result.output
