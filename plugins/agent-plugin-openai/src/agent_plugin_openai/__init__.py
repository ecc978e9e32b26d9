"""agent-plugin-openai: the LLM backend ``openai``, for any server that speaks the OpenAI chat
completions protocol (OpenAI, vLLM, Ollama, llama.cpp's server, LM Studio).

This module is the plugin: the entry point ``openai = "agent_plugin_openai"`` names it, and
the ``framework`` command imports it for every command, ``framework --help`` included. So it
holds the hookimpl only; the backend (and httpx) live in ``agent_plugin_openai.backend``,
registered by import path and imported when a worker first uses the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework import hookimpl  # cheap: imports pluggy, not the runtime

if TYPE_CHECKING:
    from collections.abc import Callable

__version__ = "0.1.0"


@hookimpl
def register_llm_backends(register: Callable[..., None]) -> None:
    """Register the backend ``openai`` (``LLMWorker(backend="openai")``, ``[llm] backend``)."""
    register("agent_plugin_openai.backend:OpenAIBackend", name="openai")
