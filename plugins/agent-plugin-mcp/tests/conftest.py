"""What the tests share: how to start ``framework`` with this plugin and the test workers
(``mcp_workers``, a module in this folder, loaded with ``-p``; installed plugins other
than this one are not loaded), free ports, and the third-party programs from npm
(``tests/npm``, installed by ``npm ci`` as ``.ci/run`` does).

A missing third-party program skips its tests, and fails them under CI (``CI`` set).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
NPM = TESTS / "npm"
MODULES = NPM / "node_modules"

PLUGINS = ["-p", "mcp", "-p", "mcp_workers"]
"""The plugins every ``framework`` the tests start loads (autoload is off)."""

ENV = {
    "PYTHONPATH": str(TESTS),
    "FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1",
    "PYTHONUNBUFFERED": "1",
}
"""What a ``framework`` the tests start needs in its environment, on top of the usual."""


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def framework_command() -> list[str]:
    """``framework``, as installed next to this Python."""
    return [sys.executable, "-m", "framework"]


def framework_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEWORK_")}
    return {**env, **ENV}


def missing(what: str) -> None:
    """Skip (fail under CI) for a third-party program that is not installed."""
    message = f"{what} is missing: install Node.js and run `npm ci` in {NPM} (as .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def node_script(path: str) -> list[str]:
    """``node`` and a script under ``tests/npm/node_modules``."""
    node = shutil.which("node")
    if node is None:
        missing("node")
    script = MODULES / path
    if not script.exists():
        missing(f"the npm package file {path}")
    return [str(node), str(script)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


TOKEN = "mcp-test-token-0123456789"


class HttpRunner:
    """``framework run --http`` with the test workers, a token, on a free port."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [*framework_command(), *PLUGINS, "run", "--http", f"127.0.0.1:{self.port}"],
            env={**framework_env(), "FRAMEWORK_HTTP_TOKEN": TOKEN},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=TESTS,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"framework run did not serve on {self.url}: {log.read_text()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def http_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpRunner]:
    """One ``framework run --http`` per test module."""
    runner = HttpRunner(tmp_path_factory.mktemp("http") / "runner.log")
    try:
        yield runner
    finally:
        runner.stop()
