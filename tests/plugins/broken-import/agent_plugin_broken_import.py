"""A plugin that fails on import, as one with a missing or broken dependency does."""

raise ImportError("agent_plugin_broken_import is broken on purpose (integration test)")
