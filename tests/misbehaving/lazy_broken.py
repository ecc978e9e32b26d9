"""A plugin that registers workers by import path: one whose module fails to import, one
whose module does not exist."""

from typing import Any

from framework import hookimpl


@hookimpl
def register_workers(register: Any) -> None:
    register("misbehaving.lazy_broken_workers:Broken", name="broken")
    register("misbehaving.not_there:Missing", name="missing")
