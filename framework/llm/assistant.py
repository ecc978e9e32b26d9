"""The ``assistant`` worker ``framework run`` starts by default: an LLM worker whose tools
are the other workers on the bus, so it can delegate jobs to them (the echo plugin's
``echo``, ``reverse`` and ``count``, when it is installed)."""

from __future__ import annotations

from typing import Any

from framework.llm.tools import TOOL_NAME, ToolSpec
from framework.llm.worker import LLMWorker


class Assistant(LLMWorker):
    """Answers chat jobs; every other ready worker is a tool taking the job's payload."""

    worker_name = "assistant"
    default_instructions = (
        "You are the assistant of this runner. Each tool is another worker: call it with "
        "the payload that worker expects."
    )

    def tools(self) -> list[ToolSpec]:
        """The ``@tool`` methods plus one tool per other ready worker."""
        specs = super().tools()
        registry = self.registry
        for name in sorted({*registry.local_workers, *registry.remote_workers}):
            if name != self.name and TOOL_NAME.match(name):  # what OpenAI-style servers accept
                specs.append(self._worker_tool(name))
        return specs

    def _worker_tool(self, worker: str) -> ToolSpec:
        async def call(arguments: dict[str, Any]) -> Any:
            async with self.job(worker, payload=arguments, timeout=60) as job:
                pass
            return job.response

        return ToolSpec(
            name=worker,
            description=f"Send a job to the worker {worker!r}; the arguments are its payload.",
            parameters={"type": "object", "additionalProperties": True},
            call=call,
        )
