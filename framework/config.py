"""The run configuration: ``framework.toml``, ``[tool.framework]`` in ``pyproject.toml``, or
``--config FILE``, as pydantic models.

A bad file or value is a ``ConfigError`` naming the file, the key and the reason; the
command exits 2 before anything starts. Values written as ``{ env = "NAME" }`` are read
from the environment, so secrets need not sit in the file; declare them ``SecretStr`` in a
worker's config model and they are never printed.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from framework.http._settings import HttpConfig
from framework.urls import docs_url

CONFIG_FILE = "framework.toml"
PYPROJECT = "pyproject.toml"
CONFIG_KEYS_URL = docs_url("configuration.md#keys")
"""Where a pip user reads the configuration's keys."""
BUS_SECRET_VARIABLE = "FRAMEWORK_BUS_SECRET"
"""The environment variable that holds the bus secret when the configuration sets none."""


NO_FILE = "(defaults)"
"""``load_config``'s source when no configuration file was found: the defaults apply."""

RUN_CONFIGURATION = "the run configuration"
"""The file a plugin's ``ConfigError`` names when it does not know which file was loaded
(``configure_runner`` is handed the parsed configuration); ``framework run`` puts the
file's path in its place."""


class ConfigError(Exception):
    """A configuration problem: which file, which key, and why.

    ``key`` and ``reason`` are the first problem; ``problems`` lists every one found, as
    ``(key, reason)`` pairs, and the message shows them all (one per line when several).
    """

    def __init__(
        self,
        file: str,
        key: str,
        reason: str,
        more: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.file = file
        self.key = key
        self.reason = reason
        self.problems: list[tuple[str, str]] = [(key, reason), *more]
        super().__init__(self._message())

    def _message(self) -> str:
        if len(self.problems) == 1:
            where = f"{self.file}: {self.key}" if self.key else self.file
            return f"{where}: {self.reason}"
        lines = [f"{self.file}: {len(self.problems)} problems:"]
        lines += [f"  {key}: {reason}" if key else f"  {reason}" for key, reason in self.problems]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._message()

    @classmethod
    def combine(cls, errors: Sequence[ConfigError]) -> ConfigError:
        """One error listing every problem of ``errors`` (all about the same file)."""
        first = errors[0]
        more = [problem for error in errors for problem in error.problems][1:]
        return cls(first.file, first.key, first.reason, more)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class WorkerConfig(_Strict):
    """One worker to start: ``[[workers]]``."""

    type: str
    """The registered worker name (``framework plugins`` lists them)."""
    name: str | None = None
    """The instance's name (default: the registered name)."""
    active: bool = True
    config: dict[str, Any] = Field(default_factory=dict)
    """Validated by the worker class's own ``config_model``."""


class ConsolePublisherConfig(_Strict):
    """``[publishers.console]``: events as lines on stderr (``-v`` sets it)."""

    enabled: bool = False


class JsonlPublisherConfig(_Strict):
    """``[publishers.jsonl]``: events as JSON lines appended to ``path``."""

    path: Path | None = None


class MemoryPublisherConfig(_Strict):
    """``[publishers.memory]``: events kept in a list (tests)."""

    enabled: bool = False


class PublishersConfig(_Strict):
    """``[publishers]``: the built-in event publishers."""

    console: ConsolePublisherConfig = Field(default_factory=ConsolePublisherConfig)
    jsonl: JsonlPublisherConfig = Field(default_factory=JsonlPublisherConfig)
    memory: MemoryPublisherConfig = Field(default_factory=MemoryPublisherConfig)


class LLMConfig(_Strict):
    """``[llm]``: the default LLM backend and its settings (used by LLM workers)."""

    backend: str = "offline"
    options: dict[str, Any] = Field(default_factory=dict)


class RunConfig(_Strict):
    """Everything ``framework run`` reads from its configuration."""

    name: str | None = None
    """The runner's name (default: ``runner-`` and 8 hex digits)."""
    bus: str = "local://"
    """The bus URL; its scheme picks a bus registered with ``register_buses``."""
    bus_secret: tuple[SecretStr, ...] | None = None
    """The shared secret(s) that sign messages between runners on a network bus; a list
    for rotation (the first signs, any verifies). Read it with ``bus_secrets``."""
    grace_period: float = Field(default=5.0, ge=0)
    workers: list[WorkerConfig] | None = None
    """The workers to start; when absent, every registered worker under its own name."""
    publishers: PublishersConfig = Field(default_factory=PublishersConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    """``[http]``: the HTTP API and dashboard that ``framework run`` serves."""
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Settings for plugins, by plugin name, for their ``configure_runner``."""

    @field_validator("bus_secret", mode="before")
    @classmethod
    def _check_bus_secret(cls, value: Any) -> Any:
        """One secret or a list of them, each long enough; the errors never show a secret."""
        from framework.bus.network.signing import secret_problem

        if value is None:
            return None
        given = [value] if isinstance(value, str | SecretStr) else value
        if not isinstance(given, list | tuple) or not all(
            isinstance(one, str | SecretStr) for one in given
        ):
            raise PydanticCustomError(
                "bus_secret", 'must be a string, { env = "NAME" }, or a list of them'
            )
        if not given:
            raise PydanticCustomError(
                "bus_secret", "the list is empty: give at least one secret, or remove the key"
            )
        for index, one in enumerate(given):
            problem = secret_problem(one)
            if problem is not None:
                where = f"secret {index + 1} of {len(given)}: " if len(given) > 1 else ""
                raise PydanticCustomError("bus_secret", where + problem)
        return tuple(given)


def bus_secrets(config: RunConfig, environ: Mapping[str, str] | None = None) -> list[SecretStr]:
    """The secrets a network bus signs and verifies with (its ``secret=`` argument): the
    configuration's ``bus_secret``, else the ``FRAMEWORK_BUS_SECRET`` environment
    variable; empty when neither is set (messages are then not signed).

    Raises:
        ConfigError: ``FRAMEWORK_BUS_SECRET`` is set but empty or too short.
    """
    if config.bus_secret is not None:
        return list(config.bus_secret)
    value = (os.environ if environ is None else environ).get(BUS_SECRET_VARIABLE)
    if value is None:
        return []
    from framework.bus.network.signing import secret_problem

    problem = secret_problem(value)
    if problem is not None:
        raise ConfigError("environment", BUS_SECRET_VARIABLE, problem)
    return [SecretStr(value)]


def find_config(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The configuration in ``directory``: ``framework.toml``, else ``[tool.framework]`` in
    ``pyproject.toml``; None when neither exists."""
    candidate = directory / CONFIG_FILE
    if candidate.is_file():
        return candidate, _read_toml(candidate)
    pyproject = directory / PYPROJECT
    if pyproject.is_file():
        table = _tool_table(pyproject, required=False)
        if table is not None:
            return pyproject, table
    return None


def _tool_table(pyproject: Path, *, required: bool) -> dict[str, Any] | None:
    """``[tool.framework]`` of a pyproject.toml (None when absent and not required)."""
    tool = _read_toml(pyproject).get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(str(pyproject), "tool", "must be a table")
    table = tool.get("framework")
    if table is None:
        if required:
            raise ConfigError(
                str(pyproject), "tool.framework", "no such table: add [tool.framework] to it"
            )
        return None
    if not isinstance(table, dict):
        raise ConfigError(str(pyproject), "tool.framework", "must be a table")
    return table


def load_config(path: Path | None = None, directory: Path | None = None) -> tuple[RunConfig, str]:
    """Read and validate the run configuration; returns it and where it came from.

    Args:
        path: ``--config FILE`` (a ``pyproject.toml`` is read at ``[tool.framework]``).
        directory: where to look when no path is given (default: the current directory).

    Raises:
        ConfigError: the file is missing or not TOML, or a value is invalid.
    """
    if path is not None:
        if not path.is_file():
            raise ConfigError(str(path), "", "no such file (given with --config)")
        if path.name == PYPROJECT:
            data = _tool_table(path, required=True) or {}
        else:
            data = _read_toml(path)
        source = str(path)
    else:
        found = find_config(directory or Path.cwd())
        if found is None:
            return RunConfig(), NO_FILE
        found_path, data = found
        source = str(found_path)
    return parse_config(data, source), source


def parse_config(data: dict[str, Any], source: str) -> RunConfig:
    """Validate a configuration table (after resolving ``{ env = "NAME" }`` values)."""
    resolved = resolve_env(data, source, "")
    try:
        return RunConfig.model_validate(resolved)
    except ValidationError as exc:
        raise validation_error(exc, source, "") from None


def validation_error(exc: ValidationError, source: str, prefix: str) -> ConfigError:
    """A ``ConfigError`` listing every problem pydantic found, each with its dotted key.

    A ``ValueError`` a validator raised is its own message, without pydantic's
    "Value error, " before it.
    """
    problems = exc.errors(include_url=False, include_input=False)
    # A misspelled key also makes the right one "missing": report the unknown key first.
    problems.sort(key=lambda p: p["type"] != "extra_forbidden")
    found: list[tuple[str, str]] = []
    for problem in problems:
        parts = [*(prefix.split(".") if prefix else []), *problem["loc"]]
        key = ".".join(str(part) for part in parts)
        reason = problem["msg"]
        if problem["type"] == "extra_forbidden":
            where = (
                "the worker's settings (its config_model)"
                if prefix.startswith("workers.")
                else f"{CONFIG_KEYS_URL} lists the keys"
            )
            reason = f"unknown key (check the spelling; {where})"
        elif problem["type"] == "value_error":
            reason = reason.removeprefix("Value error, ")
        found.append((key, reason))
    (key, reason), *more = found
    return ConfigError(source, key, reason, more)


def resolve_env(value: Any, source: str, key: str) -> Any:
    """Replace every ``{ env = "NAME" }`` table with the variable's value."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            name = value["env"]
            if name not in os.environ:
                raise ConfigError(
                    source, key, f"environment variable {name} is not set (export it first)"
                )
            return os.environ[name]
        return {k: resolve_env(v, source, f"{key}.{k}" if key else k) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, source, f"{key}.{i}") for i, v in enumerate(value)]
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            str(path), "", "not UTF-8 text (TOML files are UTF-8; save it as UTF-8)"
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot be read: {exc.strerror}") from None
