"""``framework.cli.run_with_runner``: a plugin's command runs the runner ``framework run``
would start (plugins, configuration, workers, checks and exit codes alike). The command
under test is ``ask`` of ``tests/runner_command_plugin.py``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from framework.cli import cli

TESTS = Path(__file__).resolve().parent
ENV = {"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1", "FRAMEWORK_PLUGINS": None, "TEST_KEY": None}
PLUGINS = ("-p", "sample_plugin", "-p", "runner_command_plugin")


@pytest.fixture(autouse=True)
def _in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no framework.toml or pyproject.toml around


def invoke(*args: str, env: dict[str, Any] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**ENV, **(env or {})}, catch_exceptions=False)


def test_main_runs_with_the_workers_framework_run_starts_then_the_runner_ends() -> None:
    result = invoke(*PLUGINS, "ask", "greeter-worker")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["response"] == {"greeting": "hello you"}
    assert {"greeter-worker", "counter", "sleepy"} <= set(answer["workers"])
    assert "ended" in result.stderr  # the runner ended when main returned


def test_an_int_main_returns_is_the_exit_code() -> None:
    result = invoke(*PLUGINS, "ask", "greeter-worker", "--code", "3")
    assert result.exit_code == 3, result.output
    assert json.loads(result.stdout)["response"] == {"greeting": "hello you"}


def test_the_configuration_file_and_configure_runner_pick_the_workers(tmp_path: Path) -> None:
    config = tmp_path / "mine.toml"
    config.write_text('[[workers]]\ntype = "greeter-worker"\nname = "greeter"\n')
    result = invoke(*PLUGINS, "ask", "greeter", "--config", str(config))
    assert result.exit_code == 0, result.output
    # The configured worker, and the one sample_plugin's configure_runner adds.
    assert json.loads(result.stdout)["workers"] == ["added-later", "greeter"]


def test_a_bad_configuration_exits_2_naming_the_key_before_anything_starts(
    tmp_path: Path,
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[workers]]\ntype = "nobody"\n')
    result = invoke(*PLUGINS, "ask", "nobody", "--config", str(config))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "configuration error" in result.stderr
    assert "workers.0.type" in result.stderr
    assert "no worker 'nobody' is registered" in result.stderr


def test_plugin_selection_applies_to_the_command() -> None:
    result = invoke("-p", "runner_command_plugin", "ask", "greeter-worker")
    assert result.exit_code == 0, result.output
    workers = json.loads(result.stdout)["workers"]
    assert "assistant" in workers  # a built-in
    assert "greeter-worker" not in workers  # sample_plugin is not loaded


def test_sigterm_ends_the_runner_and_cancels_main() -> None:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "framework", *PLUGINS, "ask", "sleepy", "--wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=TESTS,
    )
    try:
        assert process.stderr is not None
        while (line := process.stderr.readline()) and line.strip() != "waiting":
            pass
        assert line.strip() == "waiting"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "main cancelled" in err
    assert out == ""
