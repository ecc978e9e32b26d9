"""The live status line of ``framework run --job`` on a terminal, drawn with ``rich``:
worker, elapsed time, last update and its progress. Imported only when stderr is a
terminal, so that ``rich`` costs nothing to scripts and pipes."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO, TypeGuard

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

LAST_UPDATE_CHARS = 60
"""How much of the last update the status line shows."""


def progress_of(update: dict[str, Any]) -> tuple[float, float] | None:
    """``(completed, total)`` from an update: ``progress`` (a fraction from 0 to 1), or
    ``done`` and ``of`` (numbers, ``of`` > 0); None when it carries neither."""
    progress = update.get("progress")
    if _number(progress) and 0 <= progress <= 1:
        return float(progress), 1.0
    done, of = update.get("done"), update.get("of")
    if _number(done) and _number(of) and of > 0:
        return float(min(max(done, 0), of)), float(of)
    return None


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


class LiveStatus:
    """One status line at the bottom of the terminal while a job runs; lines printed with
    ``print`` appear above it. ``stop`` removes it."""

    def __init__(self, worker: str, stream: TextIO) -> None:
        self.worker = worker
        self.console = Console(file=stream, stderr=True, highlight=False)
        self.started = time.monotonic()
        self.last: dict[str, Any] | None = None
        self.spinner = Spinner("dots", style="cyan")
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            transient=True,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def start(self) -> None:
        self._live.start()

    def stop(self) -> None:
        self._live.stop()

    def update(self, data: dict[str, Any]) -> None:
        self.last = data

    def print(self, text: str) -> None:
        self.console.print(Text(text, style="dim"))

    def _render(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        row = Table.grid(padding=(0, 1))
        cells: list[RenderableType] = [
            self.spinner,
            Text(self.worker, style="bold cyan"),
            Text(f"{elapsed:.1f}s", style="yellow"),
        ]
        if self.last is not None:
            progress = progress_of(self.last)
            if progress is not None:
                completed, total = progress
                cells.append(ProgressBar(total=total, completed=completed, width=20))
                shown = f"{completed:g}/{total:g}" if total != 1.0 else f"{completed:.0%}"
                cells.append(Text(shown, style="green"))
            text = json.dumps(self.last, default=str)
            if len(text) > LAST_UPDATE_CHARS:
                text = text[: LAST_UPDATE_CHARS - 1] + "…"
            cells.append(Text(text, style="dim"))
        else:
            cells.append(Text("waiting for the first update", style="dim"))
        for _ in cells:
            row.add_column(no_wrap=True)
        row.add_row(*cells)
        return Group(row)


def error_line(message: str, stream: TextIO, *, warning: bool = False) -> None:
    """A message in red (or yellow for a ``warning``) on a terminal."""
    Console(file=stream, stderr=True, highlight=False).print(
        Text(message, style="yellow" if warning else "bold red")
    )
