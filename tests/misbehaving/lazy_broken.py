"""A plugin that registers a worker by import path, whose module fails to import."""

from typing import Any

from framework import hookimpl


@hookimpl
def register_workers(register: Any) -> None:
    register("misbehaving.lazy_broken_workers:Broken", name="broken")
