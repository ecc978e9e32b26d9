"""A plugin whose ``configure_runner`` refuses its settings (``[plugins.strict] level``)
unless they are right, as a plugin validating its table of the run configuration does."""

from __future__ import annotations

from typing import Any

from framework import hookimpl
from framework.config import ConfigError, RunConfig

LEVELS = ("low", "high")


@hookimpl
async def configure_runner(runner: Any, config: RunConfig) -> None:
    level = config.plugins.get("strict", {}).get("level")
    if level not in LEVELS:
        raise ConfigError(
            "the run configuration",
            "plugins.strict.level",
            f"must be 'low' or 'high', not {level!r}",
        )
