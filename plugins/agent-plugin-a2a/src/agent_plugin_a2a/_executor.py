"""A2A tasks run as jobs: the a2a-sdk ``AgentExecutor`` that turns a message into a job
request, the job's updates and stream into task events, and its status into the task's
final state.

| job | A2A |
|---|---|
| request | task ``SUBMITTED``, then ``WORKING`` |
| ``job.update(data)`` | status update ``WORKING`` whose message has ``data`` as a data part |
| stream chunk | artifact ``stream``: one part per chunk, appended |
| ``COMPLETED`` | artifact ``response`` (the response; its ``text``), then ``COMPLETED`` |
| ``FAILED`` / ``ERROR`` | ``FAILED``, the status message holding the error |
| ``CANCELLED`` | ``CANCELED`` |
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.tasks import TaskUpdater
from a2a.types import InvalidParamsError, Message, Part, Task, TaskState, TaskStatus
from google.protobuf import json_format

from agent_plugin_a2a._card import Target, route, skills
from agent_plugin_a2a._parts import data_part, data_values, texts, value_part
from framework import JobError, JobEvent, JobStatus

if TYPE_CHECKING:
    from agent_plugin_a2a._plugin import A2APlugin
    from framework import WorkerRunner

CANCELLED_BY_CLIENT = "cancelled by the A2A client"


def metadata_of(message: Message) -> dict[str, Any]:
    """A message's metadata as a dict."""
    found: dict[str, Any] = json_format.MessageToDict(message.metadata)
    return found


def payload_of(message: Message, target: Target) -> dict[str, Any]:
    """The job's payload: the message's data part (a JSON object), else its text as
    ``{"text": ...}`` (as ``{"messages": [{"role": "user", "content": ...}]}`` for a job
    that takes messages and no text, such as an LLM worker's), else ``{}``.

    Raises:
        InvalidParamsError: a file part, several data parts, or a data part that is not an
            object.
    """
    kinds = {part.WhichOneof("content") for part in message.parts}
    if kinds & {"raw", "url"}:
        raise InvalidParamsError(
            message="file parts are not supported: send the job's payload as one data part "
            "(a JSON object), or as text"
        )
    data = data_values(message.parts)
    if len(data) > 1:
        raise InvalidParamsError(
            message=f"the message has {len(data)} data parts: send the job's payload as one "
            "data part (a JSON object)"
        )
    if data:
        if not isinstance(data[0], dict):
            raise InvalidParamsError(
                message="the data part must be a JSON object (the job's payload), got "
                f"{type(data[0]).__name__}"
            )
        return data[0]
    text = "\n".join(texts(message.parts))
    if not text:
        return {}
    properties = (target.description.input_schema or {}).get("properties", {})
    if "messages" in properties and "text" not in properties:
        return {"messages": [{"role": "user", "content": text}]}
    return {"text": text}


def check(runner: WorkerRunner, message: Message, request_metadata: dict[str, Any]) -> Target:
    """The target of ``message``, and a check that its parts make a payload.

    Raises:
        InvalidParamsError: see ``route`` and ``payload_of``.
    """
    target = route(skills(runner), metadata_of(message), request_metadata)
    payload_of(message, target)
    return target


@dataclass
class _Running:
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)


class JobExecutor(AgentExecutor):
    """Runs each A2A task as one job on the plugin's runner."""

    def __init__(self, plugin: A2APlugin) -> None:
        self._plugin = plugin
        self._running: dict[str, _Running] = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Run the job the message asks for and report it on ``event_queue``."""
        runner = self._plugin.runner
        message = context.message
        task_id, context_id = context.task_id, context.context_id
        assert message is not None and task_id is not None and context_id is not None
        target = check(runner, message, context.metadata)
        payload = payload_of(message, target)
        updater = TaskUpdater(event_queue, task_id, context_id)
        await event_queue.enqueue_event(
            Task(
                id=task_id,
                context_id=context_id,
                status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                history=[message],
            )
        )
        await updater.start_work()
        running = self._running[task_id] = _Running()
        headers = {"a2a-task-id": task_id, "a2a-context-id": context_id}
        try:
            status: str = JobStatus.CANCELLED
            response: dict[str, Any] = {"error": CANCELLED_BY_CLIENT}
            with running.scope:
                status, response = await _run(runner, target, payload, headers, updater)
            await _finish(updater, status, response)
        finally:
            del self._running[task_id]
            running.done.set()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel the task's job; the task ends ``CANCELED``."""
        running = self._running.get(context.task_id or "")
        if running is None:
            return  # not running here: the SDK marks it CANCELED itself
        running.scope.cancel()
        with anyio.move_on_after(5):
            await running.done.wait()


async def _run(
    runner: WorkerRunner,
    target: Target,
    payload: dict[str, Any],
    headers: dict[str, str],
    updater: TaskUpdater,
) -> tuple[str, dict[str, Any]]:
    """Send the job, pass its updates and stream on; its status and response."""
    stream_id: str | None = None
    try:
        async with runner.job(
            target.worker, name=target.job, payload=payload, headers=headers
        ) as job:
            async for event in job:
                if event.type == JobEvent.UPDATE:
                    await updater.update_status(
                        TaskState.TASK_STATE_WORKING,
                        message=updater.new_agent_message([data_part(event.data)]),
                    )
                elif event.type == JobEvent.STREAM_DATA:
                    first = stream_id is None
                    if stream_id is None:
                        stream_id = uuid.uuid4().hex
                    await updater.add_artifact(
                        [value_part(event.data)],
                        artifact_id=stream_id,
                        name="stream",
                        append=not first,
                    )
    except JobError as exc:
        return exc.status, exc.response if exc.response is not None else {"error": str(exc)}
    return job.status or JobStatus.ERROR, job.response or {}


async def _finish(updater: TaskUpdater, status: str, response: dict[str, Any]) -> None:
    """The task's last events for a job that ended ``status`` with ``response``."""
    if status == JobStatus.COMPLETED:
        text = response.get("text")
        parts = [Part(text=text)] if isinstance(text, str) else []
        await updater.add_artifact([*parts, data_part(response)], name="response", last_chunk=True)
        await updater.complete()
        return
    error = response.get("error")
    text = error if isinstance(error, str) else f"the job ended {status}"
    message = updater.new_agent_message(
        [Part(text=text), data_part(response)], metadata={"status": str(status)}
    )
    if status == JobStatus.CANCELLED:
        await updater.cancel(message=message)
    else:
        await updater.failed(message=message)
