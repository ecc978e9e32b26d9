"""agent-plugin-echo: example workers for agent-plugin-framework, and the template to copy.

This module is the plugin: the entry point ``echo = "agent_plugin_echo"`` names it, and the
``framework`` command imports it for every command, ``framework --help`` included. So it
holds the hookimpls and nothing heavy; the workers live in ``agent_plugin_echo.workers`` and
are registered by import path, so that module is imported only when a runner starts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from framework import hookimpl  # cheap: imports pluggy, not the runtime

if TYPE_CHECKING:
    from collections.abc import Callable

__version__ = "0.1.0"


@hookimpl
def register_workers(register: Callable[..., None]) -> None:
    """Register the workers ``echo``, ``reverse`` and ``count``.

    ``framework run`` (without a configuration naming workers) starts each one under the
    name given here; ``framework plugins`` lists them under this plugin.
    """
    # By import path ("module:Class"), with a name: the workers module is imported only
    # when a runner needs the class, so `framework plugins` and `--help` stay fast.
    # register(Echo, name="echo") works too, after importing the class.
    register("agent_plugin_echo.workers:Echo", name="echo")
    register("agent_plugin_echo.workers:Reverse", name="reverse")
    register("agent_plugin_echo.workers:Count", name="count")
