"""agent-plugin-otel: OpenTelemetry traces and metrics of jobs, tool calls and model calls.

This module is the plugin: the entry point ``otel = "agent_plugin_otel"`` names it, and the
``framework`` command imports it for every command, ``framework --help`` included. So it
holds one hookimpl and imports nothing heavy: ``configure_runner`` builds the tracer and
meter providers from the standard ``OTEL_*`` environment variables and adds an
``OtelPlugin`` to the runner, unless ``OTEL_SDK_DISABLED=true``, in which case it adds
nothing and the runner runs exactly as without the plugin.

In code, add ``OtelPlugin()`` yourself: ``WorkerRunner(plugins=[OtelPlugin()])``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from framework import hookimpl  # cheap: imports pluggy, not the runtime

if TYPE_CHECKING:
    from agent_plugin_otel.plugin import OtelPlugin

__version__ = "0.1.0"

__all__ = ["OtelPlugin", "configure_runner", "sdk_disabled"]


def __getattr__(name: str) -> Any:
    if name == "OtelPlugin":  # imported on first use: it imports the OpenTelemetry SDK
        from agent_plugin_otel.plugin import OtelPlugin

        return OtelPlugin
    raise AttributeError(f"module 'agent_plugin_otel' has no attribute {name!r}")


def sdk_disabled() -> bool:
    """Whether ``OTEL_SDK_DISABLED`` switches the SDK off (``true``, in any case)."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


@hookimpl
def configure_runner(runner: Any, config: Any) -> None:
    """Trace and measure the runner ``framework run`` built, configured by ``OTEL_*`` and
    ``[plugins.otel]``; nothing at all when ``OTEL_SDK_DISABLED=true``."""
    if sdk_disabled():
        return
    from agent_plugin_otel._settings import OtelSettings
    from agent_plugin_otel.plugin import OtelPlugin

    settings = OtelSettings.from_config(config.plugins.get("otel", {}))
    runner.add_plugin(OtelPlugin(settings=settings, runner=runner), name="otel-tracing")
