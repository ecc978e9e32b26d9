"""How ``framework run --job`` prints a job's events and response: readable text, or one
JSON object per line with ``--json``; the same whether the job runs in-process or on a
runner reached with ``--url``."""

from __future__ import annotations

import json
import sys
from typing import Any

from framework._exit_codes import job_exit_code
from framework.jobs import JobEvent
from framework.types import JobStatus


class JobPrinter:
    """Prints a job's events as they arrive: readable text, or JSON lines."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self._mid_line = False

    def _line(self, text: str) -> None:
        if self._mid_line:
            sys.stdout.write("\n")
            self._mid_line = False
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def event(self, event: JobEvent) -> None:
        if self.as_json:
            self._line(json.dumps({"type": event.type, "data": event.data}, default=str))
        elif event.type == JobEvent.UPDATE:
            self._line(f"update: {json.dumps(event.data, default=str)}")
        elif event.type == JobEvent.STREAM_DATA:
            if isinstance(event.data, str):
                sys.stdout.write(event.data)
                sys.stdout.flush()
                self._mid_line = True
            else:
                self._line(json.dumps(event.data, default=str))

    def response(self, status: JobStatus, response: dict[str, Any]) -> None:
        if self.as_json:
            self._line(
                json.dumps(
                    {"type": "response", "status": str(status), "response": response}, default=str
                )
            )
        else:
            self._line(json.dumps(response, default=str))

    def outcome(
        self,
        worker: str,
        status: JobStatus,
        response: dict[str, Any],
        *,
        timed_out: bool = False,
        where: str = "",
    ) -> int:
        """Print the response and, unless the job completed, a line on stderr naming the
        worker and how the job ended; return the command's exit code. ``where`` says which
        runner ended it, for a job run on another (``--url``)."""
        self.response(status, response)
        self.end()
        if status is not JobStatus.COMPLETED:
            detail = str(response.get("error", ""))
            if timed_out:
                line = f"{detail or 'timed out'}{where}; it was cancelled"
            else:
                line = f"ended {status}{where}" + (f": {detail}" if detail else "")
            print(f"framework: job to worker {worker!r} {line}", file=sys.stderr)
        return job_exit_code(status, timed_out=timed_out)

    def end(self) -> None:
        if self._mid_line:
            sys.stdout.write("\n")
            self._mid_line = False
        sys.stdout.flush()
