"""Fixtures: ``framework run`` processes serving HTTP on a free port of 127.0.0.1 (the
plugin found through its entry point, the test workers through ``-p a2a_workers``), and
helpers to start and stop them."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
_VENV_FRAMEWORK = Path(sys.executable).parent / "framework"
FRAMEWORK = str(_VENV_FRAMEWORK) if _VENV_FRAMEWORK.exists() else shutil.which("framework")
TOKEN = "a2a-test-token-0123456789"
_SERVING = re.compile(r"HTTP API at (http://127\.0\.0\.1:\d+)/")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def environment(**extra: str) -> dict[str, str]:
    """This process's environment without the framework's variables, with the test
    workers importable."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRAMEWORK_", "OTEL_")) and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(PYTHONPATH=str(TESTS), PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Runner:
    """A ``framework run`` process serving HTTP."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def start_runner(folder: Path, config: str, *, token: str | None = None) -> Runner:
    """``framework -p a2a_workers run --http 127.0.0.1:0`` with ``config`` as its
    framework.toml; returns once it serves."""
    assert FRAMEWORK is not None, "the framework command is not installed"
    path = folder / "framework.toml"
    path.write_text(config)
    log = folder / "runner.log"
    env = environment(**({"FRAMEWORK_HTTP_TOKEN": token} if token else {}))
    process = subprocess.Popen(
        [FRAMEWORK, "-p", "a2a_workers", "run", "--http", "127.0.0.1:0", "--config", str(path)],
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not (found := _SERVING.search(log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"framework run did not serve: {log.read_text()}")
        time.sleep(0.05)
    return Runner(process, found.group(1), log)


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


RUNNER_CONFIG = """\
name = "a2a-test"
grace_period = 0.5

[[workers]]
type = "tools"

[[workers]]
type = "assistant"

[llm]
options = { delay = 0 }

[http]
max_body = 100000

[plugins.a2a]
name = "test-agent"
description = "Workers for the A2A tests."
history = 50
"""


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    """One runner for the whole session, with a token: ``tools`` and ``assistant``."""
    runner = start_runner(tmp_path_factory.mktemp("served"), RUNNER_CONFIG, token=TOKEN)
    try:
        yield runner
    finally:
        stop(runner.process)
