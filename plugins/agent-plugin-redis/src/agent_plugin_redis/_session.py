"""A session with Redis that comes back: set up, run the readers, and after any break wait
(with backoff) and start over.

A session is: one subscribed connection (``Subscriber``), the setup the bus asks for
(subscriptions, stream groups), and the bus's loops (readers, heartbeats), run until one
of them loses the connection or a sender reports a failed send (``break_session``). Then
the bus is told (``on_lost``), redis-py's pool is emptied (its connections are dead
too), and the next attempt waits 0.1 s, doubling to 2 s, with up to 50 % added at random.
The backoff starts over only once a session has lasted ``STABLE`` seconds, so a session
that breaks at once (a permission error, say) keeps backing off instead of spinning.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus

from agent_plugin_redis._logsafe import logger
from agent_plugin_redis._settings import CONNECTION_ERRORS
from agent_plugin_redis._subscriber import Subscriber
from framework.urls import redact_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis


BACKOFF_FIRST, BACKOFF_MAX = 0.1, 2.0
STABLE = 5.0

Setup = Callable[[Subscriber], Awaitable[None]]
Loop = Callable[[Subscriber], Awaitable[None]]


class SessionLost(Exception):
    """The session with Redis broke; the text says how."""


class Reconnecting:
    """Keeps a session with Redis open for one bus (see the module docstring).

    Args:
        name: the runner's name, for log lines.
        client: the bus's redis-py client (its pool is emptied after each break).
        url: the URL, for log lines (shown with its password hidden).
        setup: ``setup(subscriber)``, awaited at the start of each session (it subscribes).
        loops: each ``loop(subscriber)`` runs for the whole session.
        on_lost: ``on_lost(reason)``, called once when an open session breaks.
    """

    def __init__(
        self,
        name: str,
        client: aioredis.Redis,
        url: str,
        *,
        setup: Setup,
        loops: Sequence[Loop],
        on_lost: Callable[[str], None],
    ) -> None:
        self._name = name
        self._client = client
        self._url = redact_url(url)
        self._setup = setup
        self._loops = loops
        self._on_lost = on_lost
        self.connected = False
        """Whether a session is open (senders check it before using the client)."""
        self.stopping = False
        self._broken = anyio.Event()
        self._broken_reason = ""

    def break_session(self, error: BaseException) -> None:
        """A send failed: end the session as if a reader had lost the connection."""
        if self.connected and not self._broken.is_set():
            self._broken_reason = f"{type(error).__name__}: {error}"
            self._broken.set()

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        """Open sessions until ``stopping``; ``task_status.started()`` after the first
        attempt, whether it opened or not (the bus keeps trying in the background)."""
        delay = BACKOFF_FIRST
        started = False
        failures = 0
        while not self.stopping:
            opened_at: float | None = None
            try:
                async with anyio.create_task_group() as session:
                    await session.start(self._session)
                    opened_at = time.monotonic()
                    if not started:
                        started = True
                        task_status.started()
                    elif failures:
                        logger.warning("%s: reconnected to Redis at %s", self._name, self._url)
                    failures = 0
            except* SessionLost as lost:
                cause = str(_first_leaf(lost))
                failures += 1
                if opened_at is not None:
                    if not self.stopping:
                        self._on_lost(cause)
                elif failures == 2 or failures % 30 == 0:  # still down: say so now and then
                    logger.warning(
                        "%s: still cannot reach Redis at %s (%s); retrying",
                        self._name,
                        self._url,
                        cause,
                    )
                # Pooled connections opened before the loss are dead: without this, each
                # would fail once more on its first use after Redis is back.
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await self._client.connection_pool.disconnect()
            if not started:
                started = True
                task_status.started()
            if self.stopping:
                return
            if opened_at is not None and time.monotonic() - opened_at > STABLE:
                delay = BACKOFF_FIRST
            await anyio.sleep(delay * (1 + random.random() / 2))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _session(self, *, task_status: TaskStatus[None]) -> None:
        subscriber = Subscriber(self._client)
        try:
            try:
                await self._setup(subscriber)
            except CONNECTION_ERRORS as exc:
                raise SessionLost(f"{type(exc).__name__}: {exc}") from None
            self._broken = anyio.Event()
            self.connected = True
            task_status.started()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._end_when_broken)
                for loop in self._loops:
                    tasks.start_soon(self._guard, loop, subscriber)
        finally:
            self.connected = False
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await subscriber.close()

    async def _end_when_broken(self) -> None:
        await self._broken.wait()
        raise SessionLost(self._broken_reason)

    @staticmethod
    async def _guard(loop: Loop, subscriber: Subscriber) -> None:
        try:
            await loop(subscriber)
        except CONNECTION_ERRORS as exc:
            raise SessionLost(f"{type(exc).__name__}: {exc}") from None


def _first_leaf(error: BaseException) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error
