"""agent-plugin-a2a: A2A both ways for agent-plugin-framework.

- **Server.** The runner's workers as one A2A agent: the agent card at
  ``/.well-known/agent-card.json`` (every described job is a skill) and the task endpoints
  under ``/a2a`` (JSON-RPC and HTTP+JSON) in the HTTP API that ``framework run`` serves. A
  task is a job; its updates and stream come back as task events.
- **Client.** ``[plugins.a2a.remote.NAME] url = "..."`` makes a remote A2A agent a worker
  named NAME (``RemoteAgent``).

This module is the plugin: the entry point ``a2a = "agent_plugin_a2a"`` names it, and the
``framework`` command imports it for every command, ``framework --help`` included. Its
hookimpls are those of one ``A2APlugin``; nothing of the a2a-sdk is imported until a
request comes or a remote is configured. In code, pass an ``A2APlugin()`` of your own to
``WorkerRunner(plugins=[...])``, and add ``RemoteAgent`` workers yourself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_plugin_a2a._plugin import A2APlugin

if TYPE_CHECKING:
    from agent_plugin_a2a._remote import RemoteAgent, RemoteAgentError

__version__ = "0.1.0"

__all__ = ["A2APlugin", "RemoteAgent", "RemoteAgentError"]

_plugin = A2APlugin()
"""The instance whose hookimpls this module offers to the ``framework`` command."""

register_routes = _plugin.register_routes
configure_runner = _plugin.configure_runner
runner_service = _plugin.runner_service


def __getattr__(name: str) -> Any:
    if name in ("RemoteAgent", "RemoteAgentError"):  # imported on first use: the a2a-sdk
        from agent_plugin_a2a import _remote

        return getattr(_remote, name)
    raise AttributeError(f"module 'agent_plugin_a2a' has no attribute {name!r}")
