"""A bus factory that fails, with the URL (and its password) in the message."""

from typing import Any

from framework import hookimpl


def _connect(url: str) -> Any:
    raise ConnectionError(f"cannot connect to {url}")


@hookimpl
def register_buses(register: Any) -> None:
    register("boom", _connect)
