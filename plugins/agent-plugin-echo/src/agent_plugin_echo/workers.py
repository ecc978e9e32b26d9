"""The workers of agent-plugin-echo: one per kind of job handler.

- ``Echo``: the smallest handler, returning a dict.
- ``Reverse``: validates its payload and reports bad input with ``JobFailed``.
- ``Count``: an async-generator handler that streams items and sends progress updates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from framework import BaseWorker, Job, JobFailed, job

MAX_COUNT = 10_000
"""The largest ``n`` the ``count`` worker accepts."""


class Echo(BaseWorker):
    """Answers every job with its payload."""

    @job  # the default handler: every request to this worker, whatever its name, lands here
    async def echo(self, job: Job) -> dict[str, Any]:
        """Answer with the payload itself: any JSON object, under any job name."""
        # The returned dict is the response; the job ends COMPLETED.
        return job.payload


class Reverse(BaseWorker):
    """Answers ``{"text": "hi"}`` with ``{"text": "ih"}``."""

    @job
    async def reverse(self, job: Job) -> dict[str, Any]:
        """Reverse a text: the payload {"text": "hi"} is answered with {"text": "ih"}."""
        text = job.payload.get("text")
        if not isinstance(text, str):
            # JobFailed ends the job FAILED with this message as response["error"]: the way to
            # report bad input. Any other exception would end it ERROR, as a crash.
            got = "no text" if "text" not in job.payload else f"{type(text).__name__} {text!r}"
            raise JobFailed(
                f'reverse needs a string "text" in its payload, like {{"text": "hi"}}; got {got}'
            )
        return {"text": text[::-1]}


class Count(BaseWorker):
    """Streams ``{"n": 1}`` ... ``{"n": n}`` for the payload ``{"n": n}``."""

    @job
    async def count(self, job: Job) -> AsyncIterator[dict[str, int]]:
        """Count to n: for the payload {"n": 3} (n from 0 to 10000), stream {"n": 1},
        {"n": 2}, {"n": 3}, with a progress update after each."""
        # An async generator handler streams: the requester gets a stream start, one stream
        # item per `yield`, a stream end, and then the response {"chunks": <items sent>}.
        n = job.payload.get("n")
        # bool is a subclass of int: refuse {"n": true} explicitly.
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_COUNT:
            raise JobFailed(
                f'count needs an integer "n" from 0 to {MAX_COUNT} in its payload, '
                f'like {{"n": 3}}; got {n!r}'
            )
        for i in range(1, n + 1):
            yield {"n": i}
            # Progress goes to the requester as an update event, alongside the stream.
            await job.update({"done": i, "of": n})
