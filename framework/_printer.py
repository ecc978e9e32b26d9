"""How ``framework run --job`` prints a job's events and response; the same whether the job
runs in-process or on a runner reached with ``--url``.

- ``--json``: every event and the response as JSON lines on stdout, for machines.
- Otherwise stdout carries only what a pipe wants: the stream's text when the job streams
  text, else the response as one JSON line. Updates, other stream items and (after a text
  stream) the response go to stderr, as ``update: {...}`` lines.
- When stderr is a terminal (and ``NO_COLOR`` is not set), a live status line replaces the
  update lines: the worker, the elapsed time, the last update and its progress
  (``progress`` from 0 to 1, or ``done`` of ``of``); messages are coloured. ``rich`` is
  imported only then.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

from framework._exit_codes import job_exit_code
from framework.jobs import JobEvent
from framework.types import JobStatus

if TYPE_CHECKING:
    from framework._live import LiveStatus


def wants_live(stream: Any = None) -> bool:
    """Whether to draw the live status line and colour on ``stream`` (default stderr): a
    terminal, ``NO_COLOR`` unset or empty, and ``TERM`` not ``dumb``."""
    stream = sys.stderr if stream is None else stream
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


class JobPrinter:
    """Prints a job's events as they arrive, and its outcome."""

    def __init__(self, as_json: bool, worker: str = "", *, live: bool | None = None) -> None:
        self.as_json = as_json
        self.worker = worker
        self._mid_line = False
        self._streamed_text = False
        self._live: LiveStatus | None = None
        if not as_json and (wants_live() if live is None else live):
            from framework._live import LiveStatus

            self._live = LiveStatus(worker, sys.stderr)
            self._live.start()

    # ----------------------------------------------------------------- output

    def _stdout_line(self, text: str) -> None:
        if self._mid_line:
            sys.stdout.write("\n")
            self._mid_line = False
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def _note(self, text: str) -> None:
        """A line on stderr (above the live status line when there is one)."""
        if self._live is not None:
            self._live.print(text)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    # ----------------------------------------------------------------- events

    def event(self, event: JobEvent) -> None:
        if self.as_json:
            self._stdout_line(_dumps({"type": event.type, "data": event.data}))
        elif event.type == JobEvent.UPDATE:
            if self._live is not None:
                self._live.update(event.data)
            else:
                self._note(f"update: {_dumps(event.data)}")
        elif event.type == JobEvent.STREAM_DATA:
            if isinstance(event.data, str):
                if self._live is not None and sys.stdout.isatty():
                    self._stop_live()  # the text and the status line would share a terminal
                sys.stdout.write(event.data)
                sys.stdout.flush()
                self._mid_line = bool(event.data) and not event.data.endswith("\n")
                self._streamed_text = True
            else:
                self._note(f"stream: {_dumps(event.data)}")

    def response(self, status: JobStatus, response: dict[str, Any]) -> None:
        if self.as_json:
            self._stdout_line(
                _dumps({"type": "response", "status": str(status), "response": response})
            )
        elif self._streamed_text:
            self.end()
            self._note(f"response: {_dumps(response)}")
        else:
            self._stdout_line(_dumps(response))

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
        self._stop_live()
        self.response(status, response)
        self.end()
        if status is not JobStatus.COMPLETED:
            detail = str(response.get("error", ""))
            if timed_out:
                line = f"{detail or 'timed out'}{where}; it was cancelled"
            else:
                line = f"ended {status}{where}" + (f": {detail}" if detail else "")
            message = f"framework: job to worker {worker!r} {line}"
            if wants_live():
                from framework._live import error_line

                error_line(message, sys.stderr, warning=timed_out or status is JobStatus.CANCELLED)
            else:
                print(message, file=sys.stderr, flush=True)
        return job_exit_code(status, timed_out=timed_out)

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def end(self) -> None:
        """Finish the line the stream's text left open, and stop the status line."""
        self._stop_live()
        if self._mid_line:
            sys.stdout.write("\n")
            self._mid_line = False
        sys.stdout.flush()
