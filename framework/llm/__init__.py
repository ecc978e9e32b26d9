"""LLM workers and the LLM backend protocol."""

from framework.llm.backend import (
    FINISH_REASONS,
    Chunk,
    Finish,
    LLMBackend,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from framework.llm.calls import ModelCall, ToolCall
from framework.llm.tools import ToolSource, ToolSpec, tool
from framework.llm.worker import LLMError, LLMWorker

__all__ = [
    "FINISH_REASONS",
    "Chunk",
    "Finish",
    "LLMBackend",
    "LLMError",
    "LLMWorker",
    "ModelCall",
    "ReasoningDelta",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolSource",
    "ToolSpec",
    "Usage",
    "tool",
]
