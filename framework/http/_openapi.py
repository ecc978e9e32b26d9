"""``GET /openapi.json``: an OpenAPI 3.1 document of the API, with each worker's typed job
inputs.

The static part comes from the bodies' pydantic models. For every described job with a
typed input (``BaseWorker.describe()``, local or remote), the request body of
``POST /v1/jobs`` gains a variant naming that worker and job with its payload schema, so
that a client generator or a fuzzer knows what each job takes.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from framework.http import _models
from framework.types import WorkerReadyData

REF = "#/components/schemas/{model}"
_NON_NAME = re.compile(r"[^A-Za-z0-9_.-]")

_MODELS: list[type[BaseModel]] = [
    _models.JobSubmission,
    _models.JobGroupSubmission,
    _models.JobResult,
    _models.JobAccepted,
    _models.JobSummary,
    _models.JobCancelled,
    _models.JobGroupResult,
    _models.Health,
    _models.WorkerList,
    _models.ErrorBody,
]


def _static_schemas() -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in _MODELS], ref_template=REF)
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=schema)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("ErrorBody")}


def _sse(description: str, events: list[str] | None) -> dict[str, Any]:
    """An SSE stream; its schema describes one event (as OpenAPI 3.1 tools read it, and
    3.2's ``itemSchema``): ``event`` its type (one of ``events``; none when None), ``data``
    its JSON text, ``id`` its number."""
    event: dict[str, Any] = {
        "type": "object",
        "description": description,
        "properties": {
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string", "pattern": "^[0-9]+$"},
        },
        "required": ["data"],
    }
    if events is not None:
        event["properties"]["event"] = {"enum": events}
        event["required"].append("event")
    return {"text/event-stream": {"schema": event}}


_JOB_EVENTS = ["update", "stream_start", "stream_data", "stream_end", "response"]
_JOB_SSE = _sse("One event of the job: the job's events, then its response.", _JOB_EVENTS)
_SUBMIT_SSE = _sse(
    "One event of the job: first its id (job), then the job's events, then its response.",
    ["job", *_JOB_EVENTS],
)
_EVENTS_SSE = _sse("One runtime event (an EventModel as JSON; id = sequence_id).", None)
_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
_BAD = {
    "400": _error("The body is not JSON."),
    "413": _error("The body is larger than [http] max_body."),
    "422": _error("The body does not validate: which field and why."),
}


def _paths() -> dict[str, Any]:
    return {
        "/v1/health": {
            "get": {
                "summary": "Whether the runner serves (never needs the token)",
                "operationId": "health",
                "security": [],
                "responses": {"200": {"description": "It serves.", "content": _json("Health")}},
            }
        },
        "/v1/workers": {
            "get": {
                "summary": "The workers, local and remote, with their described jobs",
                "operationId": "listWorkers",
                "responses": {
                    "200": {"description": "The workers.", "content": _json("WorkerList")}
                },
            }
        },
        "/v1/plugins": {
            "get": {
                "summary": "The plugins found, as `framework plugins --json` prints them",
                "operationId": "listPlugins",
                "responses": {
                    "200": {
                        "description": "One object per plugin.",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"type": "object"}}
                            }
                        },
                    }
                },
            }
        },
        "/v1/jobs": {
            "post": {
                "summary": "Submit a job: wait for its response, follow it as SSE, or just send it",
                "operationId": "submitJob",
                "parameters": [
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["true", "false"]},
                        "description": "false: answer 202 with the job id at once.",
                    }
                ],
                "requestBody": {"required": True, "content": _json("JobRequest")},
                "responses": {
                    "200": {
                        "description": "The job ended (whatever its status); with "
                        "`Accept: text/event-stream`, its events as SSE.",
                        "content": {**_json("JobResult"), **_SUBMIT_SSE},
                    },
                    "202": {
                        "description": "Sent (wait=false); follow it at Location.",
                        "headers": {"Location": {"schema": {"type": "string"}}},
                        "content": _json("JobAccepted"),
                    },
                    "404": _error("No worker of that name."),
                    **_BAD,
                },
            }
        },
        "/v1/jobs/{job_id}": {
            "get": {
                "summary": "A job submitted over HTTP: running, or how it ended",
                "operationId": "getJob",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": {"description": "The job.", "content": _json("JobSummary")},
                    "404": _error("No such job (or it is older than [http] history)."),
                },
            },
            "delete": {
                "summary": "Cancel a running job (it ends cancelled)",
                "operationId": "cancelJob",
                "parameters": [_JOB_ID],
                "responses": {
                    "202": {"description": "Cancelling.", "content": _json("JobCancelled")},
                    "404": _error("No such job."),
                    "409": _error("The job has already ended; detail has its status."),
                },
            },
        },
        "/v1/jobs/{job_id}/events": {
            "get": {
                "summary": "SSE: the job's events so far, then live ones until its response",
                "description": "Resume with the Last-Event-ID header.",
                "operationId": "followJob",
                "parameters": [_JOB_ID],
                "responses": {
                    "200": {"description": "The event stream.", "content": _JOB_SSE},
                    "404": _error("No such job."),
                },
            }
        },
        "/v1/job-groups": {
            "post": {
                "summary": "Send one job to several workers and wait for every response",
                "operationId": "submitJobGroup",
                "requestBody": {"required": True, "content": _json("JobGroupSubmission")},
                "responses": {
                    "200": {
                        "description": "Every member ended.",
                        "content": _json("JobGroupResult"),
                    },
                    "404": _error("A worker of the group is unknown."),
                    **_BAD,
                },
            }
        },
        "/v1/events": {
            "get": {
                "summary": "SSE of every runtime event (id = sequence_id)",
                "operationId": "events",
                "parameters": [
                    {
                        "name": "worker",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "job_id",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {"200": {"description": "The event stream.", "content": _EVENTS_SSE}},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "The text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def _typed_variants(
    workers: list[WorkerReadyData], schemas: dict[str, Any]
) -> list[dict[str, Any]]:
    """One request-body variant per typed job; their schemas go into ``schemas``."""
    variants = []
    for data in sorted(workers, key=lambda d: d.worker_name):
        for job in data.jobs:
            if job.input_schema is None:
                continue
            key = _NON_NAME.sub("_", f"{data.worker_name}.{job.name or 'default'}")
            schemas[f"Payload.{key}"] = _hoist(job.input_schema, f"Payload.{key}.", schemas)
            variant: dict[str, Any] = {
                "type": "object",
                "title": f"{data.worker_name}: {job.name or '(default job)'}",
                "properties": {
                    "worker": {"const": data.worker_name},
                    "name": {"const": job.name} if job.name else {"type": "null"},
                    "payload": {"$ref": REF.format(model=f"Payload.{key}")},
                    "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    "headers": {
                        "type": ["object", "null"],
                        "additionalProperties": {"type": "string"},
                        **_models.HEADERS_SCHEMA,
                    },
                },
                "required": ["worker", "payload"] + ([] if job.name is None else ["name"]),
                "additionalProperties": False,
            }
            if job.description:
                variant["description"] = job.description
            variants.append(variant)
    return variants


def _hoist(schema: dict[str, Any], prefix: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` moved to the components (under ``prefix``) and its
    ``#/$defs/`` references pointed there."""
    schema = dict(schema)
    for name, definition in schema.pop("$defs", {}).items():
        schemas[prefix + name] = _retarget(definition, prefix)
    result: dict[str, Any] = _retarget(schema, prefix)
    return result


def _retarget(value: Any, prefix: str) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                REF.format(model=prefix + v.removeprefix("#/$defs/"))
                if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/")
                else _retarget(v, prefix)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_retarget(v, prefix) for v in value]
    return value


def build(runner_name: str, workers: list[WorkerReadyData], *, token: bool) -> dict[str, Any]:
    """The document for the workers known now. ``token``: the API requires one."""
    from framework import __version__

    schemas = _static_schemas()
    variants = _typed_variants(workers, schemas)
    schemas["JobRequest"] = {
        "description": "A job for any worker; the typed variants show what each typed job takes.",
        "anyOf": [*variants, {"$ref": REF.format(model="JobSubmission")}],
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": f"agent-plugin-framework runner {runner_name}",
            "version": __version__,
            "description": "Submit jobs to the runner's workers and follow what they do.",
        },
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    if token:
        document["security"] = [{"bearer": []}]
    return document
