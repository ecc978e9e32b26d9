"""Take the next item of an async iterator, and learn whether it was ready at once.

An LLM backend often yields many deltas without waiting (a network read brings several;
the offline backend never waits). Each stream chunk costs a trip along the job path, far
more than a backend takes to produce a token (bench/llm_stream.py measures both), so the
LLM worker joins the deltas that arrive back to back and sends them as one chunk, flushing
the moment the backend would wait: no added latency.

Whether the backend would wait can only be seen below anyio's API: the ``__anext__``
coroutine is stepped once by hand; if it finishes, the item was ready; if it yields (to the
event loop), the caller flushes, then the coroutine is resumed exactly where it stopped,
with everything the event loop sends or throws into it forwarded (cancellation included).
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Generator
from typing import Any, TypeVar

T = TypeVar("T")


@types.coroutine
def _resume(coroutine: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Finish awaiting ``coroutine``, which has just yielded ``yielded``."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # forwarded to the coroutine, not handled here
            try:
                yielded = coroutine.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value


_NOT_READY = object()


class Pending:
    """An ``__anext__`` that did not finish at once: ``await pending.finish()``."""

    __slots__ = ("_coroutine", "_yielded")

    def __init__(self, coroutine: Any, yielded: Any) -> None:
        self._coroutine = coroutine
        self._yielded = yielded

    async def finish(self) -> Any:
        """Await the rest of the step (what the event loop sends or throws goes to it)."""
        return await _resume(self._coroutine, self._yielded)

    def abort(self, exc: BaseException) -> None:
        """Give up on the step because ``exc`` was raised meanwhile: the exception is thrown
        into it, so an async generator unwinds at its ``await`` (its ``finally`` runs and a
        later ``aclose()`` has nothing left to do)."""
        try:
            self._coroutine.throw(exc)
        except BaseException:  # the step unwound, as asked
            return
        self._coroutine.close()  # it caught the exception and waited again: stop it


def try_next(iterator: AsyncIterator[T]) -> T | Pending:
    """The next item if it is ready without waiting, else a ``Pending`` to finish.

    A plain function, not a coroutine: it sits on the per-token path. Raises
    ``StopAsyncIteration`` at the end.
    """
    coroutine: Any = iterator.__anext__()
    try:
        yielded = coroutine.send(None)  # a method call, not a bound method: per token
    except StopIteration as stop:
        item: T = stop.value
        return item
    except AttributeError:
        if hasattr(coroutine, "send"):
            raise  # raised by the backend itself
        coroutine = coroutine.__await__()  # any other awaitable: step its iterator
        try:
            yielded = coroutine.send(None)
        except StopIteration as stop:
            other: T = stop.value
            return other
    return Pending(coroutine, yielded)
