"""``[plugins.mcp]``: the MCP servers whose tools LLM workers may use.

```toml
[plugins.mcp.servers.time]            # stdio: a command the plugin starts
command = ["uvx", "mcp-server-time"]
env = { TZ = "Europe/Paris" }         # added to a minimal environment (PATH, HOME...)
cwd = "/srv"

[plugins.mcp.servers.docs]            # streamable HTTP
url = "https://example.com/mcp"
headers = { Authorization = { env = "DOCS_TOKEN" } }
```

A bad key or value is a ``ConfigError`` naming ``plugins.mcp...``, before anything starts.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from framework.config import ConfigError, validation_error

DOCS_URL = (
    "https://github.com/agent-plugin-framework/agent-plugin-framework/blob/main/docs/mcp.md"
    "#using-mcp-servers-from-llm-workers"
)
"""Where the keys of ``[plugins.mcp]`` are listed (for unknown keys)."""


def _bad(reason: str) -> PydanticCustomError:
    """A validation error whose message is ``reason`` as it is (a plain ``ValueError`` would
    show as ``Value error, ...``)."""
    return PydanticCustomError("mcp_settings", reason)


SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ServerSettings(BaseModel):
    """One MCP server: ``command`` (stdio) or ``url`` (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: list[str] | None = Field(default=None, min_length=1)
    """The program and its arguments, started as a child process speaking MCP on stdio."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for the command, on top of PATH, HOME, USER, SHELL..."""
    cwd: Path | None = None
    """The command's working directory."""
    url: str | None = None
    """The server's streamable HTTP endpoint (``http://`` or ``https://``)."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """HTTP headers sent with every request (``Authorization``...); never printed."""
    startup_timeout: float = Field(default=10.0, gt=0)
    """Seconds the server gets to start and answer the handshake and ``tools/list``."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds a tool call may take before it fails."""

    @field_validator("command", mode="before")
    @classmethod
    def _command_is_a_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            words = shlex.split(value) or ["program"]
            raise _bad(
                "command is a list of the program and its arguments: command = " + json.dumps(words)
            )
        return value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise _bad(f"url must be http://HOST/... or https://..., got {value!r}")
        return value

    @model_validator(mode="after")
    def _one_transport(self) -> Self:
        if (self.command is None) == (self.url is None):
            raise _bad(
                'give either command = ["program", "arg"...] (stdio) or url = "http://..." '
                "(streamable HTTP)"
            )
        if self.url is not None:
            if self.env or self.cwd is not None:
                raise _bad("env and cwd go with command, not with url")
        elif self.headers:
            raise _bad("headers go with url, not with command")
        elif self.command is not None and not self.command[0]:
            raise _bad("command starts with an empty program name")
        return self

    def describe(self) -> str:
        """What the server is, for messages (never a header's value)."""
        if self.command is not None:
            shown = shlex.join(self.command)
            return "command " + (shown if len(shown) <= 120 else shown[:117] + "...")
        return f"url {self.url}"


class McpSettings(BaseModel):
    """``[plugins.mcp]``."""

    model_config = ConfigDict(extra="forbid")

    servers: dict[str, ServerSettings] = Field(default_factory=dict)
    """The MCP servers, by the name LLM workers use (``tools = ["mcp:NAME"]``)."""

    @field_validator("servers")
    @classmethod
    def _names(cls, servers: dict[str, ServerSettings]) -> dict[str, ServerSettings]:
        for name in servers:
            if not SERVER_NAME.match(name):
                raise _bad(
                    f"the server name {name!r} must be 1-64 letters, digits, '_' or '-' "
                    "(it starts the names of its tools)"
                )
        return servers

    @classmethod
    def from_config(cls, table: Any) -> McpSettings:
        """Validate ``[plugins.mcp]``.

        Raises:
            ConfigError: what is wrong, with its key (``plugins.mcp.servers.NAME.url``).
        """
        try:
            return cls.model_validate(table)
        except ValidationError as exc:
            error = validation_error(exc, "the run configuration", "plugins.mcp")
        unknown = "unknown key (check the spelling; the keys: " + DOCS_URL + ")"
        problems = [
            (key, unknown if reason.startswith("unknown key") else reason)
            for key, reason in error.problems
        ]
        (key, reason), *more = problems
        raise ConfigError(error.file, key, reason, more)
