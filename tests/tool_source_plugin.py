"""A plugin module registering the tool source ``toy`` (loaded with ``-p tool_source_plugin``
or registered directly): ``toy:NAME`` offers one tool, ``NAME_hello``, answering
``{"hello": who}``; ``toy:down`` cannot list its tools; ``check`` refuses ``toy:nobody``."""

from __future__ import annotations

from typing import Any

from framework import hookimpl
from framework.config import RunConfig
from framework.llm import LLMWorker, ToolSpec
from framework.registrars import ToolSourceRegistrar


class ToySource:
    """A ``ToolSource``: what ``tools`` was asked for is kept in ``asked``."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def check(self, name: str, config: RunConfig) -> None:
        if name == "nobody":
            raise ValueError("there is nobody to say hello to; name someone")

    async def tools(self, name: str, worker: LLMWorker) -> list[ToolSpec]:
        self.asked.append((name, worker.name))
        if name == "down":
            raise ConnectionError("the toy server is down")

        async def hello(arguments: dict[str, Any]) -> dict[str, Any]:
            if "who" not in arguments:
                raise ValueError("say who: {'who': '...'}")
            return {"hello": arguments["who"], "from": name}

        return [
            ToolSpec(
                name=f"{name}_hello",
                description=f"Say hello from {name}.",
                parameters={"type": "object", "properties": {"who": {"type": "string"}}},
                call=hello,
            )
        ]


source = ToySource()


@hookimpl
def register_tool_sources(register: ToolSourceRegistrar) -> None:
    register("toy", source)
