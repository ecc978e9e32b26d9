"""The exit codes of the ``framework`` command, in one place: the in-process ``--job``
path and the ``--url`` client return the same code for the same outcome."""

from __future__ import annotations

from framework.types import JobStatus

EXIT_OK = 0
"""The command did what it was asked; ``--job``: the job ended ``COMPLETED``."""
EXIT_FAILED = 1
"""The job ended ``FAILED`` or ``ERROR``, or the command could not do what was asked."""
EXIT_USAGE = 2
"""A command-line usage error or a configuration error."""
EXIT_CANCELLED = 3
"""The job ended ``CANCELLED`` by someone else (its runner ending, another client)."""
EXIT_TIMED_OUT = 124
"""``--timeout`` passed: the job was cancelled (the code ``timeout(1)`` uses)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C or SIGTERM during ``--job``: the job was cancelled first (128 + SIGINT)."""


def job_exit_code(status: JobStatus, *, timed_out: bool = False) -> int:
    """The exit code of ``framework run --job`` for a job that ended with ``status``."""
    if status is JobStatus.COMPLETED:
        return EXIT_OK
    if timed_out:
        return EXIT_TIMED_OUT
    if status is JobStatus.CANCELLED:
        return EXIT_CANCELLED
    return EXIT_FAILED
