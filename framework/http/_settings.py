"""``[http]`` in the run configuration, and the address it names.

The defaults serve on ``127.0.0.1:8765``; ``--http HOST:PORT`` and ``--no-http`` override
the file. A token comes from ``[http] token`` or, when the file sets none, the environment
variable ``FRAMEWORK_HTTP_TOKEN``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

DEFAULT_LISTEN = "127.0.0.1:8765"
MIN_TOKEN = 16
"""Shortest token accepted, in characters."""
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")
_ORIGIN = re.compile(r"https?://[^/\s?#]+")
TOKEN_ENV = "FRAMEWORK_HTTP_TOKEN"
URL_ENV = "FRAMEWORK_URL"


class HttpConfig(BaseModel):
    """``[http]``: the HTTP API and dashboard served by ``framework run``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    enabled: bool = True
    """Serve HTTP at all (``--no-http`` sets it false)."""
    listen: str | None = None
    """``HOST:PORT`` to listen on (default ``127.0.0.1:8765``)."""
    token: SecretStr | None = None
    """Bearer token every path but ``/v1/health`` needs (else ``FRAMEWORK_HTTP_TOKEN``)."""
    max_body: int = Field(default=1024 * 1024, gt=0)
    """Largest request body in bytes; a larger one is answered 413."""
    history: int = Field(default=1000, gt=0)
    """How many finished jobs submitted over HTTP ``GET /v1/jobs/{job_id}`` still knows."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins allowed to call the API from a browser (CORS is off when empty)."""

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = token_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin[:100]!r} is not an origin: write scheme://host[:port] with no "
                    "path or trailing slash, as http://localhost:3000 (no wildcard)"
                )
        return value


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be the HTTP API's token, or None. The message never shows it."""
    if not token.strip():
        return "the HTTP token is empty; set a non-empty token or none at all"
    if not _TOKEN_CHARS.fullmatch(token):
        return (
            "the HTTP token may hold only visible ASCII characters (no spaces or control "
            "characters): it travels in an HTTP header"
        )
    if len(token) < MIN_TOKEN:
        return (
            f"the HTTP token is shorter than {MIN_TOKEN} characters; make one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe())'"
        )
    return None


class ListenError(ValueError):
    """``HOST:PORT`` is not an address this runner can listen on; the message says why."""


@dataclass(frozen=True)
class HttpSettings:
    """What the HTTP service needs, resolved from the file, the command line and the
    environment."""

    host: str
    port: int
    token: str | None
    max_body: int
    history: int
    cors_origins: tuple[str, ...]
    explicit: bool
    """Whether the address was asked for (``--http`` or ``[http] listen``): a port in use is
    then an error; on the default address it is a warning and the runner serves without
    HTTP."""

    @property
    def url(self) -> str:
        """The base URL clients use (a wildcard address is shown as loopback)."""
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        """Whether only this machine can connect."""
        return is_loopback(self.host)


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8765`` for IPv6) into host and port."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ListenError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8765)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenError(f"{value!r}: write an IPv6 address in brackets, as [::1]:8765")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ListenError(f"{value!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(config: HttpConfig, listen_option: str | None) -> HttpSettings:
    """Combine ``[http]`` with ``--http`` and ``FRAMEWORK_HTTP_TOKEN``.

    Raises:
        ListenError: the address is malformed, or not loopback while no token is set.
    """
    listen = listen_option or config.listen
    host, port = parse_listen(listen or DEFAULT_LISTEN)
    token = config.token.get_secret_value() if config.token is not None else None
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
        problem = None if token is None else token_problem(token)
        if problem is not None:
            raise ListenError(f"{TOKEN_ENV}: {problem}")
    settings = HttpSettings(
        host=host,
        port=port,
        token=token,
        max_body=config.max_body,
        history=config.history,
        cors_origins=tuple(config.cors_origins),
        explicit=listen is not None,
    )
    if not settings.loopback and token is None:
        raise ListenError(
            f"listening on {host!r} (not loopback) without a token would let anyone on the "
            f"network run jobs; set [http] token or {TOKEN_ENV}, or listen on 127.0.0.1"
        )
    return settings
