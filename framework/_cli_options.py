"""The ``--config`` and ``--bus`` options shared by every command that starts a runner or
reaches its bus (``framework run``, ``config check``, ``jobs``, and plugins' commands
through ``framework.cli.runner_options``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Configuration file (default: ./framework.toml, or [tool.framework] in ./pyproject.toml).",
)
bus_option = click.option(
    "--bus",
    "bus_url",
    metavar="URL",
    help="Bus URL, overriding the configuration's (default: local://).",
)


def runner_options(func: F) -> F:
    """``--config FILE`` (``config_path``) and ``--bus URL`` (``bus_url``), the options
    ``framework run`` reads its runner's configuration from."""
    return config_option(bus_option(func))
