"""A plugin module for the dashboard's browser tests (``-p dashboard_extremes_plugin``):
what a real runner may show the page at its worst. A worker that floods it (a long fast
stream, a response of megabytes), one that never starts, and one whose name is 5,000
characters long."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from framework import BaseWorker, Job, hookimpl, job


class Flood(BaseWorker):
    """Sends more than a page can show at once."""

    worker_name = "flood"

    @job(name="stream")
    async def stream(self, job: Job) -> AsyncIterator[str]:
        """Stream ``chunks`` short chunks (default 20,000) as fast as it can, each also
        sent as an update every ``every`` chunks (default: none)."""
        chunks = int(job.payload.get("chunks", 20_000))
        every = int(job.payload.get("every", 0))
        for i in range(chunks):
            if every and i % every == 0:
                await job.update({"chunk": i})
            yield f"chunk-{i} "

    @job(name="big")
    async def big(self, job: Job) -> dict[str, Any]:
        """Answer with ``megabytes`` (default 5) of text, in lines."""
        size = int(float(job.payload.get("megabytes", 5)) * 1_000_000)
        line = "0123456789" * 7 + "\n"
        return {"text": line * (size // len(line)) + "THE END"}


class Unready(BaseWorker):
    """Never starts: its ``on_ready`` raises, as a worker whose database is down does."""

    worker_name = "unready"

    async def on_ready(self) -> None:
        raise RuntimeError("cannot reach the database at db.internal:5432 (connection refused)")


LONG_NAME = "long-" + "x" * 4995
"""A 5,000-character worker name: the page must wrap or clip it, never widen."""


class Longwinded(BaseWorker):
    """A worker with a very long name and a description with backquotes."""

    worker_name = LONG_NAME

    @job(name="y" * 300)
    async def talk(self, job: Job) -> dict[str, Any]:
        """Answer with `{"said": ...}`: the `text` field of the payload, ``verbatim``, and
        `*not*` markdown; a <b>tag</b> stays text too.

        A second paragraph."""
        return {"said": job.payload.get("text", "z" * 3000)}


@hookimpl
def register_workers(register: Any) -> None:
    register(Flood)
    register(Unready)
    register(Longwinded)
