"""Third-party OpenAI-compatible servers for the tests, written by others against the same
protocol: ``@dwmkerr/mock-llm`` and ``openai-mock-api`` from npm (installed under
``tests/npm`` by ``npm ci``, as ``.ci/run`` does), each run with Node on a free port of
127.0.0.1. LLMock (PyPI, a fault-injection server) comes with its own pytest fixture,
``llmock``.

Without Node or the npm packages, the tests that need them are skipped, and fail under CI
(``CI`` set), where ``.ci/run`` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

NPM = Path(__file__).resolve().parent / "npm"
MODULES = NPM / "node_modules"

OPENAI_MOCK_API_KEY = "sk-openai-mock-api-test-key"
"""The key openai-mock-api is configured to accept."""

_TWO_CALLS = """
      - role: 'system'
        matcher: 'any'
      - role: 'user'
        content: 'two cities'
        matcher: 'contains'
      - role: 'assistant'
        tool_calls:
          - id: 'call_oslo'
            type: 'function'
            function:
              name: 'weather'
              arguments: '{"city": "Oslo"}'
          - id: 'call_lima'
            type: 'function'
            function:
              name: 'weather'
              arguments: '{"city": "Lima"}'"""

OPENAI_MOCK_API_CONFIG = f"""
apiKey: '{OPENAI_MOCK_API_KEY}'
responses:
  # It answers with the last assistant message of the flow that matches: one flow per turn.
  - id: 'two-cities-calls'
    messages:{_TWO_CALLS}
  - id: 'two-cities-answer'
    messages:{_TWO_CALLS}
      - role: 'tool'
        matcher: 'any'
        tool_call_id: 'call_oslo'
      - role: 'tool'
        matcher: 'any'
        tool_call_id: 'call_lima'
      - role: 'assistant'
        content: 'Clear in Oslo and in Lima.'
  - id: 'hello'
    messages:
      - role: 'user'
        content: 'hello'
        matcher: 'contains'
      - role: 'assistant'
        content: 'Hello from openai-mock-api.'
"""


def _missing(what: str) -> None:
    message = f"{what} is missing: install Node.js and run `npm ci` in {NPM} (as .ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NodeServer:
    """A Node.js server from ``tests/npm/node_modules``, started on a free port."""

    def __init__(
        self, script: str, args: list[str], env: dict[str, str], port: int, log: Path
    ) -> None:
        node = shutil.which("node")
        if node is None:
            _missing("node")
        path = MODULES / script
        if not path.exists():
            _missing(f"the npm package file {script}")
        self.port = port
        self.log = log
        self._log = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [str(node), str(path), *args],
            cwd=NPM,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"{script} did not start: {self.log.read_text(errors='replace')[-2000:]}"
                    ) from None
                time.sleep(0.05)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self._log.close()


class MockLLM(NodeServer):
    """``@dwmkerr/mock-llm``: rules (a JMESPath match and a response) set per test through
    its ``/config`` endpoint."""

    def __init__(self, tmp: Path) -> None:
        config = tmp / "mock-llm.yaml"
        config.write_text("streaming:\n  chunkSize: 8\n  chunkIntervalMs: 1\nrules: []\n")
        port = _free_port()
        super().__init__(
            "@dwmkerr/mock-llm/dist/main.js",
            ["--config", str(config)],
            {"HOST": "127.0.0.1", "PORT": str(port)},
            port,
            tmp / "mock-llm.log",
        )

    def rules(self, *rules: dict[str, Any]) -> None:
        """Replace the rules (and restart the sequence counters)."""
        root = f"http://127.0.0.1:{self.port}"
        with httpx.Client(trust_env=False, timeout=5) as client:
            client.delete(f"{root}/config").raise_for_status()
            config = {
                "streaming": {"chunkSize": 8, "chunkIntervalMs": 1},
                "rules": [
                    {
                        "path": "/v1/chat/completions",
                        "method": "POST",
                        **rule,
                        "response": {
                            "status": rule["response"].get("status", 200),
                            "content": json.dumps(rule["response"]["content"]),
                        },
                    }
                    for rule in rules
                ],
            }
            client.post(f"{root}/config", json=config).raise_for_status()


class OpenAIMockAPI(NodeServer):
    """``openai-mock-api``: conversation flows from a YAML file, fixed at start."""

    def __init__(self, tmp: Path) -> None:
        config = tmp / "openai-mock-api.yaml"
        config.write_text(OPENAI_MOCK_API_CONFIG)
        port = _free_port()
        super().__init__(
            "openai-mock-api/dist/cli.js",
            ["--config", str(config), "--port", str(port)],
            {},
            port,
            tmp / "openai-mock-api.log",
        )


@pytest.fixture(scope="session")
def mock_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockLLM]:
    """One ``@dwmkerr/mock-llm`` for the session; each test sets its rules."""
    server = MockLLM(tmp_path_factory.mktemp("mock-llm"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_mock_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenAIMockAPI]:
    """One ``openai-mock-api`` for the session."""
    server = OpenAIMockAPI(tmp_path_factory.mktemp("openai-mock-api"))
    yield server
    server.stop()


def completion(content: str | None, **message: Any) -> dict[str, Any]:
    """A whole ``chat.completion``, as mock-llm's rules answer (no usage)."""
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
    }
