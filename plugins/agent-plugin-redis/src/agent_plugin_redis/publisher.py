"""The ``redis`` event publisher: each ``EventModel`` as JSON to a Redis Stream or channel.

Configured in the run configuration::

    [plugins.redis.publisher]
    to = "stream"              # or "channel" (pub/sub: only live subscribers see it)
    key = "framework:events"   # the stream's key, or the channel's name
    maxlen = 10000             # stream only: keep about this many events (XADD MAXLEN ~)
    url = "redis://127.0.0.1:6379/0"   # default: the bus URL when it is redis(s)://

It is an ordinary ``publish_event`` impl, so it has its own bounded buffer: when Redis is
slow or gone it loses its own events (counted in ``runner.event_stats()``), never a job's
time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent_plugin_redis._settings import RedisBusSettings, SettingsError, connect
from framework import hookimpl
from framework.config import ConfigError
from framework.urls import redact_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from framework.events import EventModel

logger = logging.getLogger("agent_plugin_redis.publisher")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
CONFIG_KEY = "plugins.redis.publisher"


class PublisherConfig(BaseModel):
    """``[plugins.redis.publisher]``."""

    model_config = ConfigDict(extra="forbid")

    to: Literal["stream", "channel"] = "stream"
    key: str = Field(default="framework:events", min_length=1)
    maxlen: int = Field(default=10_000, ge=1)
    url: str | None = None


class RedisEventPublisher:
    """Sends every event to one Redis Stream (``XADD key MAXLEN ~ maxlen``, field
    ``event``) or one pub/sub channel (``PUBLISH key``), as ``EventModel`` JSON."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        to: Literal["stream", "channel"] = "stream",
        key: str = "framework:events",
        maxlen: int = 10_000,
    ) -> None:
        self.url = url
        self.to = to
        self.key = key
        self.maxlen = maxlen
        self._client: aioredis.Redis | None = None
        self._warned = False

    @classmethod
    def from_config(cls, settings: Any, *, default_url: str) -> RedisEventPublisher:
        """Build from ``[plugins.redis.publisher]``; the bus URL is the default when it is
        a Redis one.

        Raises:
            ConfigError: an unknown key or a bad value, named.
        """
        try:
            config = PublisherConfig.model_validate(settings)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            key = f"{CONFIG_KEY}.{where}" if where else CONFIG_KEY
            raise ConfigError("the run configuration", key, first["msg"]) from None
        url = config.url
        if url is None:
            url = default_url if default_url.startswith(("redis://", "rediss://")) else DEFAULT_URL
        try:
            # The bus's own parameters (namespace, heartbeat...) are not redis-py's; the
            # password may come from FRAMEWORK_REDIS_PASSWORD, as for the bus.
            url = RedisBusSettings.from_url(url).url
        except SettingsError as exc:
            raise ConfigError("the run configuration", f"{CONFIG_KEY}.url", str(exc)) from None
        return cls(url, to=config.to, key=config.key, maxlen=config.maxlen)

    @hookimpl
    async def publish_event(self, event: EventModel) -> None:
        """Send one event; closes the connection after the runner's END event."""
        if self._client is None:
            self._client = connect(self.url)
        data = event.model_dump_json()
        try:
            if self.to == "stream":
                await self._client.xadd(
                    self.key, {"event": data}, maxlen=self.maxlen, approximate=True
                )
            else:
                await self._client.publish(self.key, data)
        except Exception as exc:
            if not self._warned:  # once: the publisher's stats count every failure
                self._warned = True
                logger.warning(
                    "redis publisher: cannot send events to %s (%s); they are lost until it "
                    "is back",
                    redact_url(self.url),
                    exc,
                )
            raise
        finally:
            if event.event == "graph_execution" and event.event_type == "end":
                client, self._client = self._client, None
                if client is not None:
                    await client.aclose()
