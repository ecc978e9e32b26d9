"""agent-plugin-redis: the ``redis://`` bus (runners on many machines) and the ``redis``
event publisher.

This module is the plugin: the entry point ``redis = "agent_plugin_redis"`` names it, and
the ``framework`` command imports it for every command, ``framework --help`` included. So
it holds the hookimpls only; redis-py is imported when a bus or a publisher is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from framework import hookimpl  # cheap: imports pluggy, not the runtime

if TYPE_CHECKING:
    from collections.abc import Callable

__version__ = "0.1.0"


def make_bus(url: str, *, secret: Any = None) -> Any:
    """The bus for a ``redis://`` or ``rediss://`` URL (redis-py imported here), signing
    its messages with ``secret`` when one is given (``framework run`` passes the
    configuration's ``bus_secret``)."""
    from agent_plugin_redis.bus import RedisBus

    return RedisBus(url, secret=secret)


@hookimpl
def register_buses(register: Callable[..., None]) -> None:
    """``--bus redis://host:6379/0`` and ``--bus rediss://...`` (TLS)."""
    register("redis", make_bus)
    register("rediss", make_bus)


@hookimpl
def configure_runner(runner: Any, config: Any) -> None:
    """Add the ``redis`` event publisher when ``[plugins.redis.publisher]`` is configured."""
    settings = config.plugins.get("redis", {}).get("publisher")
    if settings is None:
        return
    from agent_plugin_redis.publisher import RedisEventPublisher

    publisher = RedisEventPublisher.from_config(settings, default_url=config.bus)
    runner.add_plugin(publisher, name="redis-publisher")
