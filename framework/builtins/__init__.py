"""Plugins shipped inside the core. Each is registered through the same hooks as an external
plugin and can be blocked like one (``-p no:NAME``)."""
