"""``framework run --job WORKER --url URL``: submit the job to a runner that serves HTTP,
print what it sends exactly as the in-process path does, and return the same exit code.

Ctrl-C or SIGTERM cancels the job on the runner (``DELETE /v1/jobs/{job_id}``) and exits
130. ``FRAMEWORK_HTTP_TOKEN`` is sent as the bearer token when set.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from framework._exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE
from framework._job_checks import BadJobName, check_job_name, unknown_worker
from framework._printer import JobPrinter
from framework.http import _sse
from framework.http._settings import DEFAULT_LISTEN, TOKEN_ENV
from framework.jobs import JobEvent
from framework.types import JobStatus

if TYPE_CHECKING:
    import httpx

    from framework._run_command import JobRequest

CONNECT_SECONDS = 10.0
SILENCE_SECONDS = 3 * _sse.KEEPALIVE_SECONDS
"""A runner that sends nothing for this long (it sends a keepalive every
``KEEPALIVE_SECONDS``) is taken for stopped."""


class SubmitFailed(Exception):
    """The job could not be submitted or followed; the message says why and what to do,
    ``code`` is the exit code (1, or 2 for a usage error)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


class _Interrupted(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    raise _Interrupted(signal.Signals(signum).name)


def check_url(url: str) -> str:
    """``url`` without a trailing slash, if it is an http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SubmitFailed(
            f"--url {url!r} is not an HTTP URL; give the address a runner serves at, as "
            "http://127.0.0.1:8765",
            EXIT_USAGE,
        )
    return url.rstrip("/")


def submit(url: str, request: JobRequest) -> int:
    """Submit ``request`` to the runner at ``url``; the exit code of ``framework run --job``."""
    import httpx

    base = check_url(url)
    headers = {"Accept": _sse.MEDIA_TYPE}
    token = os.environ.get(TOKEN_ENV)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body: dict[str, Any] = {"worker": request.worker, "payload": request.payload}
    if request.name is not None:
        body["name"] = request.name
    if request.timeout is not None:
        body["timeout"] = request.timeout
    printer = JobPrinter(request.as_json, request.worker)
    state: dict[str, str] = {}
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    timeout = httpx.Timeout(CONNECT_SECONDS, read=SILENCE_SECONDS)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=timeout) as client:
            return _follow(client, body, printer, state, base, request.timeout)
    except (_Interrupted, KeyboardInterrupt) as exc:
        name = exc.name if isinstance(exc, _Interrupted) else "SIGINT"
        printer.end()
        job_id = state.get("job_id")
        if job_id is not None:
            with contextlib.suppress(httpx.HTTPError):
                httpx.delete(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=CONNECT_SECONDS)
        print(
            f"framework: {name} received; the job to worker {request.worker!r} was cancelled",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except httpx.ConnectError as exc:
        raise SubmitFailed(
            f"cannot reach a runner at {base}: {exc}; is 'framework run' serving there?"
        ) from None
    except httpx.ReadTimeout:
        raise SubmitFailed(
            f"the runner at {base} sent nothing for {SILENCE_SECONDS:g} s, not even a "
            "keepalive: it may be stopped or overloaded"
            + (f"; the job {state['job_id']}'s outcome is unknown" if "job_id" in state else "")
        ) from None
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if "job_id" in state:
            raise SubmitFailed(
                f"the runner at {base} went away before the job's response (did it stop?); "
                f"the job {state['job_id']}'s outcome is unknown"
            ) from None
        raise SubmitFailed(
            f"the connection to {base} failed: {type(exc).__name__}: {exc}"
        ) from None
    except httpx.HTTPError as exc:
        raise SubmitFailed(
            f"the connection to {base} failed: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _follow(
    client: httpx.Client,
    body: dict[str, Any],
    printer: JobPrinter,
    state: dict[str, str],
    base: str,
    timeout: float | None,
) -> int:
    worker = body["worker"]
    _check_names(client, worker, body.get("name"), base)
    with client.stream("POST", "/v1/jobs", json=body) as answer:
        if answer.status_code != 200:
            answer.read()
            raise SubmitFailed(f"{base} refused the job: {_error_text(answer)}")
        for event, data, _ in _sse.parse(answer.iter_lines()):
            value = json.loads(data)
            if event == "job":
                state["job_id"] = value["job_id"]
            elif event == "skipped":
                printer.end()
                print(
                    f"framework: warning: {value.get('skipped')} of the job's events were lost "
                    "(this terminal read too slowly for the runner's patience)",
                    file=sys.stderr,
                )
            elif event == "response":
                status = JobStatus(value["status"])
                response = value["response"] or {}
                error = str(response.get("error", ""))
                timed_out = (
                    timeout is not None
                    and status is JobStatus.CANCELLED
                    and error.startswith("timed out after")
                )
                where = f" on the runner at {base}" if status is JobStatus.CANCELLED else ""
                return printer.outcome(
                    worker, status, response, timed_out=timed_out, where="" if timed_out else where
                )
            else:
                printer.event(JobEvent(event, value))
    printer.end()
    raise SubmitFailed(
        f"the runner at {base} closed the stream before the job's response (did it stop?)"
    )


def _check_names(client: httpx.Client, worker: str, name: str | None, base: str) -> None:
    """The worker and job-name checks of the in-process path, against ``GET /v1/workers``
    (skipped when the runner does not answer it)."""
    import httpx

    try:
        answer = client.get("/v1/workers", timeout=CONNECT_SECONDS)
        rows = answer.json()["workers"] if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        rows = None
    if not isinstance(rows, list):
        return
    by_name = {row.get("name"): row for row in rows if isinstance(row, dict)}
    row = by_name.get(worker)
    if row is None:
        raise SubmitFailed(unknown_worker(worker, f"on the runner at {base}", map(str, by_name)))
    jobs = [job.get("name") for job in row.get("jobs", []) if isinstance(job, dict)]
    try:
        note = check_job_name(worker, name, jobs)
    except BadJobName as exc:
        raise SubmitFailed(str(exc), EXIT_USAGE) from None
    if note is not None:
        print(f"framework: note: {note}", file=sys.stderr)


def _error_text(answer: httpx.Response) -> str:
    if answer.status_code == 401:
        return (
            "401: the runner needs its token: set FRAMEWORK_HTTP_TOKEN to it"
            if "authorization" not in answer.request.headers
            else "401: the token in FRAMEWORK_HTTP_TOKEN is not the runner's"
        )
    try:
        error = answer.json().get("error")
    except ValueError:
        error = None
    return f"{answer.status_code}: {error or answer.text[:200]}"


def serving_runner(url: str = "http://" + DEFAULT_LISTEN) -> str | None:
    """The name of the runner serving HTTP at ``url`` on this machine, or None; quick and
    light: a refused connection costs microseconds, and the standard library's
    ``http.client`` asks ``/v1/health`` (which needs no token: none is sent)."""
    import http.client

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=0.5)
    try:
        connection.request("GET", "/v1/health")
        answer = connection.getresponse()
        name = json.loads(answer.read(65536)).get("runner") if answer.status == 200 else None
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return name if isinstance(name, str) else None
