"""What a person types into ``framework``: flags after the command, exit codes that tell
outcomes apart (in-process and over ``--url``), ``--payload @file`` and ``-``, "did you
mean", job names checked before sending, a network bus that fails fast once settled, every
configuration problem at once, ``--version``, ``config check``, completion, the first
Ctrl-C of a serving runner, and ``uninstall`` without a terminal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from framework.cli import cli

TESTS = Path(__file__).resolve().parent
ENV = {"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1", "FRAMEWORK_PLUGINS": None, "FRAMEWORK_URL": None}
PROCESS_ENV = {**os.environ, "PYTHONPATH": str(TESTS), "FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1"}
PROCESS_ENV.pop("FRAMEWORK_URL", None)
PROCESS_ENV.pop("FRAMEWORK_HTTP_TOKEN", None)


@pytest.fixture(autouse=True)
def _in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=ENV, input=stdin, catch_exceptions=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ----------------------------------------------------------------- flags after the command


def test_verbose_and_strict_plugins_are_accepted_after_the_command() -> None:
    result = invoke("run", "-v", "--job", "counter", "-p", "sample_plugin")
    assert result.exit_code == 0, result.output
    assert "node_execution/start" in result.stderr  # the console publisher of -v
    assert invoke("plugins", "-p", "no_such_plugin_module").exit_code == 0
    strict = invoke("plugins", "--strict-plugins", "-p", "no_such_plugin_module")
    assert strict.exit_code == 1
    assert "no_such_plugin_module" in strict.stderr


# ----------------------------------------------------------------- exit codes, in-process


def test_exit_codes_tell_completed_failed_cancelled_and_timed_out_apart() -> None:
    p = ("-p", "sample_plugin", "-p", "named_jobs_plugin")
    assert invoke(*p, "run", "--job", "counter").exit_code == 0
    assert invoke(*p, "run", "--job", "counter", "--payload", '{"n": -1}').exit_code == 1
    cancelled = invoke(*p, "run", "--job", "quitter")
    assert cancelled.exit_code == 3
    assert "job to worker 'quitter' ended cancelled: the quitter quit" in cancelled.stderr
    timed_out = invoke(*p, "run", "--job", "sleepy", "--timeout", "0.5")
    assert timed_out.exit_code == 124
    assert "job to worker 'sleepy' timed out after 0.5 s; it was cancelled" in timed_out.stderr
    assert json.loads(timed_out.stdout.splitlines()[-1]) == {"error": "timed out after 0.5 s"}


# ----------------------------------------------------------------- --payload


def test_payload_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    (tmp_path / "payload.json").write_text('{"who": "file"}')
    from_file = invoke(
        "-p", "sample_plugin", "run", "--job", "greeter-worker", "--payload", "@payload.json"
    )
    assert from_file.exit_code == 0, from_file.output
    assert json.loads(from_file.stdout) == {"greeting": "hello file"}
    from_stdin = invoke(
        "-p",
        "sample_plugin",
        "run",
        "--job",
        "greeter-worker",
        "--payload",
        "-",
        stdin='{"who": "pipe"}',
    )
    assert json.loads(from_stdin.stdout) == {"greeting": "hello pipe"}
    missing = invoke("run", "--job", "x", "--payload", "@nope.json")
    assert missing.exit_code == 2
    assert "cannot read 'nope.json'" in missing.stderr
    (tmp_path / "list.json").write_text("[1]")
    wrong = invoke("run", "--job", "x", "--payload", "@list.json")
    assert wrong.exit_code == 2
    assert "must be a JSON object" in wrong.stderr and "(in list.json)" in wrong.stderr


# ----------------------------------------------------------------- names


def test_did_you_mean_for_workers_and_configured_types(tmp_path: Path) -> None:
    result = invoke("-p", "sample_plugin", "run", "--job", "greeter")
    assert result.exit_code == 1
    assert "no worker named 'greeter' on this runner; did you mean 'greeter-worker'?" in (
        result.stderr
    )
    (tmp_path / "framework.toml").write_text('[[workers]]\ntype = "countr"\n')
    result = invoke("-p", "sample_plugin", "run", "--job", "counter")
    assert result.exit_code == 2
    assert "no worker 'countr' is registered; did you mean 'counter'?" in result.stderr


def test_job_names_are_checked_when_the_worker_has_no_default_handler() -> None:
    p = ("-p", "named_jobs_plugin", "run", "--job", "calc")
    typo = invoke(*p, "--name", "ad")
    assert typo.exit_code == 2
    assert "worker 'calc' has no job named 'ad'; did you mean 'add'? (its jobs: add, multiply)" in (
        typo.stderr
    )
    missing = invoke(*p)
    assert missing.exit_code == 2
    assert "worker 'calc' has no default handler: give --name (its jobs: add, multiply)" in (
        missing.stderr
    )
    good = invoke(*p, "--name", "add", "--payload", '{"a": 2, "b": 3}')
    assert good.exit_code == 0 and json.loads(good.stdout) == {"sum": 5}


def test_a_bus_that_settles_fails_fast_listing_its_workers(tmp_path: Path) -> None:
    (tmp_path / "framework.toml").write_text('[[workers]]\ntype = "calc"\n')
    start = time.monotonic()
    result = invoke("-p", "named_jobs_plugin", "run", "--bus", "settling://", "--job", "calx")
    assert time.monotonic() - start < 5  # not the 10 s wait for a worker to appear
    assert result.exit_code == 1
    assert "no worker named 'calx' on settling://; did you mean 'calc'? (workers: calc)" in (
        result.stderr
    )


# ----------------------------------------------------------------- configuration


def test_every_configuration_problem_is_listed_at_once(tmp_path: Path) -> None:
    (tmp_path / "framework.toml").write_text('nme = "x"\ngrace_period = -1\n')
    result = invoke("run", "--job", "x")
    assert result.exit_code == 2
    assert "framework.toml: 2 problems:\n  nme: unknown key" in result.stderr
    assert "\n  grace_period: Input should be greater than or equal to 0" in result.stderr
    assert "more problem" not in result.stderr
    (tmp_path / "framework.toml").write_text(
        '[[workers]]\ntype = "countr"\n[[workers]]\ntype = "counter"\nconfig = { a = 1 }\n'
    )
    result = invoke("-p", "sample_plugin", "config", "check")
    assert result.exit_code == 2
    assert "  workers.0.type: no worker 'countr'" in result.stderr
    assert "  workers.1: worker 'counter' cannot be built" in result.stderr


def test_config_check_reports_a_good_configuration_without_starting_anything(
    tmp_path: Path,
) -> None:
    import sample_plugin

    sample_plugin.configured.clear()
    (tmp_path / "framework.toml").write_text('name = "svc"\n[[workers]]\ntype = "counter"\n')
    result = invoke("-p", "sample_plugin", "config", "check")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].endswith("framework.toml: good")
    assert "  workers: counter" in result.stdout
    assert "  runner: svc" in result.stdout
    assert sample_plugin.configured == []  # no runner was configured, so none started
    bad_bus = invoke("-p", "sample_plugin", "config", "check", "--bus", "nope://x")
    assert bad_bus.exit_code == 2
    assert "no bus is registered for 'nope://x'" in bad_bus.stderr


def test_version_lists_the_plugins_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An installed distribution, as importlib.metadata finds one on sys.path.
    (tmp_path / "agent_plugin_fakever").mkdir()
    (tmp_path / "agent_plugin_fakever" / "__init__.py").write_text("")
    info = tmp_path / "agent_plugin_fakever-2.5.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: agent-plugin-fakever\nVersion: 2.5.0\n"
    )
    (info / "entry_points.txt").write_text("[framework]\nfakever = agent_plugin_fakever\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = invoke("-p", "sample_plugin", "-p", "fakever", "--version")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("framework (agent-plugin-framework) ")
    assert "  fakever: agent-plugin-fakever 2.5.0" in lines
    assert "  sample_plugin: (registered in code)" in lines


def test_shell_completion_completes_worker_names(tmp_path: Path) -> None:
    (tmp_path / "framework.toml").write_text('[[workers]]\ntype = "counter"\nname = "c-1"\n')
    env = {
        **PROCESS_ENV,
        "_FRAMEWORK_COMPLETE": "bash_complete",
        "COMP_WORDS": "framework -p sample_plugin run --job c",
        "COMP_CWORD": "5",
    }
    result = subprocess.run(
        [sys.executable, "-m", "framework", "-p", "sample_plugin", "run", "--job", "c"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.stdout.splitlines() == ["plain,c-1", "plain,counter"], result.stderr


# ----------------------------------------------------------------- exit codes over --url


def test_exit_codes_and_name_checks_are_the_same_over_url() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "framework", "-p", "http_plugin", "-p", "named_jobs_plugin"),
            *("-p", "sample_plugin", "run", "--http", f"127.0.0.1:{port}"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=PROCESS_ENV,
        cwd=TESTS,
    )

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "framework", "run", "--url", url, *args],
            capture_output=True,
            text=True,
            env=PROCESS_ENV,
            timeout=60,
        )

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        cancelled = client("--job", "quitter")
        timed_out = client("--job", "sleepy", "--timeout", "0.5")
        typo = client("--job", "calc", "--name", "ad")
        unknown = client("--job", "calk")
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=15)
    assert cancelled.returncode == 3, cancelled.stderr
    assert f"job to worker 'quitter' ended cancelled on the runner at {url}" in cancelled.stderr
    assert timed_out.returncode == 124, timed_out.stderr
    assert "job to worker 'sleepy' timed out after 0.5 s; it was cancelled" in timed_out.stderr
    assert typo.returncode == 2
    assert "has no job named 'ad'; did you mean 'add'?" in typo.stderr
    assert unknown.returncode == 1
    assert "no worker named 'calk' on the runner at" in unknown.stderr
    assert "did you mean 'calc'?" in unknown.stderr


# ----------------------------------------------------------------- the first Ctrl-C


def test_the_first_ctrl_c_of_a_serving_runner_says_what_it_waits_for() -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framework",
            "-p",
            "http_plugin",
            "run",
            "--http",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=PROCESS_ENV,
        cwd=TESTS,
    )
    try:
        assert server.stderr is not None
        server.stderr.readline()  # the banner's two lines
        server.stderr.readline()
        body: dict[str, Any] = {"worker": "tools", "name": "sleep", "payload": {}}
        answer = httpx.post(f"{url}/v1/jobs?wait=false", json=body, timeout=10)
        assert answer.status_code == 202
        time.sleep(0.3)  # the job is running
        server.send_signal(signal.SIGINT)
        line = server.stderr.readline()
        server.send_signal(signal.SIGINT)
        _, rest = server.communicate(timeout=15)
    finally:
        server.kill()
    assert "SIGINT: ending runner" in line
    assert "waiting up to 5 s for 1 running job (tools: 1)" in line
    assert "press Ctrl-C again (or send SIGTERM) to cancel it now" in line
    assert server.returncode == 0, rest


# ----------------------------------------------------------------- uninstall


def test_uninstall_without_yes_and_without_a_terminal_says_to_add_y(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    result = invoke("uninstall", "agent-plugin-echo", stdin="")
    assert result.exit_code == 2
    assert "add -y (framework uninstall -y agent-plugin-echo)" in result.stderr
    assert calls == []  # pip was not started to fail on EOF


# ----------------------------------------------------------------- plugin failures


def test_an_import_failure_names_file_and_line_and_verbose_prints_the_traceback() -> None:
    quiet = invoke("-p", "misbehaving.needs_env", "plugins")
    line = next(x for x in quiet.stderr.splitlines() if "misbehaving.needs_env" in x)
    assert "KeyError: 'BROKEN_API_KEY'" in line
    assert f"(at {TESTS / 'misbehaving' / 'needs_env.py'}, line 5)" in line
    assert "Traceback" not in quiet.stderr
    loud = invoke("-p", "misbehaving.needs_env", "plugins", "-v")
    assert "Traceback (most recent call last):" in loud.stderr
    assert 'needs_env.py", line 5, in <module>' in loud.stderr


def test_a_lazily_registered_worker_that_does_not_import_is_shown_broken() -> None:
    cheap = invoke("-p", "misbehaving.lazy_broken", "plugins")
    assert cheap.exit_code == 0
    block = cheap.stdout.split("misbehaving.lazy_broken: ", 1)[1]
    assert block.startswith("(registered in code)\n")
    assert "  workers: broken, missing (broken)\n" in block  # found or not, without importing
    assert "no module 'misbehaving.not_there' can be found" in block
    checked = invoke("-p", "misbehaving.lazy_broken", "plugins", "--check")
    block = checked.stdout.split("misbehaving.lazy_broken: ", 1)[1]
    assert "  workers: broken (broken), missing (broken)\n" in block
    assert "error: worker 'broken' is broken: " in block
    assert "KeyError: 'BROKEN_WORKER_SETTING'" in block
    assert "lazy_broken_workers.py, line 5)" in block
    assert "hint: to run without it: drop -p misbehaving.lazy_broken" in block
    data = json.loads(
        invoke("-p", "misbehaving.lazy_broken", "plugins", "--check", "--json").stdout
    )
    info = next(p for p in data if p["name"] == "misbehaving.lazy_broken")
    assert "worker 'broken' is broken" in info["error"]
    loud = invoke("-p", "misbehaving.lazy_broken", "plugins", "-v")  # -v imports them too
    assert "Traceback (most recent call last):" in loud.stderr
    assert "workers: broken (broken), missing (broken)" in loud.stdout


def test_the_remedy_names_p_no_and_uninstall_for_an_installed_plugin() -> None:
    from framework.plugins import PluginInfo, remedy

    installed = PluginInfo("redis", distribution="agent-plugin-redis", version="0.1.0")
    assert remedy(installed) == (
        "; to run without it: -p no:redis, or remove it: framework uninstall agent-plugin-redis"
    )
    assert remedy(PluginInfo("local", builtin=True)) == ""


# ----------------------------------------------------------------- installing, scaffolding


def test_install_of_a_name_no_index_has_says_how_to_install_it_instead(tmp_path: Path) -> None:
    index = tmp_path / "empty-index"
    index.mkdir()
    result = invoke(
        "install",
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--index-url",
        index.as_uri(),
        "agent-plugin-unpublished",
    )
    assert result.exit_code != 0
    assert "No matching distribution found for agent-plugin-unpublished" in result.stderr  # pip's
    assert "framework: 'agent-plugin-unpublished' is not on your package index" in result.stderr
    assert "framework install ./plugins/agent-plugin-unpublished" in result.stderr
    assert "git+https://github.com/" in result.stderr
    assert "#subdirectory=plugins/agent-plugin-unpublished'" in result.stderr
    assert "configuration.md#installing-plugins" in result.stderr


def test_new_plugin_writes_a_plugin_and_refuses_bad_names_and_existing_folders(
    tmp_path: Path,
) -> None:
    result = invoke("new-plugin", "web-search", "--directory", str(tmp_path))
    assert result.exit_code == 0, result.output
    root = tmp_path / "agent-plugin-web-search"
    assert "framework install -e '.[test]'" in result.stdout
    package = root / "src" / "agent_plugin_web_search"
    assert sorted(p.name for p in package.iterdir()) == ["__init__.py", "py.typed", "workers.py"]
    assert 'web-search = "agent_plugin_web_search"' in (root / "pyproject.toml").read_text()
    assert "class WebSearch(BaseWorker):" in (package / "workers.py").read_text()
    assert (root / "tests" / "test_workers.py").is_file()
    again = invoke("new-plugin", "web-search", "--directory", str(tmp_path))
    assert again.exit_code == 2
    assert "exists already" in again.stderr
    bad = invoke("new-plugin", "Web_Search")
    assert bad.exit_code == 2
    assert "cannot be a plugin name" in bad.stderr
