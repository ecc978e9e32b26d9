"""Tool names, both ways.

Served: a worker's default job is the tool ``WORKER``, a named job ``WORKER.JOB``. Each part
keeps ``A-Z a-z 0-9 _ -`` and has every other character replaced by ``_`` (so the one dot
always separates the worker from the job), and a name is cut to 128 characters, the
longest the MCP specification allows. Two jobs whose names come out the same are told
apart by a suffix, ``_2``, ``_3``..., given in the order of their worker's and job's names.

Used: a tool ``TOOL`` of the MCP server ``SERVER`` is offered to an LLM as ``SERVER_TOOL``
with every character but ``A-Z a-z 0-9 _ -`` replaced by ``_``, at most 64 characters (what
OpenAI-compatible servers accept); a longer name is cut and ends with ``_`` and 8 hex
digits of a hash of the whole name, and so does a name that comes out like another one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

MCP_NAME_LIMIT = 128
"""The longest tool name the MCP specification allows."""

LLM_NAME_LIMIT = 64
"""The longest tool name OpenAI-compatible servers accept."""

_OTHER = re.compile(r"[^A-Za-z0-9_-]")


def _part(text: str) -> str:
    return _OTHER.sub("_", text) or "_"


def served_names(jobs: Iterable[tuple[str, str | None]]) -> dict[str, tuple[str, str | None]]:
    """The MCP tool name of each ``(worker, job)`` (``job`` None: the default job), as a
    mapping from the name to the pair; every name is unique."""
    names: dict[str, tuple[str, str | None]] = {}
    for worker, job in sorted(jobs, key=lambda pair: (pair[0], pair[1] or "")):
        base = _part(worker) if job is None else f"{_part(worker)}.{_part(job)}"
        base = base[:MCP_NAME_LIMIT]
        name, number = base, 1
        while name in names:
            number += 1
            suffix = f"_{number}"
            name = base[: MCP_NAME_LIMIT - len(suffix)] + suffix
        names[name] = (worker, job)
    return names


def _hashed(name: str, whole: str) -> str:
    digest = hashlib.sha256(whole.encode()).hexdigest()[:8]
    return f"{name[: LLM_NAME_LIMIT - 9]}_{digest}"


def llm_names(server: str, tools: Iterable[str]) -> dict[str, str]:
    """The name an LLM is offered for each tool of ``server``: a mapping from that name to
    the tool's own name; every name is unique and matches ``^[A-Za-z0-9_-]{1,64}$``."""
    names: dict[str, str] = {}
    for tool in sorted(tools):
        whole = f"{server}_{tool}"
        name = _OTHER.sub("_", whole)
        if len(name) > LLM_NAME_LIMIT or name in names:
            name = _hashed(name, whole)
        names[name] = tool
    return names
