"""The HTTP service: a plugin that ``framework run`` adds to its runner when it serves.

``runner_service`` runs uvicorn on a socket bound before the runner started (so that a
port in use is reported before anything runs, and the banner can print the URL);
``on_job_started`` and ``on_job_completed`` feed ``/metrics``. ``/v1/events`` listens to
the runner's events only while clients watch (``WorkerRunner.listen_events``), so that a
runner nobody watches builds no events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import anyio

from framework.hookspecs import hookimpl
from framework.http._settings import HttpSettings, ListenError

if TYPE_CHECKING:
    from framework.bus.messages import JobResponseMessage
    from framework.events import EventModel
    from framework.jobs import Job
    from framework.runner import WorkerRunner
    from framework.worker import BaseWorker

logger = logging.getLogger("framework.http")

SHUTDOWN_SECONDS = 2
"""How long open connections get to finish when the runner ends."""


def bind(settings: HttpSettings) -> tuple[socket.socket, HttpSettings]:
    """Listen on the settings' address; returns the socket and the settings with the port
    actually bound (port 0 picks a free one).

    Raises:
        ListenError: the address is in use or cannot be bound, saying what to do.
    """
    try:
        infos = socket.getaddrinfo(
            settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {settings.host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    # With its protocol (TCP) named: asyncio sets TCP_NODELAY only on connections accepted
    # from such a socket. Without it, an answer written in two parts (headers, then body)
    # waits for the client's delayed acknowledgement, some 40 ms.
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        where = f"{settings.host}:{settings.port}"
        if exc.errno in (98, 48):  # EADDRINUSE on Linux, macOS
            raise ListenError(
                f"cannot serve HTTP on {where}: the port is in use (another runner?); pick "
                "another with --http HOST:PORT, or --no-http"
            ) from None
        raise ListenError(f"cannot serve HTTP on {where}: {exc.strerror}") from None
    sock.setblocking(False)
    port = sock.getsockname()[1]
    return sock, dataclasses.replace(settings, port=port)


class HttpService:
    """The plugin object serving the API for one runner."""

    def __init__(
        self,
        settings: HttpSettings,
        sock: socket.socket,
        plugins: Callable[[], list[dict[str, Any]]],
    ) -> None:
        from framework.http._hub import EventHub
        from framework.http._metrics import JobMetrics
        from framework.http._tracker import JobTracker

        self.settings = settings
        self.sock = sock
        self.plugins = plugins
        self.hub = EventHub(self._listen)
        self.tracker = JobTracker(settings.history)
        self._runner: WorkerRunner | None = None
        self.metrics = JobMetrics(self._events_dropped, lambda: len(self.tracker.running()))
        self.serving = anyio.Event()
        """Set once uvicorn accepts connections."""

    def _listen(self, listener: Callable[[EventModel], None]) -> Callable[[], None]:
        if self._runner is None:
            raise RuntimeError("the HTTP service is not serving")
        return self._runner.listen_events(listener)

    def _events_dropped(self) -> int:
        lost = self.hub.lost()
        if self._runner is not None:
            lost += sum(stats.dropped for stats in self._runner.event_stats().values())
        return lost

    @hookimpl
    async def runner_service(self, runner: WorkerRunner) -> None:
        """Serve until the runner ends: the mounted apps' lifespans around uvicorn."""
        from framework.http._lifespan import mounted_apps

        self._runner = runner
        try:
            async with mounted_apps(runner.routes.entries, runner) as mounts:
                await self._serve(runner, mounts)
        finally:
            self.sock.close()

    async def _serve(self, runner: WorkerRunner, mounts: dict[str, Any]) -> None:
        import uvicorn

        from framework.http._api import Api
        from framework.http._app import build_app

        api = Api(runner, self.settings, self.plugins, self.hub, self.tracker, self.metrics)
        app = build_app(api, mounts, frozenset(runner.routes.public))
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws="none",
            http=_protocol(),
            timeout_graceful_shutdown=SHUTDOWN_SECONDS,
        )
        server = _server(config)
        done = anyio.Event()
        scope = anyio.CancelScope(shield=True)

        async def serve() -> None:
            # Shielded: when the runner ends, uvicorn is asked to stop (should_exit) and
            # gets SHUTDOWN_SECONDS to close its connections, instead of being torn down.
            try:
                with scope:
                    await server.serve(sockets=[self.sock])
            finally:
                done.set()

        async with anyio.create_task_group() as tg:
            api.task_group = tg
            tg.start_soon(serve)
            try:  # a cancellation from here on must stop uvicorn, which is shielded
                while not server.started and not done.is_set():
                    await anyio.sleep(0.01)
                if server.started:
                    self.serving.set()
                await done.wait()
            finally:
                api.task_group = None
                server.should_exit = True
                self.hub.close()
                with anyio.CancelScope(shield=True), anyio.move_on_after(SHUTDOWN_SECONDS + 1):
                    await done.wait()
                scope.cancel()
                tg.cancel_scope.cancel()

    @hookimpl
    def on_job_started(self, job: Job, worker: BaseWorker) -> None:
        """Note when the handler began, for ``/metrics``."""
        self.metrics.job_started(job, worker)

    @hookimpl
    def on_job_completed(self, response: JobResponseMessage, worker: BaseWorker) -> None:
        """Count the job, for ``/metrics``."""
        self.metrics.job_completed(response, worker)


WRITE_BUFFER = 16 * 1024
"""Bytes a connection may have waiting in the server before a write waits for the client:
a client that stops reading holds this much, not asyncio's default 64 KiB."""


def _protocol() -> type[Any]:
    """uvicorn's HTTP protocol with a smaller write buffer per connection."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class Protocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.set_write_buffer_limits(high=WRITE_BUFFER)

    return Protocol


def _server(config: Any) -> Any:
    """uvicorn's server, minus its signal handlers: the runner owns SIGINT and SIGTERM and
    ends the service by cancelling it."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    return Server(config)
