"""The agent card, built from the runner's registry, and the rule that picks the worker and
job an A2A message goes to.

Every job a worker describes (``BaseWorker.describe()``, kept by the registry for local
and remote workers alike) is one skill: ``WORKER`` for a worker's default job,
``WORKER.JOB`` for a named one. The JSON schemas of typed jobs travel in a card extension
(``SCHEMAS_EXTENSION``), since an A2A skill has no field for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    InvalidParamsError,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from agent_plugin_a2a._settings import A2ASettings
    from framework import WorkerRunner
    from framework.types import JobDescription

JSONRPC_PATH = "/a2a/jsonrpc"
REST_PATH = "/a2a/rest"
PROTOCOL_VERSIONS = ("1.0", "0.3")
"""A2A 1.0, and 0.3 for the clients that still speak it (the card then also has 0.3's
top-level fields: ``url``, ``preferredTransport``, ``protocolVersion``)."""
MODES = ["application/json", "text/plain"]
SCHEMAS_EXTENSION = (
    "https://github.com/agent-plugin-framework/agent-plugin-framework/blob/main/docs/a2a.md"
    "#skill-schemas"
)
"""The card extension whose ``params.skills`` maps a skill id to the JSON schemas of its
input and output (``input_schema``, ``output_schema``; only those that are typed)."""
ROUTING_KEYS = ("skill", "worker", "job")


@dataclass(frozen=True)
class Target:
    """Where a task goes: a worker, the job's name (None: the default job) and its
    description."""

    skill: str
    worker: str
    job: str | None
    description: JobDescription


def skills(runner: WorkerRunner) -> dict[str, Target]:
    """Every described job of every worker the runner knows, local and remote, by skill id."""
    registry = runner.registry
    found: dict[str, Target] = {}
    for worker in sorted({*registry.local_workers, *registry.remote_workers}):
        data = registry.get(worker)
        if data is None:
            continue
        for job in data.jobs:
            skill = worker if job.name is None else f"{worker}.{job.name}"
            found.setdefault(skill, Target(skill, worker, job.name, job))
    return found


def route(table: Mapping[str, Target], *metadata: Mapping[str, Any]) -> Target:
    """The target a message names in its metadata (the message's first, then the
    request's): ``skill`` (an id from the card), or ``worker`` with an optional ``job``;
    with neither, the only skill when there is exactly one.

    Raises:
        InvalidParamsError: the skill or worker is unknown, a key is not a string, or the
            message names no skill while there are several; the message lists the skills.
    """
    chosen = next((m for m in metadata if any(key in m for key in ROUTING_KEYS)), None)
    known = ", ".join(table) or "none (this runner has no workers)"
    if chosen is None:
        if len(table) == 1:
            return next(iter(table.values()))
        raise InvalidParamsError(
            message='the message names no skill: set "skill" in its metadata to one of the '
            f"card's skills: {known}"
        )
    for key in ROUTING_KEYS:
        if key in chosen and not isinstance(chosen[key], str):
            raise InvalidParamsError(
                message=f'metadata "{key}" must be a string, got {type(chosen[key]).__name__}'
            )
    if "skill" in chosen:
        skill = chosen["skill"]
    elif "worker" in chosen:
        skill = (
            chosen["worker"] if chosen.get("job") is None else f"{chosen['worker']}.{chosen['job']}"
        )
    else:
        raise InvalidParamsError(message='metadata "job" needs "worker" too (or use "skill")')
    target = table.get(skill)
    if target is None:
        worker = chosen.get("worker", skill)
        if "worker" in chosen and any(t.worker == worker for t in table.values()):
            raise InvalidParamsError(
                message=f"worker {worker!r} has no job {chosen.get('job')!r}; its skills: "
                + ", ".join(s for s, t in table.items() if t.worker == worker)
            )
        raise InvalidParamsError(message=f"unknown skill {skill!r}; this agent's skills: {known}")
    return target


def _framework_version() -> str:
    try:
        return version("agent-plugin-framework")
    except PackageNotFoundError:  # pragma: no cover - a checkout that was never installed
        return "0"


def _skill(target: Target) -> AgentSkill:
    job = target.description
    default = (
        f"The default job of worker {target.worker!r}."
        if target.job is None
        else f"Job {target.job!r} of worker {target.worker!r}."
    )
    first = job.description.strip().split("\n\n")[0].strip()
    return AgentSkill(
        id=target.skill,
        name=target.skill,
        description=first or default,
        tags=[target.worker, "streaming" if job.streaming else "response"],
        input_modes=["application/json"] if job.input_schema is not None else MODES,
        output_modes=MODES,
    )


def _schemas(table: Mapping[str, Target]) -> AgentExtension:
    schemas: dict[str, Any] = {}
    for skill, target in table.items():
        found = {
            key: value
            for key, value in (
                ("input_schema", target.description.input_schema),
                ("output_schema", target.description.output_schema),
            )
            if value is not None
        }
        if found:
            schemas[skill] = found
    return AgentExtension(
        uri=SCHEMAS_EXTENSION,
        description="JSON schemas of the skills' input (the message's data part) and output",
        required=False,
        params={"skills": schemas},
    )


def build_card(
    runner: WorkerRunner,
    settings: A2ASettings,
    base_url: str,
    *,
    bearer: bool,
    with_schemas: bool,
) -> AgentCard:
    """The card for ``runner`` served at ``base_url``.

    Args:
        bearer: the HTTP API needs a token: the card asks for the bearer scheme.
        with_schemas: add the skills' JSON schemas (the ``SCHEMAS_EXTENSION``). The public
            card of a runner with a token leaves them to the extended card, for clients
            with the token.
    """
    name = settings.name or runner.name
    table = skills(runner)
    card = AgentCard(
        name=name,
        description=settings.description
        or f"The workers of agent-plugin-framework runner {name!r}: each job is a skill.",
        version=_framework_version(),
        supported_interfaces=[
            AgentInterface(url=base_url + path, protocol_binding=binding, protocol_version=v)
            for v in PROTOCOL_VERSIONS
            for binding, path in (("JSONRPC", JSONRPC_PATH), ("HTTP+JSON", REST_PATH))
        ],
        capabilities=AgentCapabilities(
            streaming=True,
            push_notifications=False,
            extended_agent_card=True,
            extensions=[_schemas(table)] if with_schemas else [],
        ),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=[_skill(target) for target in table.values()],
    )
    if bearer:
        card.security_schemes["bearer"].CopyFrom(
            SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    description="the runner's HTTP token ([http] token or FRAMEWORK_HTTP_TOKEN)",
                )
            )
        )
        card.security_requirements.append(
            SecurityRequirement(schemes={"bearer": StringList(list=[])})
        )
    return card
