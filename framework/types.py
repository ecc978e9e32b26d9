"""Small data types shared by the worker, the registry, the runner and plugins.

They are pydantic models so that a network bus can carry them as JSON later without a
second definition; on the in-process bus they travel as plain objects.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class JobStatus(StrEnum):
    """How a job ended. Every job request ends in exactly one of these.

    ``COMPLETED``: the handler returned. ``CANCELLED``: the job was cancelled (by the
    requester, a timeout, or its worker ending). ``FAILED``: the handler reported a logical
    error by raising ``JobFailed``. ``ERROR``: something unexpected happened (the handler
    raised any other exception, or the worker went away).
    """

    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"
    ERROR = "error"


class JobDescription(BaseModel):
    """One job a worker answers, as ``BaseWorker.describe()`` lists it.

    Consumers (an assistant's worker tools, the HTTP API's OpenAPI document, MCP tools, A2A
    skills) read it instead of guessing what a worker takes.

    Attributes:
        name: the job's name; None for the default handler (requests with no name, or a
            name no named handler takes).
        description: the handler's docstring ("" without one).
        input_schema: JSON schema of the payload when the handler takes a typed payload
            (a pydantic model), else None: any JSON object.
        output_schema: JSON schema of the response when the handler's return annotation is
            a pydantic model, else None.
        streaming: whether the handler streams (an async generator).
        durable: whether the handler asked for at-least-once delivery
            (``@job(durable=True)``): a network bus that keeps requests runs it again on a
            live replica when the runner running it is lost.
        max_attempts: how many times a durable job may run in all; None for a plain one.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str | None = None
    description: str = ""
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    streaming: bool = False
    durable: bool = False
    max_attempts: int | None = Field(default=None, ge=1)


class WorkerReadyData(BaseModel):
    """Announcement that a worker is ready to take jobs, and which runner hosts it.

    ``jobs`` is the worker's description (``BaseWorker.describe()``); network buses carry it
    to the other runners.
    """

    model_config = ConfigDict(frozen=True, defer_build=True)

    worker_name: str
    runner: str
    jobs: tuple[JobDescription, ...] = ()


class WorkerErrorData(BaseModel):
    """Announcement that a worker failed (``error`` is the error text)."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    worker_name: str
    error: str


class WorkerRegistryEntry(BaseModel):
    """What the registry knows about one local worker, for listings and tools."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    name: str
    parent: str | None = None
    active: bool = False
    bridged: bool = False
    started_at: float | None = None


class WorkerActivationArgs(BaseModel):
    """Arguments that come with an activation (``activate_worker``, ``handoff_to``).

    ``from_dict`` ignores unknown keys, so a newer sender never breaks an older worker.
    """

    model_config = ConfigDict(extra="ignore", defer_build=True)

    metadata: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Self:
        """Build the arguments from a plain dict; keys this class does not know are ignored."""
        return cls.model_validate(data or {})

    def to_dict(self) -> dict[str, Any]:
        """The arguments as a plain dict (JSON-compatible values stay as they are)."""
        return self.model_dump()


class LLMWorkerActivationArgs(WorkerActivationArgs):
    """Activation arguments for an LLM worker: messages to add, and whether to run the model.

    ``run_llm`` defaults to true when ``messages`` is given and to false otherwise.
    """

    messages: list[dict[str, Any]] | None = None
    run_llm: bool | None = None

    @model_validator(mode="after")
    def _default_run_llm(self) -> Self:
        if self.run_llm is None:
            self.run_llm = self.messages is not None
        return self
