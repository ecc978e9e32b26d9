"""LLM workers and the LLM backend protocol."""

from framework.llm.backend import Chunk, LLMBackend, TextDelta, ToolCallDelta, Usage
from framework.llm.tools import ToolSpec, tool
from framework.llm.worker import LLMError, LLMWorker

__all__ = [
    "Chunk",
    "LLMBackend",
    "LLMError",
    "LLMWorker",
    "TextDelta",
    "ToolCallDelta",
    "ToolSpec",
    "Usage",
    "tool",
]
