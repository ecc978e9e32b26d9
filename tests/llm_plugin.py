"""A plugin module for the LLM tests (loaded with ``-p llm_plugin`` or registered directly):
an LLM backend that never stops calling tools, and a worker the assistant can call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from framework import BaseWorker, Job, JobFailed, hookimpl, job
from framework.llm import Chunk, ToolCallDelta, Usage


class LoopOptions(BaseModel):
    """Settings of the ``loop`` backend."""

    model_config = ConfigDict(extra="forbid")

    tool: str = Field(default="shout", description="the tool it calls, every round")


class LoopBackend:
    """Asks for the same tool call every time it is called: the tool loop never ends by
    itself, so the worker's bound on rounds has to end it."""

    name = "loop"
    options_model = LoopOptions

    def __init__(self) -> None:
        self.calls = 0

    async def stream(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], options: Any
    ) -> AsyncIterator[Chunk]:
        self.calls += 1
        yield ToolCallDelta(0, id=f"loop_{self.calls}", name=options.tool)
        yield ToolCallDelta(0, arguments='{"text": "again"}')
        yield Usage(1, 1)


class Shout(BaseWorker):
    """Answers ``{"text": "hi"}`` with ``{"text": "HI"}``; no text fails the job."""

    worker_name = "shout"

    @job
    async def shout(self, job: Job) -> dict[str, Any]:
        text = job.payload.get("text")
        if not isinstance(text, str):
            raise JobFailed('shout needs a string "text"')
        return {"text": text.upper()}


@hookimpl
def register_workers(register: Any) -> None:
    register(Shout)


@hookimpl
def register_llm_backends(register: Any) -> None:
    register(LoopBackend())
    register("llm_plugin:LoopBackend", name="loop-by-path")
