"""Built-in plugin ``assistant``: the LLM worker ``framework run`` starts when nothing is
configured; its tools are the other workers (see ``framework.llm.assistant``)."""

from __future__ import annotations

from typing import Any

from framework.hookspecs import hookimpl


@hookimpl
def register_workers(register: Any) -> None:
    """Register ``assistant`` (imported only when a runner starts it)."""
    register("framework.llm.assistant:Assistant", name="assistant")
