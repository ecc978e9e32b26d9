"""The endpoints of ``/v1``: what each does with the runner, the jobs submitted over HTTP
and the runtime events."""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from framework._values import NotJSONError, check_headers, jsonable
from framework.http import _openapi, _sse
from framework.http._errors import ApiError, invalid_body
from framework.http._hub import EventFilter, EventHub
from framework.http._limit import too_large
from framework.http._metrics import CONTENT_TYPE, JobMetrics
from framework.http._models import JobGroupSubmission, JobSubmission
from framework.http._settings import HttpSettings
from framework.http._tracker import JobRecord, JobTracker, to_json
from framework.jobs import JobError, JobGroupError
from framework.runner import WorkerRunner
from framework.types import JobStatus

logger = logging.getLogger("framework.http")


class Api:
    """The state behind the endpoints: the runner, the jobs submitted over HTTP, the event
    clients, and where jobs run (the service's task group)."""

    def __init__(
        self,
        runner: WorkerRunner,
        settings: HttpSettings,
        plugins: Callable[[], list[dict[str, Any]]],
        hub: EventHub,
        tracker: JobTracker,
        metrics: JobMetrics,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.plugins = plugins
        self.hub = hub
        self.tracker = tracker
        self.metrics = metrics
        self.task_group: anyio.abc.TaskGroup | None = None

    # ----------------------------------------------------------------- reading requests

    async def _body(self, request: Request) -> Any:
        """The request's JSON body, within ``max_body`` (413) and valid JSON (400)."""
        limit = self.settings.max_body
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, too_large(limit))
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, too_large(limit))
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks), parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise ApiError(400, "the body is nested too deeply to read") from None

    def _check_worker(self, worker: str) -> None:
        """404 when no worker of that name is known (local or remote)."""
        registry = self.runner.registry
        if worker in registry:
            return
        known = sorted(registry.local_workers + registry.remote_workers)
        close = difflib.get_close_matches(worker, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        failed = self.runner.failed_workers.get(worker)
        if failed is not None:
            raise ApiError(404, f"worker {worker!r} failed to start: {failed.error}")
        raise ApiError(
            404,
            f"no worker named {worker!r}{hint} (GET /v1/workers lists them)",
            {"workers": known},
        )

    @staticmethod
    def _check_headers(headers: dict[str, str] | None) -> dict[str, str]:
        try:
            return check_headers(headers)
        except ValueError as exc:
            raise ApiError(
                422, f"invalid body: headers: {exc}", [{"field": "headers", "reason": str(exc)}]
            ) from None

    # ----------------------------------------------------------------- jobs

    async def submit_job(self, request: Request) -> Response:
        """``POST /v1/jobs``."""
        wait = request.query_params.get("wait", "true")
        if wait not in ("true", "false"):
            raise ApiError(
                422,
                "invalid query: wait: must be true or false",
                [{"field": "wait", "reason": "must be true or false"}],
            )
        try:
            spec = JobSubmission.model_validate(await self._body(request))
        except ValidationError as exc:
            raise invalid_body(exc) from None
        headers = self._check_headers(spec.headers)
        _check_payload(spec.payload)
        self._check_worker(spec.worker)
        record = await self._start(spec, headers)
        if "text/event-stream" in request.headers.get("accept", ""):
            record.attach_submitter()
            return _sse_response(self._job_stream(record, 0, announce=True, submitter=True))
        if wait == "false":
            return JSONResponse(
                {"job_id": record.job_id},
                status_code=202,
                headers={"Location": f"/v1/jobs/{record.job_id}"},
            )
        await record.finished.wait()
        return Response(record.result_json(), media_type="application/json")

    async def _start(self, spec: JobSubmission, headers: dict[str, str]) -> JobRecord:
        if self.task_group is None:
            raise ApiError(503, "the runner is not serving jobs yet; try again")
        try:
            record: JobRecord = await self.task_group.start(self._run_job, spec, headers)
        except JobError as exc:
            raise ApiError(
                404 if exc.worker and exc.worker not in self.runner.registry else 503,
                str(exc),
            ) from None
        return record

    async def _run_job(
        self,
        spec: JobSubmission,
        headers: dict[str, str],
        *,
        task_status: anyio.abc.TaskStatus[JobRecord],
    ) -> None:
        """Run one job in the service's task group and record what it sends."""
        record: JobRecord | None = None
        try:
            async with self.runner.job(
                spec.worker,
                name=spec.name,
                payload=spec.payload,
                timeout=spec.timeout,
                headers=headers,
            ) as job:
                record = started = JobRecord(job.job_id, spec.worker, spec.name)
                self.tracker.start(started)
                task_status.started(started)
                async for event in job:
                    await started.room()
                    started.add(event.type, event.data)
            started.finish(job.status or JobStatus.ERROR, job.response or {})
        except JobError as exc:
            if record is None:
                raise
            record.finish(exc.status, exc.response)
        except Exception as exc:
            if record is None:
                raise
            logger.exception("job %s to worker %r over HTTP", record.job_id, spec.worker)
            record.finish(JobStatus.ERROR, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            if record is not None:
                if not record.done:  # cancelled: the runner is ending
                    record.finish(JobStatus.CANCELLED, {"error": "the runner ended"})
                self.tracker.finished(record)

    async def get_job(self, request: Request) -> Response:
        """``GET /v1/jobs/{job_id}``."""
        return JSONResponse(self._record(request).summary())

    async def cancel_job(self, request: Request) -> Response:
        """``DELETE /v1/jobs/{job_id}``."""
        record = self._record(request)
        if record.done:
            raise ApiError(
                409,
                f"job {record.job_id} has already ended {record.status}",
                {"status": record.status},
            )
        await self.runner.cancel_job(record.job_id, "cancelled over HTTP")
        return JSONResponse({"job_id": record.job_id, "status": "cancelling"}, status_code=202)

    async def follow_job(self, request: Request) -> Response:
        """``GET /v1/jobs/{job_id}/events``."""
        record = self._record(request)
        after = _sse.last_event_id(request.headers.get("last-event-id"))
        return _sse_response(self._job_stream(record, after, announce=False))

    def _record(self, request: Request) -> JobRecord:
        job_id = request.path_params["job_id"]
        record = self.tracker.get(job_id)
        if record is None:
            raise ApiError(
                404,
                f"no job {_short(job_id)} submitted over HTTP (or it is older than the last "
                f"{self.settings.history} jobs kept)",
            )
        return record

    @staticmethod
    async def _job_stream(
        record: JobRecord, after: int, *, announce: bool, submitter: bool = False
    ) -> AsyncIterator[bytes]:
        if announce:
            yield _sse.encode("job", to_json({"job_id": record.job_id}))
        async for item in record.follow(after, submitter=submitter):
            if item is None:
                yield _sse.KEEPALIVE
            else:
                yield _sse.encode(item[1], item[2], item[0])

    async def submit_group(self, request: Request) -> Response:
        """``POST /v1/job-groups``."""
        try:
            spec = JobGroupSubmission.model_validate(await self._body(request))
        except ValidationError as exc:
            raise invalid_body(exc) from None
        headers = self._check_headers(spec.headers)
        _check_payload(spec.payload)
        if len(set(spec.workers)) != len(spec.workers):
            raise ApiError(
                422,
                "invalid body: workers: each worker may appear once",
                [{"field": "workers", "reason": "each worker may appear once"}],
            )
        for worker in spec.workers:
            self._check_worker(worker)
        group = self.runner.job_group(
            *spec.workers,
            name=spec.name,
            payload=spec.payload,
            timeout=spec.timeout,
            cancel_on_error=spec.cancel_on_error,
            headers=headers,
        )
        try:
            async with group:
                async for _ in group:
                    pass
        except (JobError, JobGroupError):
            pass  # the statuses say how each member ended
        statuses = {name: str(status) for name, status in group.statuses.items()}
        return JSONResponse(
            {"job_id": group.job_id, "statuses": statuses, "responses": group.responses}
        )

    # ----------------------------------------------------------------- reading the runner

    async def health(self, request: Request) -> Response:
        """``GET /v1/health``."""
        return JSONResponse({"status": "ok", "runner": self.runner.name})

    async def workers(self, request: Request) -> Response:
        """``GET /v1/workers``."""
        registry = self.runner.registry
        rows = []
        for name in sorted(registry.local_workers + registry.remote_workers):
            data = registry.get(name)
            if data is None:
                continue
            entry = registry.entry(name)
            rows.append(
                {
                    "name": name,
                    "runner": data.runner,
                    "local": data.runner == self.runner.name,
                    "active": entry.active if entry is not None else True,
                    "jobs": [job.model_dump(mode="json") for job in data.jobs],
                }
            )
        failed = [
            {"name": name, "error": error.error}
            for name, error in sorted(self.runner.failed_workers.items())
        ]
        return JSONResponse({"workers": rows, "failed": failed})

    async def plugins_info(self, request: Request) -> Response:
        """``GET /v1/plugins``."""
        return JSONResponse(self.plugins())

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``."""
        registry = self.runner.registry
        described = [
            data
            for name in registry.local_workers + registry.remote_workers
            if (data := registry.get(name)) is not None
        ]
        document = _openapi.build(
            self.runner.name, described, token=self.settings.token is not None
        )
        return JSONResponse(document)

    async def metrics_text(self, request: Request) -> Response:
        """``GET /metrics``."""
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    async def events(self, request: Request) -> Response:
        """``GET /v1/events``."""
        wanted = EventFilter(request.query_params.get("worker"), request.query_params.get("job_id"))
        after = _sse.last_event_id(request.headers.get("last-event-id"))
        subscription = self.hub.subscribe(wanted, after)

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in subscription.batches():
                    yield chunk
            finally:
                self.hub.unsubscribe(subscription)

        return _sse_response(stream())


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _check_payload(payload: dict[str, Any] | None) -> None:
    """422 for a payload that a job cannot carry (the same check as on every bus)."""
    try:
        jsonable(payload, "payload")
    except NotJSONError as exc:
        field = "payload" + exc.path.removeprefix("$")
        raise ApiError(
            422, f"invalid body: {field}: {exc}", [{"field": field, "reason": str(exc)}]
        ) from None


def _short(text: str, limit: int = 200) -> str:
    """``text`` quoted, cut to ``limit`` characters: an error never echoes a huge input."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _sse_response(stream: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(stream, media_type=_sse.MEDIA_TYPE, headers=_sse.HEADERS)
