"""A plugin module for the tests that registers a worker name sample_plugin holds."""

from typing import Any

from framework import hookimpl


@hookimpl
def register_workers(register: Any) -> None:
    from sample_plugin import Counter

    register(Counter, name="counter")
