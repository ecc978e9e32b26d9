"""A plugin whose hookimpl name is misspelled: ``register_worker`` for ``register_workers``."""

from __future__ import annotations

from typing import Any

from framework import hookimpl


@hookimpl
def register_worker(register: Any) -> None:  # the hook is register_workers
    from framework import BaseWorker

    class Misspelled(BaseWorker):
        pass

    register(Misspelled, name="misspelled")
