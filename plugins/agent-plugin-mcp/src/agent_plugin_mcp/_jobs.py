"""The runner's jobs as MCP tools: the tool list from the registry, and a tool call as a job.

Every worker the runner knows (its own and, on a network bus, other runners') is read from
the registry when a client lists or calls the tools, so workers that come and go are
followed. Each job a worker describes (``BaseWorker.describe()``) is one tool: named as
``_naming`` says, described by the handler's docstring, taking the typed payload's JSON
schema (an open object when the job is untyped), and declaring the response's schema as
the tool's output schema when the response is typed.

A call sends the job with the arguments as its payload. Its updates go to the client as
progress notifications (when the client asked for progress), its stream chunks are
gathered into the result, and its response is the result's structured content (and its
last text block, as JSON). FAILED, ERROR and CANCELLED end the call as a tool error with
the job's message; a payload that does not fit the typed payload is FAILED naming the
field. Cancelling the call cancels the job.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent_plugin_mcp._naming import served_names
from framework import JobError, JobEvent, JobStatus
from framework.types import JobDescription

if TYPE_CHECKING:
    import mcp_types

    from framework import WorkerRunner

OPEN_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
"""The input schema of an untyped job: any JSON object."""

_FAILURES = {
    JobStatus.FAILED: "the job failed",
    JobStatus.ERROR: "the job ended in error",
    JobStatus.CANCELLED: "the job was cancelled",
}


@dataclass(frozen=True)
class JobTool:
    """One tool: which job it sends, and how it is described."""

    name: str
    worker: str
    job: str | None
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None

    def to_mcp(self) -> mcp_types.Tool:
        """The tool as ``tools/list`` answers it."""
        import mcp_types

        return mcp_types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.input_schema,
            output_schema=self.output_schema,
        )


def job_tools(runner: WorkerRunner, only: Collection[str] = ()) -> dict[str, JobTool]:
    """The tools of every worker the runner knows (of those in ``only``, when given), by
    tool name."""
    registry = runner.registry
    described: dict[tuple[str, str | None], JobDescription | None] = {}
    for worker in {*registry.local_workers, *registry.remote_workers}:
        if only and worker not in only:
            continue
        data = registry.get(worker)
        jobs = data.jobs if data is not None else []
        if not jobs:  # nothing described: the default job, taking any object
            described[(worker, None)] = None
        for job in jobs:
            described[(worker, job.name)] = job
    return {
        name: _tool(name, worker, job, described[(worker, job)])
        for name, (worker, job) in served_names(described).items()
    }


def _tool(name: str, worker: str, job: str | None, described: JobDescription | None) -> JobTool:
    text = described.description.strip() if described is not None else ""
    if text:
        what = f"worker {worker!r}" if job is None else f"job {job!r} of worker {worker!r}"
        description = f"{text}\n\n(The {what}.)"
    elif job is None:
        description = f"Send a job to the worker {worker!r}."
    else:
        description = f"Send the job {job!r} to the worker {worker!r}."
    input_schema = OPEN_OBJECT
    output_schema = None
    if described is not None:
        if described.input_schema is not None:
            input_schema = described.input_schema
        if described.output_schema is not None and not described.streaming:
            output_schema = described.output_schema
    return JobTool(name, worker, job, description, input_schema, output_schema)


Progress = Callable[[float, str], Awaitable[None]]
"""``progress(number, message)``: tell the client of an update."""


async def call_job(
    runner: WorkerRunner, tool: JobTool, arguments: dict[str, Any], progress: Progress
) -> mcp_types.CallToolResult:
    """Send the job ``tool`` stands for, with ``arguments`` as its payload, and answer with
    what came back. Cancelling the call cancels the job (the job context does it)."""
    import mcp_types

    chunks: list[Any] = []
    updates = 0
    try:
        async with runner.job(tool.worker, name=tool.job, payload=arguments) as job:
            async for event in job:
                if event.type == JobEvent.UPDATE:
                    updates += 1
                    await progress(updates, _text(event.data))
                elif event.type == JobEvent.STREAM_DATA:
                    chunks.append(event.data)
    except JobError as exc:
        error = exc.response.get("error") if isinstance(exc.response, dict) else None
        why = _FAILURES.get(exc.status, f"the job ended {exc.status}")
        text = f"{why}: {error}" if error else why
        return mcp_types.CallToolResult(
            content=[mcp_types.TextContent(text=text)],
            is_error=True,
        )
    response = job.response if job.response is not None else {}
    content: list[mcp_types.ContentBlock] = []
    if chunks:
        content.append(mcp_types.TextContent(text=_gathered(chunks)))
    content.append(mcp_types.TextContent(text=json.dumps(response, ensure_ascii=False)))
    return mcp_types.CallToolResult(content=content, structured_content=response)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _gathered(chunks: list[Any]) -> str:
    """The stream as one text: text chunks joined as they are, other chunks one JSON value
    a line."""
    parts = []
    for chunk in chunks:
        if isinstance(chunk, str):
            parts.append(chunk)
        else:
            if parts and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append(_text(chunk) + "\n")
    return "".join(parts)
