"""End to end: the real ``framework`` command in a fresh virtualenv, run as a user would.

One module-scoped fixture builds a virtualenv and pip-installs (not editable) the core,
``plugins/agent-plugin-echo`` and two deliberately broken plugin distributions kept under
``tests/plugins/`` (one fails to import, one misspells a hook). Each test then runs that
virtualenv's ``framework`` executable in a subprocess, with a timeout, and checks its exit
code and output.

The sources are copied to a temporary folder before they are built, so that building them
leaves nothing (``build/``, ``*.egg-info``) in the repository.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = {
    "core": REPO,
    "echo": REPO / "plugins" / "agent-plugin-echo",
    "broken-import": REPO / "tests" / "plugins" / "broken-import",
    "misspelled-hook": REPO / "tests" / "plugins" / "misspelled-hook",
}
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".tox", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.whl"
)

COMMAND_TIMEOUT = 30.0
"""Seconds any one ``framework`` command may take."""
INSTALL_TIMEOUT = 600.0

BROKEN = {"broken-import": "agent-plugin-broken-import", "misspelled": "agent-plugin-misspelled"}
"""The broken plugins: entry-point name -> distribution name."""
BUILTINS = ["local", "console", "jsonl", "memory", "offline", "assistant"]
ECHO_WORKERS = ["echo", "reverse", "count"]


def _version(source: Path) -> str:
    with (source / "pyproject.toml").open("rb") as file:
        version: str = tomllib.load(file)["project"]["version"]
    return version


ECHO_VERSION = _version(SOURCES["echo"])
BROKEN_VERSION = {
    "broken-import": _version(SOURCES["broken-import"]),
    "misspelled": _version(SOURCES["misspelled-hook"]),
}


@dataclass(frozen=True)
class Venv:
    """The test virtualenv and how to run its ``framework`` command."""

    path: Path
    workdir: Path
    """An empty folder (no framework.toml, no pyproject.toml): the default working directory."""

    @property
    def bin(self) -> Path:
        return self.path / ("Scripts" if os.name == "nt" else "bin")

    def environ(self, overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
        """The caller's environment without FRAMEWORK_* and PYTHONPATH, the venv first on
        PATH, then ``overrides`` (None unsets a variable)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FRAMEWORK_") and k not in ("PYTHONPATH", "PYTHONHOME")
        }
        env["VIRTUAL_ENV"] = str(self.path)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        for key, value in (overrides or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def framework(
        self,
        *args: str,
        env: Mapping[str, str | None] | None = None,
        cwd: Path | None = None,
        timeout: float = COMMAND_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``framework ARGS...`` and capture its output."""
        return subprocess.run(
            [str(self.bin / "framework"), *args],
            capture_output=True,
            text=True,
            env=self.environ(env),
            cwd=cwd or self.workdir,
            timeout=timeout,
        )


def _run_quietly(command: list[str], *, env: dict[str, str], what: str) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT
    )
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh virtualenv with the core, the echo plugin and the two broken plugins."""
    root = tmp_path_factory.mktemp("integration")
    copies = []
    for name, source in SOURCES.items():
        copies.append(shutil.copytree(source, root / "src" / name, ignore=COPY_IGNORE))
    workdir = root / "work"
    workdir.mkdir()
    venv = Venv(root / "venv", workdir)
    env = venv.environ({"VIRTUAL_ENV": None})
    _run_quietly([sys.executable, "-m", "venv", str(venv.path)], env=env, what="python -m venv")
    python = venv.bin / ("python.exe" if os.name == "nt" else "python")
    _run_quietly(
        [
            str(python),
            *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *(str(c) for c in copies),
        ],
        env=env,
        what="pip install",
    )
    return venv


def _blocks(text: str) -> dict[str, str]:
    """``framework plugins`` output, by plugin: each block is a header line and the indented
    lines below it."""
    blocks: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", text):
        blocks[block.split(":", 1)[0]] = block + "\n"
    return blocks


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _assert_reports_broken(stderr: str) -> None:
    """One line per broken plugin on stderr, naming the plugin and its distribution."""
    for name, dist in BROKEN.items():
        lines = [line for line in stderr.splitlines() if f"plugin {name!r}" in line]
        assert len(lines) == 1, stderr
        assert f"{dist} {BROKEN_VERSION[name]}" in lines[0]
        assert "not loaded" in lines[0]
    assert "ImportError" in stderr
    assert "'register_worker'" in stderr and "'register_workers'" in stderr
    assert "Traceback" not in stderr


def _assert_no_broken(stderr: str) -> None:
    for name, dist in BROKEN.items():
        assert name not in stderr and dist not in stderr, stderr


def _plugin_names(venv: Venv, env: Mapping[str, str | None], *args: str) -> list[str]:
    result = venv.framework(*args, "plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return [info["name"] for info in json.loads(result.stdout)]


# --------------------------------------------------------------------------- framework plugins


def test_plugins_lists_echo_and_reports_broken_plugins(venv: Venv) -> None:
    result = venv.framework("plugins")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"echo: agent-plugin-echo {ECHO_VERSION}\n" in out
    echo = _blocks(out)["echo"]
    assert "\n  module: agent_plugin_echo\n" in echo
    assert "\n  hooks: register_workers\n" in echo
    assert "\n  workers: echo, reverse, count\n" in echo
    assert "error" not in echo
    for name, dist in BROKEN.items():
        assert f"{name}: {dist} {BROKEN_VERSION[name]}\n" in out
    assert "error: import failed: ImportError: agent_plugin_broken_import is broken" in out
    assert re.search(r"error: plugin 'misspelled' implements unknown hook 'register_worker'", out)
    for name in BUILTINS:
        assert f"{name}: agent-plugin-framework " in out
    _assert_reports_broken(result.stderr)
    broken = next(line for line in result.stderr.splitlines() if "'broken-import'" in line)
    assert "agent_plugin_broken_import.py, line 3)" in broken  # where it raised
    assert "-p no:broken-import" in broken
    assert "framework uninstall agent-plugin-broken-import" in broken
    assert "hint: to run without it: -p no:broken-import" in _blocks(out)["broken-import"]


def test_verbose_plugins_prints_the_traceback_of_an_import_failure(venv: Venv) -> None:
    result = venv.framework("plugins", "-v")
    assert result.returncode == 0, result.stderr
    assert "Traceback (most recent call last):" in result.stderr
    assert 'agent_plugin_broken_import.py", line 3, in <module>' in result.stderr


def test_plugins_json(venv: Venv) -> None:
    result = venv.framework("plugins", "--json")
    assert result.returncode == 0, result.stderr
    infos = {info["name"]: info for info in json.loads(result.stdout)}
    assert set(infos) == {*BUILTINS, "echo", *BROKEN}
    echo = infos["echo"]
    assert echo["distribution"] == "agent-plugin-echo"
    assert echo["version"] == ECHO_VERSION
    assert echo["module"] == "agent_plugin_echo"
    assert echo["builtin"] is False
    assert echo["hooks"] == ["register_workers"]
    assert echo["registered"] == {"workers": ECHO_WORKERS}
    assert echo["error"] is None
    for name, dist in BROKEN.items():
        assert infos[name]["distribution"] == dist
        assert infos[name]["version"] == BROKEN_VERSION[name]
        assert infos[name]["registered"] == {}
    assert "ImportError" in infos["broken-import"]["error"]
    assert "'register_worker'" in infos["misspelled"]["error"]
    assert infos["local"]["builtin"] is True
    assert infos["local"]["registered"] == {"buses": ["local"]}


def test_plugins_requirements(venv: Venv) -> None:
    result = venv.framework("plugins", "--requirements")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # Installed from folders, not from an index: direct references pip can install again,
    # the core first (the plugins depend on it, and no index has it).
    assert lines[0].startswith("agent-plugin-framework @ file:///"), lines
    assert any(re.fullmatch(r"agent-plugin-echo @ file:///\S+/echo", x) for x in lines), lines
    assert len(lines) == len(set(lines))
    requirements = venv.workdir / "requirements.txt"
    requirements.write_text(result.stdout)
    dry_run = subprocess.run(
        [
            *(str(venv.bin / "python"), "-m", "pip", "install", "--dry-run", "--no-deps"),
            *("--quiet", "--disable-pip-version-check", "-r", str(requirements)),
        ],
        capture_output=True,
        text=True,
        env=venv.environ(),
        timeout=INSTALL_TIMEOUT,
    )
    assert dry_run.returncode == 0, dry_run.stderr


def test_help_works_despite_broken_plugins(venv: Venv) -> None:
    result = venv.framework("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: framework")
    for command in ("plugins", "run", "install", "uninstall"):
        assert re.search(rf"^\s+{command}\s", result.stdout, re.MULTILINE)
    _assert_reports_broken(result.stderr)


# --------------------------------------------------------------------------- framework run --job


def test_run_job_echo(venv: Venv) -> None:
    # Every plugin installed, broken ones included: they are reported and the job runs.
    result = venv.framework("run", "--job", "echo", "--payload", '{"text": "hi"}')
    assert result.returncode == 0, result.stderr
    assert _json_lines(result.stdout) == [{"text": "hi"}]
    _assert_reports_broken(result.stderr)


def test_run_job_reverse(venv: Venv) -> None:
    result = venv.framework("run", "--job", "reverse", "--payload", '{"text": "hello"}')
    assert result.returncode == 0, result.stderr
    assert _json_lines(result.stdout) == [{"text": "olleh"}]


def test_run_job_count_json(venv: Venv) -> None:
    result = venv.framework(
        "run",
        "--job",
        "count",
        "--payload",
        '{"n": 3}',
        "--json",
        env={"FRAMEWORK_PLUGINS": "echo"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    expected: list[dict[str, object]] = [{"type": "stream_start", "data": {}}]
    for i in (1, 2, 3):
        expected.append({"type": "stream_data", "data": {"n": i}})
        expected.append({"type": "update", "data": {"done": i, "of": 3}})
    expected.append({"type": "stream_end", "data": {}})
    expected.append({"type": "response", "status": "completed", "response": {"chunks": 3}})
    assert _json_lines(result.stdout) == expected


def test_run_job_count_text(venv: Venv) -> None:
    result = venv.framework(
        "run", "--job", "count", "--payload", '{"n": 2}', env={"FRAMEWORK_PLUGINS": "echo"}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"chunks": 2}']  # stdout: only the response
    assert result.stderr.splitlines() == [
        'stream: {"n": 1}',
        'update: {"done": 1, "of": 2}',
        'stream: {"n": 2}',
        'update: {"done": 2, "of": 2}',
    ]


def test_run_failed_job(venv: Venv) -> None:
    result = venv.framework("run", "--job", "reverse", env={"FRAMEWORK_PLUGINS": "echo"})
    assert result.returncode != 0
    [response] = _json_lines(result.stdout)
    assert 'reverse needs a string "text"' in str(response["error"])
    last = result.stderr.strip().splitlines()[-1]
    assert "'reverse'" in last and "failed" in last and 'reverse needs a string "text"' in last


@pytest.mark.parametrize("blocked", ["echo", "agent-plugin-echo"])
def test_run_with_echo_blocked(venv: Venv, blocked: str) -> None:
    for args in (("-p", f"no:{blocked}", "run"), ("run", "-p", f"no:{blocked}")):
        result = venv.framework(*args, "--job", "echo", "--payload", '{"text": "hi"}')
        assert result.returncode != 0
        assert result.stdout == ""
        last = result.stderr.strip().splitlines()[-1]
        assert "no worker named 'echo'" in last
        assert "framework plugins" in last


def test_run_unknown_worker(venv: Venv) -> None:
    start = time.monotonic()
    result = venv.framework(
        "run", "--job", "ghost", "--timeout", "3", env={"FRAMEWORK_PLUGINS": "echo"}
    )
    assert result.returncode != 0
    assert "no worker named 'ghost'" in result.stderr
    assert time.monotonic() - start < 10


# --------------------------------------------------------------------------- plugin selection


@pytest.mark.parametrize("selected", ["echo", "agent-plugin-echo", " echo , "])
def test_framework_plugins_env_loads_only_those(venv: Venv, selected: str) -> None:
    env = {"FRAMEWORK_PLUGINS": selected}
    result = venv.framework("plugins", env=env)
    assert result.returncode == 0, result.stderr
    assert f"echo: agent-plugin-echo {ECHO_VERSION}" in result.stdout
    _assert_no_broken(result.stdout + result.stderr)
    result = venv.framework("run", "--job", "echo", "--payload", '{"a": 1}', env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert _json_lines(result.stdout) == [{"a": 1}]


def test_framework_plugins_empty_loads_no_entry_points(venv: Venv) -> None:
    env = {"FRAMEWORK_PLUGINS": ""}
    assert _plugin_names(venv, env) == BUILTINS
    result = venv.framework("run", "--job", "echo", env=env)
    assert result.returncode != 0
    assert "no worker named 'echo'" in result.stderr
    _assert_no_broken(result.stderr)


def test_disable_autoload(venv: Venv) -> None:
    env = {"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = venv.framework("plugins", env=env)
    assert result.returncode == 0, result.stderr
    _assert_no_broken(result.stdout + result.stderr)
    assert _plugin_names(venv, env) == BUILTINS
    # -p loads a plugin even with autoload off, and only that one.
    assert _plugin_names(venv, env, "-p", "echo") == [*BUILTINS, "echo"]
    result = venv.framework("-p", "echo", "run", "--job", "echo", "--payload", "{}", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert _json_lines(result.stdout) == [{}]


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--strict-plugins"], {}), ([], {"FRAMEWORK_STRICT_PLUGINS": "1"})],
    ids=["--strict-plugins", "FRAMEWORK_STRICT_PLUGINS=1"],
)
def test_strict_mode_fails_on_broken_plugins(
    venv: Venv, args: list[str], env: dict[str, str]
) -> None:
    for command in (["plugins"], ["run", "--job", "echo", "--payload", '{"text": "hi"}']):
        result = venv.framework(*args, *command, env=env)
        assert result.returncode != 0, command
        assert result.stdout == "", command  # nothing listed, no job run
        assert "strict" in result.stderr
        for name in BROKEN:
            assert re.search(rf"^\s+{name}: ", result.stderr, re.MULTILINE), result.stderr


def test_strict_mode_passes_without_broken_plugins(venv: Venv) -> None:
    env = {"FRAMEWORK_STRICT_PLUGINS": "1", "FRAMEWORK_PLUGINS": "echo"}
    result = venv.framework("run", "--job", "echo", "--payload", '{"ok": true}', env=env)
    assert result.returncode == 0, result.stderr
    assert _json_lines(result.stdout) == [{"ok": True}]


# --------------------------------------------------------------------------- configuration


def _assert_config_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit code 2, one message naming the file, the key and the reason; nothing started."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "SIGTERM to stop" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("framework: configuration error: ")
    for part in parts:
        assert part in message, message


def test_bad_config_unknown_key(venv: Venv, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "svc"\n\n[publishers.console]\nenabeld = true\n')
    env = {"FRAMEWORK_PLUGINS": "echo"}
    # Without --job a valid file would serve until a signal: exiting at all means nothing ran.
    for job in ([], ["--job", "echo"]):
        result = venv.framework("run", "--config", str(bad), *job, env=env)
        _assert_config_error(result, str(bad), "publishers.console.enabeld", "unknown key")


def test_bad_config_unknown_worker_type(venv: Venv, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[workers]]\ntype = "echo"\n\n[[workers]]\ntype = "nope"\n')
    result = venv.framework("run", "--config", str(bad), env={"FRAMEWORK_PLUGINS": "echo"})
    _assert_config_error(result, str(bad), "workers.1.type", "'nope'", "count, echo, reverse")


WORKERS_TOML = """\
name = "svc"

[[workers]]
type = "echo"
name = "echo-1"

[[workers]]
type = "reverse"
name = "reverse-1"
"""


@pytest.mark.parametrize("where", ["framework.toml", "pyproject.toml", "--config"])
def test_config_workers(venv: Venv, tmp_path: Path, where: str) -> None:
    args: list[str] = []
    if where == "framework.toml":
        (tmp_path / "framework.toml").write_text(WORKERS_TOML)
    elif where == "pyproject.toml":
        table = WORKERS_TOML.replace("[[workers]]", "[[tool.framework.workers]]")
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname = "app"\nversion = "1"\n\n[tool.framework]\n' + table
        )
    else:
        (tmp_path / "conf").mkdir()
        (tmp_path / "conf" / "workers.toml").write_text(WORKERS_TOML)
        args = ["--config", "conf/workers.toml"]
    env = {"FRAMEWORK_PLUGINS": "echo"}

    result = venv.framework(
        "run", *args, "--job", "echo-1", "--payload", '{"text": "hi"}', env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert _json_lines(result.stdout) == [{"text": "hi"}]
    result = venv.framework(
        "run", *args, "--job", "reverse-1", "--payload", '{"text": "ab"}', env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert _json_lines(result.stdout) == [{"text": "ba"}]
    # Only the configured workers run: not every registered one.
    result = venv.framework("run", *args, "--job", "echo", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "no worker named 'echo'" in result.stderr
    assert "echo-1, reverse-1" in result.stderr


# --------------------------------------------------------------------------- signals


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def test_sigterm_ends_run_gracefully(venv: Venv) -> None:
    proc = subprocess.Popen(
        [str(venv.bin / "framework"), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=venv.environ({"FRAMEWORK_PLUGINS": "echo"}),
        cwd=venv.workdir,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stderr, lines), daemon=True)
    reader.start()
    stderr: list[str] = []
    try:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while not any("SIGTERM to stop" in line for line in stderr):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the runner did not say it was serving: {stderr}"
            line = lines.get(timeout=remaining)
            assert line is not None, f"framework run exited early ({proc.wait()}): {stderr}"
            stderr.append(line)
        serving = stderr[-1]
        assert "with echo, reverse, count" in serving and "local://" in serving

        # The runner says it is serving: a SIGTERM now must end it gracefully.
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        reader.join(timeout=5)
        while (line := lines.get(timeout=5)) is not None:
            stderr.append(line)
        killed = " (killed by the signal: no handler was installed yet)" if code < 0 else ""
        assert code == 0, f"exit code {code}{killed}; stderr:\n{''.join(stderr)}"
        assert "ended" in stderr[-1], "".join(stderr)
        assert "Traceback" not in "".join(stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


# --------------------------------------------------------------------------- install, duplicates


def test_the_same_distribution_twice_on_sys_path_is_loaded_once(venv: Venv, tmp_path: Path) -> None:
    # A second copy of agent-plugin-echo (package and dist-info) in another folder on
    # sys.path, as with a user site next to a virtualenv.
    site = next(venv.path.glob("lib/python*/site-packages"))
    extra = tmp_path / "second-site"
    extra.mkdir()
    for item in site.iterdir():
        if item.name.startswith("agent_plugin_echo"):
            shutil.copytree(item, extra / item.name)
    result = venv.framework("plugins", "--json", env={"PYTHONPATH": str(extra)})
    assert result.returncode == 0, result.stderr
    names = [info["name"] for info in json.loads(result.stdout)]
    assert names.count("echo") == 1
    assert "taken" not in result.stderr


def test_install_and_uninstall_a_plugin_into_the_framework_environment(
    venv: Venv, tmp_path: Path
) -> None:
    source = tmp_path / "agent-plugin-hello"
    (source / "agent_plugin_hello").mkdir(parents=True)
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=69"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "agent-plugin-hello"\nversion = "1.2.3"\n'
        '[project.entry-points.framework]\nhello = "agent_plugin_hello"\n'
    )
    (source / "agent_plugin_hello" / "__init__.py").write_text(
        "from framework import hookimpl\n\n\n@hookimpl\ndef register_workers(register):\n"
        '    register("agent_plugin_hello.workers:Hello", name="hello")\n'
    )
    (source / "agent_plugin_hello" / "workers.py").write_text(
        "from framework import BaseWorker, job\n\n\nclass Hello(BaseWorker):\n"
        "    @job\n    async def hello(self, job):\n"
        '        return {"hello": job.payload.get("name", "world")}\n'
    )
    installed = venv.framework("install", "--quiet", str(source), timeout=INSTALL_TIMEOUT)
    assert installed.returncode == 0, installed.stderr
    listing = venv.framework("plugins", "--requirements")
    # Installed from a folder, it is listed as a direct reference pip can install again.
    assert f"agent-plugin-hello @ {source.resolve().as_uri()}" in listing.stdout, listing.stdout
    ran = venv.framework("run", "--job", "hello", "--payload", '{"name": "you"}')
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"hello": "you"}
    removed = venv.framework("uninstall", "-y", "agent-plugin-hello")
    assert removed.returncode == 0, removed.stderr
    assert "hello" not in [
        info["name"] for info in json.loads(venv.framework("plugins", "--json").stdout)
    ]


def test_a_plugin_whose_name_a_builtin_holds_is_listed_with_its_error(
    venv: Venv, tmp_path: Path
) -> None:
    source = tmp_path / "agent-plugin-taken"
    source.mkdir()
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=69"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "agent-plugin-taken"\nversion = "0.0.1"\n'
        '[project.entry-points.framework]\nmemory = "agent_plugin_taken"\n'
    )
    (source / "agent_plugin_taken.py").write_text("")
    installed = venv.framework("install", "--quiet", str(source), timeout=INSTALL_TIMEOUT)
    assert installed.returncode == 0, installed.stderr
    try:
        result = venv.framework("plugins", "--json")
        infos = {info["name"]: info for info in json.loads(result.stdout)}
        assert "memory (agent-plugin-taken)" in infos, (sorted(infos), result.stderr)
        refused = infos["memory (agent-plugin-taken)"]
        assert (
            "the plugin name 'memory' is taken by agent-plugin-framework (a built-in)"
            in (refused["error"])
        )
        assert infos["memory"]["builtin"] is True
    finally:
        venv.framework("uninstall", "-y", "agent-plugin-taken")


def test_new_plugin_installs_passes_its_tests_and_runs_its_worker(
    venv: Venv, tmp_path: Path
) -> None:
    """The scaffold end to end: generate it, pip install it into the virtualenv built from
    the checkout, run its tests, run its worker."""
    made = venv.framework("new-plugin", "demo", "--directory", str(tmp_path))
    assert made.returncode == 0, made.stderr
    root = tmp_path / "agent-plugin-demo"
    installed = venv.framework("install", "--quiet", "-e", f"{root}[test]", timeout=INSTALL_TIMEOUT)
    assert installed.returncode == 0, installed.stderr
    try:
        tests = subprocess.run(
            [str(venv.bin / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
            capture_output=True,
            text=True,
            env=venv.environ(),
            cwd=root,
            timeout=120,
        )
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "4 passed" in tests.stdout
        job = venv.framework("run", "--job", "demo", "--payload", '{"name": "you"}')
        assert job.returncode == 0, job.stderr
        assert job.stdout == '{"greeting": "hello you"}\n'
        listed = venv.framework("plugins", "--requirements").stdout.splitlines()
        assert f"-e {root}" in listed
    finally:
        venv.framework("uninstall", "-y", "agent-plugin-demo")
