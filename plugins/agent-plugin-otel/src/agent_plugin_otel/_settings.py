"""``[plugins.otel]``: the settings that are ours. Everything the OpenTelemetry SDK knows
(endpoint, protocol, headers, service name, sampler, batching) comes from its own ``OTEL_*``
environment variables instead."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from framework.config import ConfigError

CONFIG_KEY = "plugins.otel"


class OtelSettings(BaseModel):
    """What ``[plugins.otel]`` may set.

    Attributes:
        capture_content: record message content (model input and output messages, tool
            arguments and results, update and stream-chunk data) on spans. Off by default,
            as the GenAI conventions ask: content may hold personal data and secrets.
        stream_events: how many updates, and how many stream chunks, of one job become
            span events one by one; past that only those whose number is a power of two
            do (so a 100,000-chunk stream makes about 27 events, not 100,000), and the
            span's ``framework.job.updates`` / ``framework.job.stream_chunks`` give the
            totals. 0 records none (the totals are still counted).
        content_limit: characters of captured content kept per attribute or event.
        metrics: record the job and token metrics.
        flush_timeout: seconds the runner's end waits for the exporters to send what is
            still queued, and the process's exit for their last export (a collector that
            is down or slow never holds either up longer).
    """

    model_config = ConfigDict(extra="forbid")

    capture_content: bool = False
    stream_events: int = Field(default=10, ge=0)
    content_limit: int = Field(default=4096, ge=0)
    metrics: bool = True
    flush_timeout: float = Field(default=2.0, ge=0)

    @classmethod
    def from_config(cls, settings: Any) -> OtelSettings:
        """Validate ``[plugins.otel]``.

        Raises:
            ConfigError: an unknown key or a bad value, named with its key.
        """
        try:
            return cls.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            key = f"{CONFIG_KEY}.{where}" if where else CONFIG_KEY
            raise ConfigError("the run configuration", key, first["msg"]) from None
