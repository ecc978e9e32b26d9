"""Built-in plugin ``local``: the in-process bus, for ``--bus local://`` (the default)."""

from __future__ import annotations

from typing import Any

from framework.hookspecs import hookimpl


def _local_bus(url: str) -> Any:
    from framework.bus.local import LocalBus

    return LocalBus()


@hookimpl
def register_buses(register: Any) -> None:
    """Register the ``local`` scheme."""
    register("local", _local_bus)
