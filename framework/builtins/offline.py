"""Built-in plugin ``offline``: the deterministic, network-free LLM backend (the default)."""

from __future__ import annotations

from typing import Any

from framework.hookspecs import hookimpl


@hookimpl
def register_llm_backends(register: Any) -> None:
    """Register ``offline`` (imported only when a worker uses it)."""
    register("framework.llm.offline:OfflineBackend", name="offline")
