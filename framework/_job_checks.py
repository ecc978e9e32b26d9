"""Checks ``framework run --job`` makes before it sends a job, the same in-process and over
``--url``: is there such a worker, does it answer that job name, and what did the user
probably mean when not."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence


class BadJobName(Exception):
    """The worker has named jobs, none of them is the one asked for, and it has no default
    handler to take it: a usage error (exit 2)."""


def did_you_mean(name: str, known: Iterable[str], suffix: str = "") -> str:
    """``"; did you mean 'echo'?"`` when ``known`` has a name close to ``name``, else ``""``.

    ``suffix`` follows each name suggested: a tools entry's prefix is matched, and the
    whole entry suggested (``'mcp' + ':time'``).
    """
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c + suffix) for c in close) + "?"


def unknown_worker(worker: str, where: str, known: Iterable[str]) -> str:
    """The message for a worker that is not there: what is there, and the likely typo."""
    names = sorted(set(known))
    listing = ", ".join(names) or "none"
    return f"no worker named {worker!r} {where}{did_you_mean(worker, names)} (workers: {listing})"


def check_job_name(worker: str, name: str | None, jobs: Sequence[str | None]) -> str | None:
    """Check ``--name`` against the job names a worker describes (None: its default handler).

    Raises ``BadJobName`` when the worker has named jobs, no default handler, and ``name``
    is not one of them (or is missing). Returns a note to print when a default handler will
    take a ``name`` that looks like a typo of a named job, else None. A worker that
    describes no jobs (its description has not arrived) is not checked.
    """
    if not jobs:
        return None
    named = sorted(job for job in jobs if job is not None)
    has_default = None in jobs
    if name is not None and name in named:
        return None
    listing = ", ".join(named)
    if not has_default:
        if name is None:
            raise BadJobName(
                f"worker {worker!r} has no default handler: give --name (its jobs: {listing})"
            )
        raise BadJobName(
            f"worker {worker!r} has no job named {name!r}{did_you_mean(name, named)} "
            f"(its jobs: {listing})"
        )
    if name is not None and named:
        hint = did_you_mean(name, named)
        if hint:
            return (
                f"worker {worker!r} has no job named {name!r}{hint}; its default handler takes it"
            )
    return None
