"""Registers a worker whose constructor raises."""

from typing import Any

from framework import BaseWorker, hookimpl


class Explodes(BaseWorker):
    def __init__(self, name: str) -> None:
        raise RuntimeError("init boom")


@hookimpl
def register_workers(register: Any) -> None:
    register(Explodes, name="explodes")
