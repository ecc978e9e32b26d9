"""``@tool``: worker methods an LLM may call, with a JSON schema made from their signature.

The schema comes from the type hints (through pydantic) and the docstring: its first
paragraph describes the tool, and a Google-style ``Args:`` section describes each
parameter. Arguments from the model are validated against the same model before the call.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, get_type_hints, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

if TYPE_CHECKING:
    from framework.config import RunConfig
    from framework.llm.worker import LLMWorker

F = TypeVar("F", bound=Callable[..., Any])

_TOOL_MARK = "__framework_tool__"
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""The tool names OpenAI-compatible servers accept."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model sees it, and how to call it."""

    name: str
    description: str
    parameters: dict[str, Any]
    """The JSON schema of the arguments (an object)."""
    call: Callable[[dict[str, Any]], Awaitable[Any]] = field(repr=False, compare=False)
    """Validate the arguments and run the tool (the bound method, or any coroutine)."""

    def schema(self) -> dict[str, Any]:
        """The OpenAI function-tool schema."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


TOOL_REF = re.compile(r"^([a-z][a-z0-9_-]*):(.+)$")
"""An LLM worker's ``tools`` entry: ``PREFIX:NAME`` (``mcp:time``)."""


@runtime_checkable
class ToolSource(Protocol):
    """Tools from outside a worker's code, for the LLM workers that ask for them.

    A plugin registers a source under a prefix (``register_tool_sources``); an LLM worker
    whose ``tools`` setting lists ``"PREFIX:NAME"`` gets the tools ``NAME`` stands for
    there (agent-plugin-mcp's ``mcp:NAME``: the tools of the MCP server ``NAME``).
    """

    def check(self, name: str, config: RunConfig) -> None:
        """Whether ``NAME`` can be served with this run configuration; called by ``framework
        run`` (and ``framework config check``) before anything starts.

        Raises:
            ValueError: saying what is wrong and what to do; it is reported as a
                configuration error on the worker's ``tools`` entry.
        """
        ...

    async def tools(self, name: str, worker: LLMWorker) -> list[ToolSpec]:
        """The tools ``NAME`` offers ``worker`` now, called each time the worker runs its
        model (each job). Tool names should match ``^[A-Za-z0-9_-]{1,64}$`` (what
        OpenAI-compatible servers accept); a tool's ``call`` that raises gives the model the
        error, and the run goes on.

        Raises:
            Exception: the tools cannot be had now (a server that is down): the run goes on
                without them, and the job's requester gets an update with a warning.
        """
        ...


def tool(func: F | None = None, /, *, name: str | None = None) -> Any:
    """Mark a worker method as a tool the model may call: ``@tool`` or ``@tool(name=...)``.

    The method may be ``async def`` or a plain function; its parameters need type hints.
    What it returns (a dict, a pydantic model, a string, a number...) is given to the
    model as JSON; an exception it raises is given to the model as an error, and the
    conversation goes on.
    """

    def mark(f: F) -> F:
        tool_name = name or f.__name__
        if not TOOL_NAME.match(tool_name):
            raise ValueError(f"tool name {tool_name!r} must be 1-64 letters, digits, '_' or '-'")
        setattr(f, _TOOL_MARK, tool_name)
        return f

    if isinstance(func, str):
        raise TypeError(f"write @tool(name={func!r}): the tool's name is a keyword argument")
    return mark(func) if func is not None else mark


def tool_name(member: object) -> str | None:
    """The tool name a function was marked with, if any."""
    value = getattr(member, _TOOL_MARK, None)
    return value if isinstance(value, str) else None


def _docstring_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (first paragraph) and the ``Args:`` descriptions of a docstring."""
    text = inspect.cleandoc(doc or "")
    description = text.split("\n\n", 1)[0].replace("\n", " ").strip()
    params: dict[str, str] = {}
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?)+)", text, re.MULTILINE)
    if match:
        current = None
        for line in match.group(1).splitlines():
            item = re.match(r"^\s{2,8}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if item:
                current = item.group(1)
                params[current] = item.group(2).strip()
            elif current and line.strip():
                params[current] += " " + line.strip()
    return description, params


def arguments_model(func: Callable[..., Any], tool: str) -> type[BaseModel]:
    """A pydantic model of ``func``'s parameters (``self`` left out)."""
    signature = inspect.signature(func)
    hints = get_type_hints(func)
    _, descriptions = _docstring_parts(func.__doc__)
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.name == "self":
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {tool!r}: *args and **kwargs cannot be described to a model")
        if parameter.name not in hints:
            raise TypeError(f"tool {tool!r}: parameter {parameter.name!r} needs a type hint")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (
            hints[parameter.name],
            Field(default, description=descriptions.get(parameter.name)),
        )
    model: type[BaseModel] = create_model(
        f"{tool}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def method_tool(instance: object, attribute: str, tool_name: str) -> ToolSpec:
    """The ``ToolSpec`` of a ``@tool`` method bound to ``instance``."""
    method = getattr(instance, attribute)
    function = getattr(type(instance), attribute)
    model = arguments_model(function, tool_name)
    description, _ = _docstring_parts(function.__doc__)
    schema = model.model_json_schema()
    schema.pop("title", None)

    async def call(arguments: dict[str, Any]) -> Any:
        try:
            values = model.model_validate(arguments)
        except ValidationError as exc:  # short, for the model: no URLs, no input echo
            problems = exc.errors(include_url=False, include_input=False)
            detail = "; ".join(
                f"{'.'.join(map(str, p['loc'])) or 'arguments'}: {p['msg']}" for p in problems
            )
            raise ValueError(f"invalid arguments for {tool_name}: {detail}") from None
        result = method(**{name: getattr(values, name) for name in type(values).model_fields})
        if inspect.isawaitable(result):
            result = await result
        return result

    return ToolSpec(tool_name, description or f"The {tool_name} tool.", schema, call)
