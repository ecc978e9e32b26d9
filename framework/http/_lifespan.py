"""The ASGI lifespan of the apps plugins mount (``register_routes``), run around serving.

Starlette's ``Mount`` never passes a lifespan to the app it mounts, and uvicorn runs ours
with ``lifespan="off"``: an app that needs its startup (the MCP SDK's Starlette app starts
its session manager there) would answer every request with an error. So the HTTP service
runs each mounted app's lifespan itself, by the ASGI lifespan protocol, in its own task
group: startup before the first request, shutdown after the last connection closed.

Each app's lifespan scope carries a ``state`` dict holding the runner under
``"framework.runner"``, and every request to that app gets a shallow copy of it in
``scope["state"]`` (as ASGI servers do with a top-level app's lifespan state): an app
registered once per process finds there the runner it serves, and what its own lifespan
put there.

An app that does not speak the lifespan protocol (it raises, or returns, before
answering the startup) is served without one. One whose startup fails (it answers
``lifespan.startup.failed``, raises after starting, or does not answer within
``STARTUP_SECONDS``) is logged with its plugin's name, and its prefix answers 503 saying
why; the rest of the API is served.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from framework.http._errors import error_response

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from framework.registrars import Registration
    from framework.runner import WorkerRunner

logger = logging.getLogger("framework.http")

RUNNER_KEY = "framework.runner"
"""The key of the runner in a mounted app's lifespan state and ``scope["state"]``."""

STARTUP_SECONDS = 10.0
"""How long a mounted app's lifespan startup may take before it counts as failed."""

SHUTDOWN_SECONDS = 5.0
"""How long a mounted app's lifespan shutdown may take before it is cancelled."""


class _NotLifespan(Exception):
    """The app sent something that is not a lifespan message: it does not speak it."""


@dataclass
class _Lifespan:
    """One mounted app's lifespan: the protocol's two sides, and how it went."""

    prefix: str
    plugin: str
    app: ASGIApp
    state: dict[str, Any]
    started: anyio.Event = field(default_factory=anyio.Event)
    """Set once the startup is answered, refused, failed or not spoken."""
    stopped: anyio.Event = field(default_factory=anyio.Event)
    """Set once the app's lifespan call has returned (or raised)."""
    speaks: bool = False
    """Whether the app answered the startup (it then gets the shutdown)."""
    failure: str | None = None
    """Why it failed to start (its prefix then answers 503)."""
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    """Cancels the app's lifespan call (one that did not start in time)."""
    _shutdown: anyio.Event = field(default_factory=anyio.Event)
    _sent_startup: bool = False

    async def run(self) -> None:
        """Call the app with a lifespan scope; returns when its lifespan call does."""
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            with self.scope:
                await self.app(scope, self._receive, self._send)
        except Exception as exc:
            if self.speaks and not self.started.is_set():
                self._fail(f"{type(exc).__name__}: {exc}")
            elif self.speaks:
                logger.error(
                    "the app plugin %r mounts at %s failed in its lifespan: %s: %s",
                    self.plugin,
                    self.prefix,
                    type(exc).__name__,
                    exc,
                )
            else:  # raised before answering the startup: no lifespan, per the ASGI spec
                logger.debug("the app at %s has no lifespan (%s)", self.prefix, exc)
        finally:
            self.started.set()
            self.stopped.set()

    async def _receive(self) -> Message:
        if not self._sent_startup:
            self._sent_startup = True
            return {"type": "lifespan.startup"}
        await self._shutdown.wait()
        return {"type": "lifespan.shutdown"}

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self.speaks = True
            self.started.set()
        elif kind == "lifespan.startup.failed":
            self.speaks = True
            self._fail(str(message.get("message") or "its startup failed"))
        elif kind not in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            raise _NotLifespan(f"{kind!r} is not a lifespan message")

    def _fail(self, reason: str) -> None:
        self.failure = reason
        logger.error(
            "the app plugin %r mounts at %s failed to start: %s; %s answers 503",
            self.plugin,
            self.prefix,
            reason,
            self.prefix,
        )
        self.started.set()

    def shut_down(self) -> None:
        """Send the shutdown (the app's lifespan then returns)."""
        self._shutdown.set()


class _Mounted:
    """A mounted app, as the HTTP API routes to it: each request's ``scope["state"]`` is
    a copy of the app's lifespan state; after a failed startup, 503 saying why."""

    def __init__(self, lifespan: _Lifespan) -> None:
        self._lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lifespan = self._lifespan
        if scope["type"] not in ("http", "websocket"):
            await lifespan.app(scope, receive, send)
            return
        if lifespan.failure is not None:
            response = error_response(
                503,
                f"the app of plugin {lifespan.plugin!r} at {lifespan.prefix} failed to start: "
                f"{lifespan.failure}",
            )
            await response(scope, receive, send)
            return
        await lifespan.app({**scope, "state": dict(lifespan.state)}, receive, send)


@contextlib.asynccontextmanager
async def mounted_apps(
    mounts: Mapping[str, Registration], runner: WorkerRunner
) -> AsyncIterator[dict[str, ASGIApp]]:
    """Start the lifespan of every mounted app; yield the apps to mount, by prefix; shut
    them down on exit (bounded by ``SHUTDOWN_SECONDS``, even when cancelled)."""
    lifespans = [
        _Lifespan(prefix, entry.plugin, entry.value, {RUNNER_KEY: runner})
        for prefix, entry in mounts.items()
    ]
    async with anyio.create_task_group() as tg:
        await _start(tg, lifespans)
        try:
            yield {lifespan.prefix: _Mounted(lifespan) for lifespan in lifespans}
        finally:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(SHUTDOWN_SECONDS):
                    for lifespan in lifespans:
                        lifespan.shut_down()
                    for lifespan in lifespans:
                        await lifespan.stopped.wait()
                tg.cancel_scope.cancel()


async def _start(tg: TaskGroup, lifespans: list[_Lifespan]) -> None:
    """Send every app its startup and wait for the answers (``STARTUP_SECONDS`` at most)."""
    for lifespan in lifespans:
        tg.start_soon(lifespan.run, name=f"lifespan of the app at {lifespan.prefix}")
    with anyio.move_on_after(STARTUP_SECONDS):
        for lifespan in lifespans:
            await lifespan.started.wait()
    for lifespan in lifespans:
        if not lifespan.started.is_set():
            lifespan._fail(f"its lifespan startup did not finish within {STARTUP_SECONDS:g} s")
            lifespan.scope.cancel()
