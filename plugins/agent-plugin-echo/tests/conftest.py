"""Fixtures for the plugin's tests; the rest come from ``framework.testing`` (a pytest plugin
that agent-plugin-framework installs)."""

from __future__ import annotations

from typing import Any

import agent_plugin_echo
import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run the ``@pytest.mark.anyio`` tests on asyncio."""
    return "asyncio"


@pytest.fixture
def framework_plugins() -> list[Any]:
    """The plugins the ``framework_runner`` fixture registers: this one, and the built-ins."""
    return [agent_plugin_echo]
