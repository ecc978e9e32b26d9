"""agent-plugin-framework: workers exchange jobs over a bus, hosted by a runner, extended
by pluggy plugins.

Everything listed in ``__all__`` is the public API (see docs/ and DESIGN.md).
"""

from framework.events import ContentType, Event, EventModel, EventType
from framework.hookspecs import hookimpl, hookspec
from framework.jobs import (
    Job,
    JobContext,
    JobError,
    JobEvent,
    JobFailed,
    JobGroup,
    JobGroupContext,
    JobGroupError,
    JobGroupEvent,
    JobGroupResponse,
)
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
    "JobFailed",
    "JobGroup",
    "JobGroupContext",
    "JobGroupError",
    "JobGroupEvent",
    "JobGroupResponse",
    "JobStatus",
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
    "worker_ready",
]
