"""A plugin module for the HTTP command-line tests (``-p http_plugin``): the ``tools``
worker of ``http_server``."""

from __future__ import annotations

from typing import Any

from http_server import Tools

from framework import hookimpl


@hookimpl
def register_workers(register: Any) -> None:
    register(Tools, name="tools")
