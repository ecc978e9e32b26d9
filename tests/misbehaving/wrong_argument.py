"""A hookimpl whose argument is not the hook's (``registrar`` for ``register``)."""

from typing import Any

from framework import hookimpl


@hookimpl
def register_workers(registrar: Any) -> None:
    pass
