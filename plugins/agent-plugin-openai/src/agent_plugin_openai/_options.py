"""``OpenAIOptions``: every setting of the ``openai`` backend, validated when the worker starts.

The connection (server, key, Azure, headers, timeouts, proxy, retries), the protocol (``api``,
``stream``) and the request options the chat completions and Responses APIs take. A wrong
value is refused with a message naming the option and what to write instead.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

API_KEY_VARIABLE = "OPENAI_API_KEY"
"""The environment variable the key comes from when the options give none."""
AZURE_KEY_VARIABLE = "AZURE_OPENAI_API_KEY"
"""The key's variable for Azure OpenAI (``azure_endpoint`` set)."""
BASE_URL_VARIABLE = "OPENAI_BASE_URL"
"""The environment variable ``base_url`` comes from when the options give none."""
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
"""The Azure OpenAI ``api-version`` sent to a deployment (``azure_endpoint`` set, chat
completions) when none is given."""

_ENDPOINTS = ("/chat/completions", "/responses", "/completions")
"""Endpoint paths a ``base_url`` must not end with: it is the root they go under."""
_ENVIRONMENT = {
    "organization": "OPENAI_ORG_ID",
    "project": "OPENAI_PROJECT_ID",
}


def _environment(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _check_url(value: str, option: str) -> str:
    value = value.strip()
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{option} must start with http:// or https:// (got {value[:40]!r})")
    path, mark, query = value.partition("?")
    return path.rstrip("/") + mark + query


def _check_base_url(value: str) -> str:
    value = _check_url(value, "base_url")
    path, mark, query = value.partition("?")
    for endpoint in _ENDPOINTS:
        if path.endswith(endpoint):
            # A pasted endpoint URL would be answered 404, blamed on the model.
            raise ValueError(
                f"base_url is the API root, without the endpoint: write base_url = "
                f'"{path.removesuffix(endpoint) + mark + query}" (got {value[:200]!r})'
            )
    return value


class OpenAIOptions(BaseModel):
    """Settings of the ``openai`` backend (``[llm.options]``, or ``backend_options``)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # ------------------------------------------------------------------ the server
    base_url: str = Field(
        default_factory=lambda: _environment(BASE_URL_VARIABLE) or DEFAULT_BASE_URL,
        validate_default=True,
        description=(
            f"the server's API root, up to /v1, query string kept (default: ${BASE_URL_VARIABLE}"
            ", else OpenAI)"
        ),
    )
    model: str = Field(
        default="gpt-4o-mini",
        min_length=1,
        description="the model's name (for Azure: the deployment, unless azure_deployment)",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description=(
            f"the API key (default: ${API_KEY_VARIABLE}, or ${AZURE_KEY_VARIABLE} for Azure; "
            "empty: none is sent)"
        ),
    )
    api: Literal["chat", "responses"] = Field(
        default="chat",
        description="the protocol: chat completions (any compatible server) or the Responses API",
    )
    stream: bool = Field(
        default=True, description="stream the reply (false: one JSON answer per call)"
    )
    organization: str | None = Field(
        default_factory=lambda: _environment(_ENVIRONMENT["organization"]),
        description="sent as OpenAI-Organization (default: $OPENAI_ORG_ID)",
    )
    project: str | None = Field(
        default_factory=lambda: _environment(_ENVIRONMENT["project"]),
        description="sent as OpenAI-Project (default: $OPENAI_PROJECT_ID)",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="more HTTP headers for every request"
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="more keys for the request body (server-specific options); they win",
    )
    # ------------------------------------------------------------------ Azure OpenAI
    azure_endpoint: str | None = Field(
        default=None,
        description=(
            "Azure OpenAI: the resource's endpoint (https://NAME.openai.azure.com); requests "
            "go to its deployment (the Responses API: its v1 API), with the api-key header"
        ),
    )
    azure_deployment: str | None = Field(
        default=None, description="Azure OpenAI: the deployment's name (default: model)"
    )
    api_version: str | None = Field(
        default=None,
        description=(
            "sent as the api-version query parameter (Azure chat completions: default "
            f"{DEFAULT_AZURE_API_VERSION})"
        ),
    )
    # ------------------------------------------------------------------ the connection
    timeout: float = Field(
        default=120.0, gt=0, description="seconds to wait for each piece of the reply"
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, description="seconds to wait for the connection to open"
    )
    proxy: str | None = Field(
        default=None,
        description="an HTTP(S) proxy URL (default: $HTTPS_PROXY / $HTTP_PROXY / $ALL_PROXY)",
    )
    ca_bundle: str | None = Field(
        default=None,
        description="a PEM file of CA certificates to trust (a private CA, a TLS proxy)",
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        description=(
            "retries on HTTP 408/409/429/5xx and on failures before anything was streamed"
        ),
    )
    backoff: float = Field(
        default=0.5,
        ge=0,
        description="seconds before the first retry, doubling (unless the server says)",
    )
    # ------------------------------------------------------------------ the request
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="sampling temperature (default: the server's)"
    )
    top_p: float | None = Field(
        default=None, ge=0, le=1, description="nucleus sampling: the probability mass kept"
    )
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        description=(
            "the reply's token limit, sent as max_tokens (Responses API: max_output_tokens)"
        ),
    )
    max_completion_tokens: int | None = Field(
        default=None,
        ge=1,
        description="the reply's token limit, reasoning included (OpenAI's newer name)",
    )
    stop: str | list[str] | None = Field(
        default=None, description="up to 4 strings at which the model stops"
    )
    seed: int | None = Field(default=None, description="a seed for repeatable sampling")
    presence_penalty: float | None = Field(
        default=None, ge=-2, le=2, description="-2 to 2: penalise tokens already present"
    )
    frequency_penalty: float | None = Field(
        default=None, ge=-2, le=2, description="-2 to 2: penalise tokens by their frequency"
    )
    tool_choice: str | None = Field(
        default=None,
        description='"auto", "none", "required", or a tool\'s name to force that tool',
    )
    parallel_tool_calls: bool | None = Field(
        default=None, description="whether the model may call several tools in one turn"
    )
    response_format: Any = Field(
        default=None,
        description=(
            '"text", "json_object" (JSON mode), a JSON schema dict, or (in code) a pydantic '
            "model class: structured output"
        ),
    )
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = Field(
        default=None, description="how hard a reasoning model thinks"
    )
    system_role: Literal["system", "developer"] = Field(
        default="system",
        description='the role of system messages; "developer" for OpenAI\'s reasoning models',
    )

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        try:
            return _check_base_url(value)
        except ValueError as exc:
            if value.strip() == _environment(BASE_URL_VARIABLE):
                raise ValueError(f"{exc} (it came from ${BASE_URL_VARIABLE})") from None
            raise

    @field_validator("azure_endpoint")
    @classmethod
    def _check_azure_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = _check_url(value, "azure_endpoint")
        path = value.partition("?")[0]
        scheme, _, rest = path.partition("://")
        segments = rest.split("/")
        if "openai" in segments[1:]:
            # A deployment's URL pasted from the portal would get a second /openai/... path.
            root = f"{scheme}://{'/'.join(segments[: segments.index('openai', 1)])}"
            after = segments[segments.index("openai", 1) + 1 :]
            fix = f'write azure_endpoint = "{root}"'
            if len(after) >= 2 and after[0] == "deployments":
                fix += f' and azure_deployment = "{after[1]}"'
            version = parse_qs(value.partition("?")[2]).get("api-version")
            if version:
                fix += f' and api_version = "{version[0]}"'
            if after[:1] == ["v1"]:
                fix += f' (or, for chat completions on Azure\'s v1 API, base_url = "{path}")'
            raise ValueError(
                "azure_endpoint is the resource's address, without /openai/...: "
                f"{fix} (got {value[:200]!r})"
            )
        return value

    @field_validator("proxy")
    @classmethod
    def _check_proxy(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://", "socks5://", "socks5h://")):
            raise ValueError(f"proxy must be a URL such as http://HOST:PORT (got {value[:40]!r})")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _check_ca_bundle(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isfile(value):
            raise ValueError(f"ca_bundle {value!r} is not a file: give a PEM file's path")
        return value

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > 4:
            raise ValueError(f"stop takes at most 4 strings, got {len(stops)}")
        if any(not s for s in stops):
            raise ValueError("stop strings must not be empty")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError('tool_choice must be "auto", "none", "required" or a tool name')
        return value

    @field_validator("response_format")
    @classmethod
    def _check_response_format(cls, value: Any) -> Any:
        if value is None or value in ("text", "json_object"):
            return value
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value
        if isinstance(value, dict) and value:
            return value
        raise ValueError(
            'response_format must be "text", "json_object", a JSON schema (a dict) or a '
            f"pydantic model class, got {value!r:.60}"
        )

    @field_validator("api_key")
    @classmethod
    def _strip_key(cls, value: SecretStr | None) -> SecretStr | None:
        # A key pasted from a file often ends with a newline.
        return None if value is None else SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _check_together(self) -> OpenAIOptions:
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError(
                "give max_tokens or max_completion_tokens, not both (they are the same limit)"
            )
        if self.azure_endpoint and "base_url" in self.model_fields_set:
            raise ValueError(
                "give base_url or azure_endpoint, not both: azure_endpoint builds the URL (for "
                "Azure's v1 API, give base_url alone: https://NAME.openai.azure.com/openai/v1)"
            )
        if self.azure_deployment and not self.azure_endpoint:
            raise ValueError(
                "azure_deployment is for Azure OpenAI: set azure_endpoint too (elsewhere the "
                "model option names the model)"
            )
        if self.api == "responses":
            chat_only = [
                name
                for name in ("stop", "seed", "presence_penalty", "frequency_penalty")
                if getattr(self, name) is not None
            ]
            if chat_only:
                raise ValueError(
                    f"{', '.join(chat_only)}: not options of the Responses API; use "
                    'api = "chat", or send them in extra_body if your server takes them'
                )
        # Filled in through __dict__: model_fields_set keeps saying what the user gave.
        if self.api_key is None:
            self.__dict__["api_key"] = SecretStr(os.environ.get(self.variable, "").strip())
        if self.azure_endpoint and self.api == "chat" and self.api_version is None:
            # Azure's Responses API is its v1 API, which takes no api-version.
            self.__dict__["api_version"] = DEFAULT_AZURE_API_VERSION
        return self

    # ------------------------------------------------------------------ derived

    @property
    def key(self) -> str:
        """The key to send ("" for none)."""
        return "" if self.api_key is None else self.api_key.get_secret_value()

    @property
    def variable(self) -> str:
        """The environment variable the key comes from when the options give none."""
        return AZURE_KEY_VARIABLE if self.azure_endpoint else API_KEY_VARIABLE

    @property
    def key_source(self) -> str:
        """Where the key comes from, for messages: the option, or its variable."""
        return "[llm] options api_key" if "api_key" in self.model_fields_set else self.variable

    @property
    def root(self) -> str:
        """The API root requests are made under, without query. Azure: the deployment's for
        chat completions; its v1 API for the Responses API, which has no deployment URLs."""
        if self.azure_endpoint:
            endpoint = self.azure_endpoint.partition("?")[0]
            if self.api == "responses":
                return f"{endpoint}/openai/v1"
            return f"{endpoint}/openai/deployments/{self.deployment}"
        return self.base_url.partition("?")[0]

    @property
    def deployment(self) -> str:
        """Azure OpenAI: the deployment's name (``azure_deployment``, else ``model``)."""
        return self.azure_deployment or self.model

    @property
    def body_model(self) -> str:
        """The ``model`` of the request body: Azure's Responses API names the deployment
        there."""
        if self.azure_endpoint and self.api == "responses":
            return self.deployment
        return self.model

    def url(self, path: str) -> str:
        """The URL of an endpoint (``/chat/completions``): under ``root``, with the query
        string of ``base_url`` (or ``azure_endpoint``) and ``api-version``."""
        source = self.azure_endpoint or self.base_url
        query = [part for part in source.partition("?")[2].split("&") if part]
        if self.api_version and not any(q.startswith("api-version=") for q in query):
            query.append(f"api-version={quote(self.api_version, safe='')}")
        return self.root + path + ("?" + "&".join(query) if query else "")


__all__ = [
    "API_KEY_VARIABLE",
    "AZURE_KEY_VARIABLE",
    "BASE_URL_VARIABLE",
    "OpenAIOptions",
]
