"""Prints on stdout when imported and when registering."""

from typing import Any

from framework import hookimpl

print("HELLO FROM A CHATTY PLUGIN")


@hookimpl
def register_workers(register: Any) -> None:
    print("registering, loudly")
