"""The ``framework`` command, in-process (click's runner) and, where the process matters,
as a subprocess. Installed entry-point plugins never leak in: autoload is off and the
test plugin is loaded with ``-p sample_plugin`` (a module in tests/)."""

from __future__ import annotations

import json
import os
import shutil
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


@pytest.fixture(autouse=True)
def _in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no framework.toml or pyproject.toml around


def invoke(*args: str, env: dict[str, Any] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**ENV, **(env or {})}, catch_exceptions=False)


def test_help_lists_the_built_in_commands() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("plugins", "run", "install", "uninstall"):
        assert command in result.output


def test_help_works_with_a_plugin_that_fails_to_import() -> None:
    result = invoke("-p", "no_such_plugin_module", "--help")
    assert result.exit_code == 0
    assert "Commands:" in result.output
    assert "plugin 'no_such_plugin_module'" in result.stderr
    assert "not loaded" in result.stderr


def test_strict_mode_turns_a_load_failure_into_an_error() -> None:
    result = invoke("--strict-plugins", "-p", "no_such_plugin_module", "plugins")
    assert result.exit_code == 1
    assert "no_such_plugin_module" in result.stderr
    result = invoke("-p", "no_such_plugin_module", "plugins", env={"FRAMEWORK_STRICT_PLUGINS": "1"})
    assert result.exit_code == 1


def test_plugins_lists_builtins_and_what_each_registered() -> None:
    result = invoke("-p", "sample_plugin", "plugins")
    assert result.exit_code == 0, result.output
    assert "local: agent-plugin-framework" in result.output
    assert "[built-in]" in result.output
    assert "sample_plugin: (registered in code)" in result.output
    assert "workers: greeter-worker, counter, secretive, sleepy" in result.output
    assert "commands: sample-hello" in result.output

    data = json.loads(invoke("-p", "sample_plugin", "plugins", "--json").output)
    by_name = {p["name"]: p for p in data}
    assert by_name["local"]["builtin"] is True
    assert by_name["local"]["registered"] == {"buses": ["local"]}
    sample = by_name["sample_plugin"]
    assert "register_workers" in sample["hooks"]
    assert sample["registered"]["buses"] == ["sample"]
    assert sample["error"] is None


def test_blocking_a_builtin_removes_it() -> None:
    data = json.loads(invoke("-p", "no:console", "plugins", "--json").output)
    assert "console" not in {p["name"] for p in data}
    result = invoke("-p", "no:local", "run", "--job", "x")
    assert result.exit_code == 2
    assert "no bus is registered for 'local://'" in result.stderr


def test_run_job_prints_updates_stream_and_response() -> None:
    result = invoke("-p", "sample_plugin", "run", "--job", "counter", "--payload", '{"n": 2}')
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ['{"chunks": 2}']  # stdout: the response only
    assert [line for line in result.stderr.splitlines() if "framework:" not in line] == [
        'update: {"done": 0}',
        'stream: {"i": 0}',
        'update: {"done": 1}',
        'stream: {"i": 1}',
    ]


def test_run_job_json_lines() -> None:
    result = invoke(
        "-p",
        "sample_plugin",
        "run",
        "--job",
        "greeter-worker",
        "--payload",
        '{"who": "you"}',
        "--json",
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"type": "response", "status": "completed", "response": {"greeting": "hello you"}}
    ]


def test_a_job_that_does_not_complete_exits_non_zero_naming_worker_and_status() -> None:
    result = invoke("-p", "sample_plugin", "run", "--job", "counter", "--payload", '{"n": -1}')
    assert result.exit_code == 1
    assert "job to worker 'counter' ended failed: n must be >= 0, got -1" in result.stderr


def test_a_missing_worker_is_a_clear_message_at_once() -> None:
    result = invoke("-p", "sample_plugin", "run", "--job", "ghost", "--timeout", "5")
    assert result.exit_code == 1
    assert "no worker named 'ghost'" in result.stderr
    assert "greeter-worker" in result.stderr  # what runs instead


def test_bad_payloads_and_options_are_usage_errors() -> None:
    result = invoke("run", "--job", "x", "--payload", "{not json")
    assert result.exit_code == 2
    assert "--payload" in result.stderr and "not valid JSON" in result.stderr
    result = invoke("run", "--job", "x", "--payload", "[1, 2]")
    assert result.exit_code == 2
    assert "must be a JSON object" in result.stderr
    result = invoke("run", "--payload", "{}")
    assert result.exit_code == 2
    assert "go with --job" in result.stderr


def test_a_bad_config_exits_2_naming_file_key_and_reason_before_starting(tmp_path: Path) -> None:
    import sample_plugin

    sample_plugin.configured.clear()
    (tmp_path / "framework.toml").write_text('[[workers]]\ntype = "greeter-wroker"\n')
    result = invoke("-p", "sample_plugin", "run", "--job", "greeter-worker")
    assert result.exit_code == 2
    assert (
        "framework.toml: workers.0.type: no worker 'greeter-wroker' is registered" in result.stderr
    )
    assert "greeter-worker" in result.stderr
    assert sample_plugin.configured == []  # nothing started

    (tmp_path / "framework.toml").write_text('[[workers]]\ntype = "secretive"\n')
    result = invoke("-p", "sample_plugin", "run", "--job", "secretive")
    assert result.exit_code == 2
    assert "workers.0.config.api_key: Field required" in result.stderr


def test_configured_workers_with_settings_and_secrets_from_the_environment(tmp_path: Path) -> None:
    (tmp_path / "framework.toml").write_text(
        'name = "configured"\n'
        '[[workers]]\ntype = "secretive"\nname = "s1"\n'
        '[workers.config]\ngreeting = "hey"\napi_key = { env = "TEST_KEY" }\n'
        '[publishers.jsonl]\npath = "events.jsonl"\n'
    )
    secret = "sk-do-not-print-4242"
    result = invoke("-v", "-p", "sample_plugin", "run", "--job", "s1", env={"TEST_KEY": secret})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"greeting": "hey", "key_length": len(secret)}
    assert "node_execution/start" in result.stderr  # -v: the console publisher
    events = (tmp_path / "events.jsonl").read_text()
    assert '"node_name":"s1"' in events
    for text in (result.stdout, result.stderr, events):
        assert secret not in text

    result = invoke("-p", "sample_plugin", "run", "--job", "s1")
    assert result.exit_code == 2
    assert "workers.0.config.api_key: environment variable TEST_KEY is not set" in result.stderr


def test_bus_option_picks_the_registered_scheme() -> None:
    result = invoke("-p", "sample_plugin", "run", "--bus", "sample://x", "--job", "greeter-worker")
    assert result.exit_code == 0, result.output
    result = invoke("-p", "sample_plugin", "run", "--bus", "redis://localhost", "--job", "x")
    assert result.exit_code == 2
    assert "no bus is registered for 'redis://localhost'" in result.stderr
    assert "agent-plugin-redis" in result.stderr


def test_a_registration_clash_stops_run_naming_both_plugins() -> None:
    result = invoke("-p", "sample_plugin", "-p", "clashing_plugin", "run", "--job", "counter")
    assert result.exit_code == 1
    assert "'sample_plugin'" in result.stderr and "'clashing_plugin'" in result.stderr


def test_install_and_uninstall_use_pip_of_this_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import framework._install

    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    monkeypatch.setattr(framework._install, "run_installer", lambda cmd: calls.append(cmd) or 0)
    assert invoke("install", "agent-plugin-echo").exit_code == 0
    assert invoke("uninstall", "-y", "agent-plugin-echo").exit_code == 0
    assert calls == [
        [sys.executable, "-m", "pip", "install", "agent-plugin-echo"],
        [sys.executable, "-m", "pip", "uninstall", "agent-plugin-echo", "-y"],
    ]


def test_install_falls_back_to_uv_without_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    calls: list[list[str]] = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "pip" else real_find_spec(name)
    )
    monkeypatch.setattr(shutil, "which", lambda name: "/opt/uv" if name == "uv" else None)
    import framework._install

    monkeypatch.setattr(framework._install, "run_installer", lambda cmd: calls.append(cmd) or 0)
    assert invoke("install", "agent-plugin-echo").exit_code == 0
    assert calls == [["/opt/uv", "pip", "install", "--python", sys.executable, "agent-plugin-echo"]]
    monkeypatch.setattr(shutil, "which", lambda name: None)
    result = invoke("install", "x")
    assert result.exit_code == 1
    assert "neither pip nor uv" in result.stderr


def test_trace_hooks_prints_every_hook_call() -> None:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "FRAMEWORK_TRACE_HOOKS": "1"}
    env["FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "framework", "-p", "sample_plugin", "run", "--job", "counter"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=TESTS,
    )
    assert result.returncode == 0, result.stderr
    assert "[framework hook] register_workers -> plugin 'sample_plugin'" in result.stderr
    assert "[framework hook] configure_runner -> plugin 'sample_plugin'" in result.stderr
    assert "[framework hook] register_buses -> plugin 'local'" in result.stderr


def test_timeout_goes_with_job_and_must_be_positive() -> None:
    result = invoke("run", "--timeout", "1")
    assert result.exit_code == 2
    assert "--timeout goes with --job" in result.stderr
    result = invoke("run", "--job", "x", "--timeout", "-1")
    assert result.exit_code == 2
    assert "positive" in result.stderr


def test_strict_mode_also_refuses_registration_clashes() -> None:
    args = ("-p", "sample_plugin", "-p", "clashing_plugin", "plugins")
    assert invoke(*args).exit_code == 0  # reported, not fatal
    result = invoke("--strict-plugins", *args)
    assert result.exit_code == 1
    assert "'sample_plugin'" in result.stderr and "'clashing_plugin'" in result.stderr


def test_a_clash_costs_only_the_clashing_name() -> None:
    data = json.loads(
        invoke("-p", "sample_plugin", "-p", "clashing_plugin", "plugins", "--json").stdout
    )
    by_name = {p["name"]: p for p in data}
    registered = by_name["sample_plugin"]["registered"]["workers"]
    registered += by_name["clashing_plugin"]["registered"].get("workers", [])
    assert sorted(registered) == ["counter", "greeter-worker", "secretive", "sleepy"]
    errors = [p["error"] for p in data if p["error"]]
    assert len(errors) == 1 and "'counter'" in errors[0]


def test_passwords_in_bus_urls_are_never_printed() -> None:
    """The command's messages show bus URLs through ``framework.urls.redact_url``
    (tests/test_urls.py tests it)."""
    result = invoke("run", "--bus", "nats://me:s3cret@host:4222", "--job", "x")
    assert result.exit_code == 2
    assert "s3cret" not in result.output
    assert "nats://me:***@host:4222" in result.stderr


def test_sigterm_during_a_job_cancels_it_and_exits_130() -> None:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "framework", "-p", "sample_plugin", "run", "--job", "sleepy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=TESTS,
    )
    try:
        assert process.stderr is not None
        while (line := process.stderr.readline()) and not line.startswith("update:"):
            pass  # the warning about the worker that needs settings
        assert line.strip() == 'update: {"started": true}'
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "SIGTERM received; the job to worker 'sleepy' was cancelled" in err


# ----------------------------------------------------------------- plugins that misbehave


def test_a_plugin_calling_sys_exit_on_import_costs_only_itself() -> None:
    result = invoke("-p", "misbehaving.exits", "--help")
    assert result.exit_code == 0
    assert "Commands:" in result.stdout
    assert "plugin 'misbehaving.exits'" in result.stderr and "SystemExit" in result.stderr
    data = json.loads(invoke("-p", "misbehaving.exits", "plugins", "--json").stdout)
    error = next(p["error"] for p in data if p["name"] == "misbehaving.exits")
    assert "needs redis" in error


def test_a_plugin_printing_while_loading_cannot_corrupt_json_output() -> None:
    result = invoke("-p", "misbehaving.prints", "plugins", "--json")
    assert result.exit_code == 0
    json.loads(result.stdout)  # stdout is pure JSON
    assert "HELLO FROM A CHATTY PLUGIN" in result.stderr


def test_a_worker_whose_constructor_raises_costs_only_that_worker() -> None:
    result = invoke("-p", "sample_plugin", "-p", "misbehaving.bad_init", "run", "--job", "counter")
    assert result.exit_code == 0, result.output
    assert "worker 'explodes' (plugin 'misbehaving.bad_init') not started" in result.stderr
    assert "RuntimeError: init boom" in result.stderr


def test_plugin_commands_cannot_take_names_that_are_taken() -> None:
    args = ("-p", "sample_plugin", "-p", "misbehaving.commands")
    # The plugin whose hook runs first keeps the name (pluggy: the last registered first).
    assert invoke(*args, "sample-hello").stdout == "the impostor says hello\n"
    listing = invoke(*args, "plugins")
    assert "hijacked" not in listing.stdout  # the built-in `plugins` ran
    assert "command 'plugins' is registered by both the framework command and plugin" in (
        listing.stderr
    )
    assert (
        "command 'sample-hello' is registered by both plugin 'misbehaving.commands' and "
        "plugin 'sample_plugin'"
    ) in listing.stderr
    failed = invoke(*args, "explode")
    assert failed.exit_code == 1
    assert "command 'explode' (plugin 'misbehaving.commands') failed: RuntimeError: kaboom" in (
        failed.stderr
    )


def test_an_async_registration_hook_is_refused_naming_plugin_and_hook() -> None:
    result = invoke("-p", "misbehaving.async_register", "plugins")
    assert "plugin 'misbehaving.async_register': register_workers must be a plain function" in (
        result.stderr
    )


def test_a_failing_bus_factory_is_a_config_error_without_the_password() -> None:
    result = invoke("-p", "misbehaving.bad_bus", "run", "--bus", "boom://user:hunter2@host/0")
    assert result.exit_code == 2
    assert "hunter2" not in result.output
    assert "the boom:// bus of plugin 'misbehaving.bad_bus' could not be made" in result.stderr


def test_a_config_that_is_not_utf8_or_names_the_runner_like_a_worker(tmp_path: Path) -> None:
    (tmp_path / "framework.toml").write_text('name = "x"\n', encoding="utf-16")
    result = invoke("run", "--job", "x")
    assert result.exit_code == 2
    assert "not UTF-8" in result.stderr
    (tmp_path / "framework.toml").write_text('name = "counter"\n')
    result = invoke("-p", "sample_plugin", "run", "--job", "counter")
    assert result.exit_code == 2
    assert "framework.toml: name: the runner's name 'counter' is also a worker's" in result.stderr


def test_a_missing_p_module_is_shown_as_not_loaded() -> None:
    result = invoke("-p", "no_such_plugin_module", "plugins")
    assert "no_such_plugin_module: (not loaded)" in result.stdout


def test_a_hookimpl_with_a_wrong_argument_name_is_one_line() -> None:
    result = invoke("-p", "misbehaving.wrong_argument", "plugins")
    lines = [line for line in result.stderr.splitlines() if "misbehaving.wrong_argument" in line]
    assert len(lines) == 1
    assert "registrar" in lines[0] and "register_workers" in lines[0]


def test_verbose_shows_the_traceback_of_a_job_that_raised() -> None:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    command = [sys.executable, "-m", "framework", "-p", "misbehaving.bad_job"]
    quiet = subprocess.run(
        [*command, "run", "--job", "raiser"], capture_output=True, text=True, env=env, timeout=60
    )
    loud = subprocess.run(
        [*command, "-v", "run", "--job", "raiser"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert quiet.returncode == loud.returncode == 1
    assert "ended error: ZeroDivisionError" in quiet.stderr
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr and "ZeroDivisionError" in loud.stderr
