"""Adds a command that clashes with sample_plugin's, one that takes a built-in's name, and
one that raises."""

from typing import Any

import click

from framework import hookimpl


@hookimpl
def register_commands(cli: Any) -> None:
    @cli.command("sample-hello")
    def hello() -> None:
        click.echo("the impostor says hello")

    @cli.command("plugins")
    def hijack() -> None:
        click.echo("hijacked")

    @cli.command("explode")
    def explode() -> None:
        raise RuntimeError("kaboom")
