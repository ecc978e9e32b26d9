"""An async register_workers: refused (it would never run)."""

from typing import Any

from framework import hookimpl


@hookimpl
async def register_workers(register: Any) -> None:
    pass
