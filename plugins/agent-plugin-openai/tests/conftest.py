"""Fixtures for the plugin's tests: the OpenAI-compatible test server, and a clean
environment (no key, no proxy: nothing leaves the machine). The ``framework.testing``
fixtures come with agent-plugin-framework."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import agent_plugin_openai
import pytest
from openai_server import OpenAIServer, closed_port

# Fixtures of the third-party servers (npm); LLMock's own plugin brings the llmock fixture.
from third_party import mock_llm, openai_mock_api  # noqa: F401

KEY = "sk-test-Zq8vN3xW7pL2mK9r"
"""The API key the tests set: it must appear in no message, log line, event or repr."""


@pytest.fixture
def anyio_backend() -> str:
    """Run the ``@pytest.mark.anyio`` tests on asyncio."""
    return "asyncio"


@pytest.fixture
def framework_plugins() -> list[Any]:
    """The plugins the ``framework.testing`` ``framework_runner`` fixture registers."""
    return [agent_plugin_openai]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key from the developer's shell, and no proxy between the tests and 127.0.0.1."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    """A started OpenAI-compatible server on a free port of 127.0.0.1."""
    test_server = OpenAIServer()
    test_server.start()
    yield test_server
    test_server.stop()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A base_url on 127.0.0.1 where nothing listens."""
    sock: socket.socket = closed_port()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()
