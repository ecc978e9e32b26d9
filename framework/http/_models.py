"""The API's request and response bodies, as pydantic models: requests are validated with
them, and the OpenAPI document is generated from them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from framework._values import MAX_HEADER_BYTES, MAX_HEADERS, RESERVED_HEADER_PREFIX
from framework.types import JobDescription

_STATUS = Literal["running", "completed", "cancelled", "failed", "error"]
_TERMINAL = Literal["completed", "cancelled", "failed", "error"]


HEADERS_SCHEMA: dict[str, Any] = {
    "maxProperties": MAX_HEADERS,
    "propertyNames": {
        "pattern": "^[a-z0-9-]+$",
        "not": {"pattern": f"^{RESERVED_HEADER_PREFIX}"},
    },
}
"""What the document says of a job's headers, beyond a map of str to str (checked by
``check_headers``, which also bounds their size)."""
HEADERS_DESCRIPTION = (
    "Job headers the handler reads as job.headers: lower-case [a-z0-9-] names, at most "
    f"{MAX_HEADERS} and {MAX_HEADER_BYTES // 1024} KiB in all; the prefix "
    f"'{RESERVED_HEADER_PREFIX}' is reserved."
)


class _Body(BaseModel):
    # Strict: a body is JSON, typed as the document says (``"timeout": true`` or ``"5"``
    # is refused with 422, as the document's schema refuses it).
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


class JobSubmission(_Body):
    """``POST /v1/jobs``: one job to one worker."""

    worker: str = Field(min_length=1, description="The worker's name (GET /v1/workers lists them).")
    name: str | None = Field(
        default=None, description="The job's name; the default handler when absent."
    )
    payload: dict[str, Any] | None = Field(
        default=None, description="The job's payload, a JSON object."
    )
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds before the job is cancelled (it then ends cancelled).",
    )
    headers: dict[str, str] | None = Field(
        default=None, description=HEADERS_DESCRIPTION, json_schema_extra=HEADERS_SCHEMA
    )


class JobGroupSubmission(_Body):
    """``POST /v1/job-groups``: one job to several workers under one job id."""

    workers: list[str] = Field(
        min_length=1,
        description="The workers' names, each once.",
        json_schema_extra={"uniqueItems": True},
    )
    name: str | None = None
    payload: dict[str, Any] | None = None
    timeout: float | None = Field(default=None, gt=0)
    cancel_on_error: bool = True
    headers: dict[str, str] | None = Field(
        default=None, description=HEADERS_DESCRIPTION, json_schema_extra=HEADERS_SCHEMA
    )


class JobResult(BaseModel):
    """A job's outcome (``POST /v1/jobs``, and the last SSE event, ``response``)."""

    job_id: str
    worker: str
    status: _TERMINAL
    response: dict[str, Any]


class JobAccepted(BaseModel):
    """``POST /v1/jobs?wait=false``: the job was sent; follow it at ``Location``."""

    job_id: str


class JobSummary(BaseModel):
    """``GET /v1/jobs/{job_id}``."""

    job_id: str
    worker: str
    name: str | None
    status: _STATUS
    response: dict[str, Any] | None
    submitted: float = Field(description="When it was submitted (Unix time).")
    duration: float | None = Field(
        description="Seconds from submission to response; null while running."
    )


class JobCancelled(BaseModel):
    """``DELETE /v1/jobs/{job_id}``: the job is being cancelled."""

    job_id: str
    status: Literal["cancelling"]


class JobGroupResult(BaseModel):
    """``POST /v1/job-groups``: each member's status and response."""

    job_id: str
    statuses: dict[str, _TERMINAL]
    responses: dict[str, dict[str, Any]]


class Health(BaseModel):
    """``GET /v1/health``."""

    status: Literal["ok"]
    runner: str


class WorkerInfo(BaseModel):
    """One worker the runner can send jobs to."""

    name: str
    runner: str = Field(description="The runner that hosts it.")
    local: bool = Field(description="Whether it runs on this runner.")
    active: bool
    jobs: list[JobDescription]


class FailedWorker(BaseModel):
    """A worker that failed to start on this runner."""

    name: str
    error: str


class WorkerList(BaseModel):
    """``GET /v1/workers``."""

    workers: list[WorkerInfo]
    failed: list[FailedWorker]


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str = Field(description="What was wrong and what to do.")
    detail: Any = Field(
        default=None, description="More: the fields that did not validate, the known workers..."
    )
