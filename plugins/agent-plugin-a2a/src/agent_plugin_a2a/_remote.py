"""A remote A2A agent as a worker: each job is one message to the agent, sent with the
a2a-sdk client (streaming when the agent's card says it can).

- The payload becomes the message: its ``text`` (a string) as a text part, and the whole
  payload as a data part unless it holds nothing but ``text``. The job's name, when given,
  goes in the message's metadata as ``skill`` (how a runner serving A2A picks the job). A
  job without a name to a runner (its card carries the skill-schemas extension) goes to
  its only skill; with several, it fails before anything is sent, listing them.
- The task's status messages become updates ``{"state", "text", "data"}``; every part of
  every artifact becomes a stream chunk (a string for a text part, the value of a data
  part), but for a runner's final ``response`` artifact (the remote is a runner, or the
  task also sent a ``stream`` artifact): that one is the job's response, not chunks.
- ``COMPLETED`` (or a direct message reply) answers ``{"text", "data", "task_id",
  "context_id", "state"}``: the artifacts' text and data values (the reply's, for a
  message; the ``response`` artifact's alone, when it was held back from the chunks).
  ``FAILED``, ``REJECTED``, ``CANCELED``, a task waiting for input or
  authorization, and an A2A error answered instead of a task (the agent refused the
  message) end the job ``FAILED`` with the agent's message. A remote that is down,
  answers garbage, or takes longer than ``timeout`` ends it ``ERROR``, naming the remote
  and its URL; a job cancelled here cancels the remote task.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from a2a.client import A2ACardResolver, A2AClientError, Client, ClientConfig, ClientFactory
from a2a.types import (
    AgentCard,
    Artifact,
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    TaskState,
)
from a2a.utils.errors import A2AError

from agent_plugin_a2a._card import SCHEMAS_EXTENSION
from agent_plugin_a2a._parts import (
    data_part,
    data_values,
    message_text,
    part_value,
    texts,
    whole_numbers,
)
from agent_plugin_a2a._settings import WELL_KNOWN, RemoteConfig
from framework import BaseWorker, Job, JobFailed, job
from framework.types import JobDescription

if TYPE_CHECKING:
    from google.protobuf.message import Message as ProtoMessage

logger = logging.getLogger("agent_plugin_a2a")

CONNECT_SECONDS = 10.0
"""At most this long to open a connection, within the job's ``timeout``."""
DESCRIBE_SECONDS = 5.0
"""At most this long, when the worker starts, to read the card that describes its jobs."""
CANCEL_SECONDS = 3.0
"""At most this long to ask the remote to cancel a task this side gave up on."""

TEXT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string", "description": "The message to the agent."}},
    "required": ["text"],
}
"""The input of a remote skill whose card gives no schema: a text message (any other keys
travel as a data part)."""

FINISHED = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}
WAITING = {TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED}
RESPONSE_ARTIFACT = "response"
"""The artifact a runner serving A2A ends a completed task with: the job's response."""
STREAM_ARTIFACT = "stream"
"""The artifact a runner serving A2A sends a job's stream chunks in."""


class RemoteAgentError(RuntimeError):
    """The remote agent could not be reached, or answered something that is not A2A."""


def state_name(state: int) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` -> ``input_required``."""
    return str(TaskState.Name(state)).removeprefix("TASK_STATE_").lower()


def parts_for(payload: dict[str, Any]) -> list[Part]:
    """The message parts for a job's payload."""
    text = payload.get("text")
    parts = [Part(text=text)] if isinstance(text, str) else []
    if not parts or set(payload) != {"text"}:
        parts.append(data_part(payload))
    return parts


@dataclass
class _Exchange:
    """What one job has heard from the remote so far."""

    task_id: str | None = None
    context_id: str | None = None
    state: int = TaskState.TASK_STATE_UNSPECIFIED
    final: Message | None = None
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    response_id: str | None = None
    """The runner's ``response`` artifact, held back from the chunks: the job's response."""

    def take_artifact(self, artifact: Artifact, append: bool, runner: bool) -> bool:
        """Hold the artifact (or what it appends); True when its parts are stream chunks,
        False for a runner's ``response`` artifact (``runner``: the remote is one)."""
        held = self.artifacts.get(artifact.artifact_id)
        if append and held is not None:
            held.parts.extend(artifact.parts)
        else:
            held = Artifact()
            held.CopyFrom(artifact)
            self.artifacts[artifact.artifact_id] = held
        if held.name == RESPONSE_ARTIFACT and (
            runner or any(a.name == STREAM_ARTIFACT for a in self.artifacts.values())
        ):
            self.response_id = held.artifact_id
            return False
        return True

    def response(self) -> dict[str, Any]:
        artifacts = list(self.artifacts.values())
        if self.response_id is not None:
            artifacts = [self.artifacts[self.response_id]]
        text = "\n".join(t for t in ("".join(texts(a.parts)) for a in artifacts) if t)
        data = [value for a in artifacts for value in data_values(a.parts)]
        if self.final is not None and not artifacts:
            text, data = message_text(self.final), data_values(self.final.parts)
        return {
            "text": text,
            "data": data,
            "task_id": self.task_id,
            "context_id": self.context_id,
            "state": state_name(self.state),
        }


class RemoteAgent(BaseWorker):
    """A remote A2A agent: each job is one message to it, its answer the response.

    Configured by ``[plugins.a2a.remote.NAME]`` (see ``RemoteConfig``): ``url``, and
    optionally ``token``, ``headers`` and ``timeout``.
    """

    config_model = RemoteConfig
    config: RemoteConfig

    def __init__(self, name: str, *, config: RemoteConfig | dict[str, Any] | None = None) -> None:
        super().__init__(name, config=config)
        self._http: httpx.AsyncClient | None = None
        self._card: AgentCard | None = None
        self._client: Client | None = None

    @property
    def url(self) -> str:
        """The remote agent's base URL."""
        return self.config.url

    def _error(self, what: str) -> RemoteAgentError:
        return RemoteAgentError(f"remote A2A agent {self.name!r} at {self.url}: {what}")

    # ----------------------------------------------------------------- lifecycle

    async def on_ready(self) -> None:
        """Open the HTTP client, and read the card (briefly) so that ``describe()`` can
        list the remote's skills; a remote that is down now is tried again per job."""
        timeout = self.config.timeout
        self._http = httpx.AsyncClient(
            headers=self.config.http_headers(),
            timeout=httpx.Timeout(None, connect=min(CONNECT_SECONDS, timeout)),
        )
        with anyio.move_on_after(min(DESCRIBE_SECONDS, timeout)):
            try:
                await self._connect()
            except RemoteAgentError as exc:
                logger.warning("%s; its jobs will try again", exc)

    async def on_finished(self) -> None:
        """Close the client."""
        if self._http is not None:
            with anyio.CancelScope(shield=True):
                await self._http.aclose()

    def describe(self) -> list[JobDescription]:
        """The default job (a message to the agent), and one named job per skill of its
        card, with the input schema the card gives (a text message otherwise)."""
        card = self._card
        if card is None:
            return [
                JobDescription(
                    description=f"Send a message to the remote A2A agent at {self.url}.",
                    input_schema=TEXT_SCHEMA,
                    streaming=True,
                )
            ]
        schemas: dict[str, Any] = {}
        for extension in card.capabilities.extensions:
            if extension.uri == SCHEMAS_EXTENSION:
                # Through protocol buffers every number is a double: 0 came as 0.0.
                schemas = whole_numbers(_to_dict(extension.params)).get("skills", {})
        jobs = [
            JobDescription(
                description=card.description or f"The remote A2A agent {card.name!r}.",
                input_schema=TEXT_SCHEMA,
                streaming=card.capabilities.streaming,
            )
        ]
        for skill in card.skills:
            schema = schemas.get(skill.id, {})
            jobs.append(
                JobDescription(
                    name=skill.id,
                    description=skill.description,
                    input_schema=schema.get("input_schema", TEXT_SCHEMA),
                    output_schema=schema.get("output_schema"),
                    streaming=card.capabilities.streaming,
                )
            )
        return jobs

    # ----------------------------------------------------------------- the job

    @job
    async def send(self, job: Job) -> dict[str, Any]:
        """Send the payload to the remote agent; stream what it sends; answer its result."""
        exchange = _Exchange()
        timeout = self.config.timeout
        try:
            with anyio.fail_after(timeout):
                await self._exchange(job, exchange)
        except TimeoutError:
            await self._cancel_remote(exchange)
            raise self._error(
                f"no answer within {timeout:g} s (its timeout); the remote task "
                f"{exchange.task_id or '(not created)'} was cancelled"
            ) from None
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled here: cancel there too
                await self._cancel_remote(exchange)
            raise
        return self._outcome(exchange)

    async def _connect(self) -> Client:
        """The a2a-sdk client, made from the agent's card (read once)."""
        if self._client is not None:
            return self._client
        if self._http is None:
            raise self._error("the worker is not running")
        card_url = self.url + WELL_KNOWN
        try:
            card = await A2ACardResolver(self._http, self.url).get_agent_card()
        except Exception as exc:
            raise self._error(f"cannot read its agent card at {card_url}: {_text(exc)}") from None
        try:
            client = ClientFactory(ClientConfig(httpx_client=self._http, streaming=True)).create(
                card
            )
        except ValueError as exc:
            raise self._error(
                f"its agent card at {card_url} offers no usable interface: {exc}"
            ) from None
        if card.capabilities.extended_agent_card:
            # The skills may be kept for clients that authenticate (a runner with a token
            # lists them only there); without it, the public card describes the worker.
            try:
                card = await client.get_extended_agent_card(GetExtendedAgentCardRequest())
            except Exception as exc:
                logger.info("%s", self._error(f"no extended agent card: {_text(exc)}"))
        self._card, self._client = card, client
        return client

    @property
    def is_runner(self) -> bool:
        """Whether the remote is a runner serving A2A (its card carries the skill-schemas
        extension), as far as its card has been read."""
        card = self._card
        return card is not None and any(
            extension.uri == SCHEMAS_EXTENSION for extension in card.capabilities.extensions
        )

    def _skill(self, job: Job) -> str | None:
        """The skill the message names: the job's name; for a job without one to a runner,
        its only skill.

        Raises:
            JobFailed: a job without a name to a runner with several skills.
        """
        if job.name or not self.is_runner:
            return job.name
        assert self._card is not None
        skills = [skill.id for skill in self._card.skills]
        if len(skills) == 1:
            return skills[0]
        raise JobFailed(
            f"remote A2A agent {self.name!r} at {self.url} is a runner with several skills "
            f"({', '.join(skills) or 'none'}), and a job to it must name one: pass the skill as "
            f"the job's name (framework run --job {self.name} --name SKILL; "
            f"name=SKILL in code)",
            {"state": "refused", "skills": skills},
        )

    async def _exchange(self, job: Job, exchange: _Exchange) -> None:
        client = await self._connect()
        skill = self._skill(job)
        message = Message(
            role=Role.ROLE_USER,
            message_id=uuid.uuid4().hex,
            parts=parts_for(job.payload),
            metadata={"skill": skill} if skill else None,
        )
        try:
            async for event in client.send_message(SendMessageRequest(message=message)):
                if await self._take(job, event, exchange):
                    return
        except (JobFailed, RemoteAgentError):
            raise
        except A2AClientError as exc:  # transport, HTTP status, or an answer that is not A2A
            self._client = None  # read the card again next time: the remote may have moved
            status = (
                exc.__cause__.response.status_code
                if isinstance(exc.__cause__, httpx.HTTPStatusError)
                else None
            )
            if status in (401, 403):
                raise self._error(
                    f"it refused the credentials (HTTP {status}): check the token and headers "
                    f"of [plugins.a2a.remote.{self.name}]"
                ) from None
            raise self._error(_text(exc)) from None
        except A2AError as exc:  # the agent answered with an A2A error: it refused the message
            hint = ""
            if not skill and "skill" in exc.message:
                hint = (
                    f" (the job had no name, so the message named no skill: pass the skill "
                    f"as the job's name, framework run --job {self.name} --name SKILL)"
                )
            raise JobFailed(
                f"remote A2A agent {self.name!r} at {self.url} refused the message: "
                f"{type(exc).__name__}: {exc.message}{hint}",
                {"state": "refused"},
            ) from None
        except Exception as exc:
            self._client = None  # read the card again next time: the remote may have moved
            raise self._error(_text(exc)) from None
        if exchange.final is None and exchange.state not in FINISHED | WAITING:
            raise self._error(
                f"its answer ended before the task did (last state: {state_name(exchange.state)})"
            )

    async def _take(self, job: Job, event: StreamResponse, exchange: _Exchange) -> bool:
        """Apply one event; True once the task has ended (or waits for input)."""
        kind = event.WhichOneof("payload")
        if kind == "message":
            exchange.final = event.message
            exchange.context_id = event.message.context_id or None
            exchange.state = TaskState.TASK_STATE_COMPLETED
            return True
        if kind == "task":
            task = event.task
            exchange.task_id, exchange.context_id = task.id, task.context_id
            for artifact in task.artifacts:  # all of them when the agent does not stream
                if artifact.artifact_id not in exchange.artifacts and exchange.take_artifact(
                    artifact, append=False, runner=self.is_runner
                ):
                    for part in artifact.parts:
                        await job.stream(part_value(part))
            return self._status(exchange, task.status.state, task.status)
        if kind == "status_update":
            update = event.status_update
            exchange.task_id = exchange.task_id or update.task_id
            exchange.context_id = exchange.context_id or update.context_id
            state = update.status.state
            if state not in FINISHED | WAITING and update.status.HasField("message"):
                said = update.status.message
                news: dict[str, Any] = {"state": state_name(state)}
                if text := message_text(said):
                    news["text"] = text
                if data := data_values(said.parts):
                    news["data"] = data
                await job.update(news)
            return self._status(exchange, state, update.status)
        if kind == "artifact_update":
            update_a = event.artifact_update
            artifact = update_a.artifact
            if exchange.take_artifact(artifact, append=update_a.append, runner=self.is_runner):
                for part in artifact.parts:
                    await job.stream(part_value(part))
            return False
        raise self._error(f"it sent an event of no known kind: {_to_dict(event)}")

    @staticmethod
    def _status(exchange: _Exchange, state: int, status: Any) -> bool:
        exchange.state = state
        if status.HasField("message"):
            exchange.final = status.message
        return state in FINISHED or state in WAITING

    def _outcome(self, exchange: _Exchange) -> dict[str, Any]:
        response = exchange.response()
        state = exchange.state
        if state == TaskState.TASK_STATE_COMPLETED:
            return response
        said = message_text(exchange.final) if exchange.final is not None else ""
        if state in WAITING:
            what = "input" if state == TaskState.TASK_STATE_INPUT_REQUIRED else "authorization"
            reason = f"the remote task asks for {what}, which a job cannot give"
        else:
            reason = f"the remote task ended {state_name(state)}"
        raise JobFailed(
            f"remote A2A agent {self.name!r} at {self.url}: {reason}"
            + (f": {said}" if said else ""),
            response,
        )

    async def _cancel_remote(self, exchange: _Exchange) -> None:
        """Ask the remote to cancel the task (best effort, briefly)."""
        client, task_id = self._client, exchange.task_id
        if client is None or task_id is None or exchange.state in FINISHED:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SECONDS):
            try:
                await client.cancel_task(CancelTaskRequest(id=task_id))
            except Exception as exc:
                logger.info("%s", self._error(f"cancelling task {task_id}: {_text(exc)}"))


def _text(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"


def _to_dict(message: ProtoMessage) -> dict[str, Any]:
    from google.protobuf import json_format

    found: dict[str, Any] = json_format.MessageToDict(message)
    return found
