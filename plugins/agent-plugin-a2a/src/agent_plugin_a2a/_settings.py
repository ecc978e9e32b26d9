"""``[plugins.a2a]``: what the agent card says about this runner, how many finished tasks
are kept, and the remote A2A agents that become workers (``[plugins.a2a.remote.NAME]``)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from framework.config import ConfigError, validation_error

CONFIG_KEY = "plugins.a2a"
WELL_KNOWN = "/.well-known/agent-card.json"
_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class RemoteConfig(BaseModel):
    """One remote A2A agent, ``[plugins.a2a.remote.NAME]``: the settings of the
    ``RemoteAgent`` worker named NAME.

    Attributes:
        url: the agent's base URL; its card is read from ``url`` +
            ``/.well-known/agent-card.json`` (the URL of the card itself works too).
        token: sent as ``Authorization: Bearer TOKEN`` (write ``{ env = "NAME" }``).
        headers: more HTTP headers sent with every request, card included.
        timeout: seconds one job may take in all (reading the card, sending, waiting for
            the task's end); past that the remote task is cancelled and the job ends
            ERROR.
    """

    model_config = ConfigDict(extra="forbid")

    url: str
    token: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    timeout: float = Field(default=300.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"https?://[^/\s]+", value):
            raise ValueError(
                f"{value!r} is not an http:// or https:// URL (the remote agent's base URL, "
                "e.g. http://127.0.0.1:9999)"
            )
        if value.endswith(WELL_KNOWN):
            value = value[: -len(WELL_KNOWN)]
        return value.rstrip("/")

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in value:
            if not _HEADER.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
        return value

    def http_headers(self) -> dict[str, str]:
        """The headers to send, secrets revealed (only here, where they are used)."""
        headers = {name: secret.get_secret_value() for name, secret in self.headers.items()}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.get_secret_value()}"
        return headers


class A2ASettings(BaseModel):
    """What ``[plugins.a2a]`` may set.

    Attributes:
        name: the agent card's name (default: the runner's name).
        description: the agent card's description.
        url: the base URL the card advertises for the task endpoints (default: the one the
            client used to read the card); set it behind a reverse proxy.
        history: how many finished tasks ``GetTask`` still knows; older ones are forgotten.
        remote: remote A2A agents that become workers, by worker name.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    description: str | None = None
    url: str | None = None
    history: int = Field(default=1000, gt=0)
    remote: dict[str, RemoteConfig] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return None if value is None else value.rstrip("/")

    @classmethod
    def from_config(cls, settings: Any) -> A2ASettings:
        """Validate ``[plugins.a2a]``.

        Raises:
            ConfigError: an unknown key or a bad value, named with its key.
        """
        try:
            return cls.model_validate(settings)
        except ValidationError as exc:
            raise validation_error(exc, "the run configuration", CONFIG_KEY) from None


def config_error(key: str, reason: str) -> ConfigError:
    """A problem with one key of ``[plugins.a2a]``."""
    return ConfigError("the run configuration", f"{CONFIG_KEY}.{key}", reason)
