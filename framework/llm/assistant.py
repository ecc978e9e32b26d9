"""The ``assistant`` worker ``framework run`` starts by default: an LLM worker whose tools
are the other workers on the bus, so it can delegate jobs to them (the echo plugin's
``echo``, ``reverse`` and ``count``, when it is installed)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from framework.llm.backend import LLMBackend
from framework.llm.tools import TOOL_NAME, ToolSpec
from framework.llm.worker import LLMWorker

if TYPE_CHECKING:
    from framework.runner import WorkerRunner


class Assistant(LLMWorker):
    """Answers chat jobs; every other ready worker is a tool taking the job's payload."""

    worker_name = "assistant"
    default_instructions = (
        "You are the assistant of this runner. Each tool is another worker: call it with "
        "the payload that worker expects."
    )

    demo_delay: ClassVar[float] = 0.03
    """Seconds between words on the offline backend when no options are configured, so
    that a person watching ``framework run --job assistant`` sees the reply stream in."""

    def _resolve_backend(self, runner: WorkerRunner) -> tuple[LLMBackend, Any]:
        backend, options = super()._resolve_backend(runner)
        unconfigured = self._backend_options is None and not runner.llm_config.options
        if backend.name == "offline" and unconfigured:
            options = backend.options_model.model_validate({"delay": self.demo_delay})
        return backend, options

    def tools(self) -> list[ToolSpec]:
        """The ``@tool`` methods plus one tool per other ready worker."""
        specs = super().tools()
        registry = self.registry
        for name in sorted({*registry.local_workers, *registry.remote_workers}):
            if name == self.name or not TOOL_NAME.match(name):  # what OpenAI servers accept
                continue
            data = registry.get(name)
            if data is not None and data.jobs and all(j.name is not None for j in data.jobs):
                continue  # only named jobs: a plain job would fail, so it is no tool
            specs.append(self._worker_tool(name))
        return specs

    def _worker_tool(self, worker: str) -> ToolSpec:
        """A tool sending the worker a plain (default) job, described as the worker
        describes it: the handler's docstring, and its typed payload's schema."""

        async def call(arguments: dict[str, Any]) -> Any:
            async with self.job(worker, payload=arguments, timeout=60) as job:
                pass
            return job.response

        data = self.registry.get(worker)
        described = next((j for j in data.jobs if j.name is None), None) if data else None
        description = f"Send a job to the worker {worker!r}; the arguments are its payload."
        parameters: dict[str, Any] = {"type": "object", "additionalProperties": True}
        if described is not None:
            if described.description:
                description = f"{described.description} (worker {worker!r})"
            if described.input_schema is not None:
                parameters = described.input_schema
        return ToolSpec(name=worker, description=description, parameters=parameters, call=call)
