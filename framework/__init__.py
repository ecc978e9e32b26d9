"""agent-plugin-framework: workers exchange jobs over a bus, hosted by a runner, extended
by pluggy plugins.

Everything listed in ``__all__`` is the public API; docs/api.md says which modules are
public and stable.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from framework._requester import JobContext, JobGroupContext
    from framework.events import ContentType, Event, EventModel, EventType
    from framework.hookspecs import hookimpl, hookspec
    from framework.jobs import (
        Job,
        JobError,
        JobEvent,
        JobEventType,
        JobFailed,
        JobGroup,
        JobGroupError,
        JobGroupEvent,
        JobGroupResponse,
    )
    from framework.llm.tools import tool
    from framework.llm.worker import LLMWorker
    from framework.registry import WorkerRegistry
    from framework.runner import WorkerRunner
    from framework.types import (
        JobStatus,
        LLMWorkerActivationArgs,
        WorkerActivationArgs,
        WorkerErrorData,
        WorkerReadyData,
        WorkerRegistryEntry,
    )
    from framework.worker import BaseWorker, job, worker_ready

# Where each public name lives. Importing ``framework`` stays cheap (no pydantic, no anyio)
# until a name is used: a plugin module that only needs ``hookimpl`` imports pluggy and
# nothing more, and ``framework --help`` stays fast.
_LOCATIONS = {
    "ContentType": "framework.events",
    "Event": "framework.events",
    "EventModel": "framework.events",
    "EventType": "framework.events",
    "hookimpl": "framework.hookspecs",
    "hookspec": "framework.hookspecs",
    "Job": "framework.jobs",
    "JobContext": "framework._requester",
    "JobError": "framework.jobs",
    "JobEvent": "framework.jobs",
    "JobEventType": "framework.jobs",
    "JobFailed": "framework.jobs",
    "JobGroup": "framework.jobs",
    "JobGroupContext": "framework._requester",
    "JobGroupError": "framework.jobs",
    "JobGroupEvent": "framework.jobs",
    "JobGroupResponse": "framework.jobs",
    "WorkerRegistry": "framework.registry",
    "WorkerRunner": "framework.runner",
    "JobStatus": "framework.types",
    "LLMWorkerActivationArgs": "framework.types",
    "WorkerActivationArgs": "framework.types",
    "WorkerErrorData": "framework.types",
    "WorkerReadyData": "framework.types",
    "WorkerRegistryEntry": "framework.types",
    "BaseWorker": "framework.worker",
    "job": "framework.worker",
    "worker_ready": "framework.worker",
    "LLMWorker": "framework.llm.worker",
    "tool": "framework.llm.tools",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'framework' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "BaseWorker",
    "ContentType",
    "Event",
    "EventModel",
    "EventType",
    "Job",
    "JobContext",
    "JobError",
    "JobEvent",
    "JobEventType",
    "JobFailed",
    "JobGroup",
    "JobGroupContext",
    "JobGroupError",
    "JobGroupEvent",
    "JobGroupResponse",
    "JobStatus",
    "LLMWorker",
    "LLMWorkerActivationArgs",
    "WorkerActivationArgs",
    "WorkerErrorData",
    "WorkerReadyData",
    "WorkerRegistry",
    "WorkerRegistryEntry",
    "WorkerRunner",
    "hookimpl",
    "hookspec",
    "job",
    "tool",
    "worker_ready",
]
