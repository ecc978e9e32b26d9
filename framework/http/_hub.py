"""Runtime events for ``GET /v1/events``: one bounded buffer per client.

The runner hands each event here (``WorkerRunner.listen_events``) while clients watch; it
is turned into JSON once and offered to every client whose filter matches. A client that
does not read fast enough loses its own events once its buffer is full (counted, and told
with a ``dropped`` event), never the runner's time or another client's events. The last
``REPLAY`` events are kept so that a reconnecting client resumes with ``Last-Event-ID``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import anyio

from framework.events import EventModel
from framework.http._sse import KEEPALIVE_SECONDS

CLIENT_BUFFER = 256
"""Events one client may have waiting before it loses new ones."""
REPLAY = 512
"""Recent events kept for clients that resume with ``Last-Event-ID``."""
LINGER = 30.0
"""Seconds the hub keeps listening after its last client left, for one that reconnects."""


class EventFilter:
    """``?worker=`` and ``?job_id=``: which events a client wants (None: any)."""

    __slots__ = ("job_id", "worker")

    def __init__(self, worker: str | None, job_id: str | None) -> None:
        self.worker = worker
        self.job_id = job_id

    def matches(self, worker: str, job_id: str) -> bool:
        """Whether an event about ``worker`` and ``job_id`` passes."""
        return (self.worker is None or worker == self.worker) and (
            self.job_id is None or job_id == self.job_id
        )


class _Item:
    """One event on its way to clients, turned into JSON at most once, when first sent."""

    __slots__ = ("_json", "event", "job_id", "sequence_id", "worker")

    def __init__(self, event: EventModel) -> None:
        self.event = event
        self.sequence_id = event.sequence_id
        self.worker = event.node_name
        self.job_id = str(event.thread_id)
        self._json: str | None = None

    def json(self) -> str:
        """The event as JSON text."""
        if self._json is None:
            self._json = self.event.model_dump_json()
        return self._json


class Subscription:
    """One ``/v1/events`` client's buffer."""

    def __init__(self, hub: EventHub, wanted: EventFilter) -> None:
        self.hub = hub
        self.wanted = wanted
        self.buffer: deque[_Item] = deque()
        self.dropped = 0
        self.closed = False
        self._wake: anyio.Event | None = None

    def offer(self, item: _Item) -> None:
        """Take one event, or count it lost when the buffer is full."""
        if len(self.buffer) >= CLIENT_BUFFER:
            self.dropped += 1
            self.hub.dropped += 1
            return
        self.buffer.append(item)
        self.wake()

    def wake(self) -> None:
        """Wake the client's task if it waits for events."""
        wake, self._wake = self._wake, None
        if wake is not None:
            wake.set()

    async def items(self) -> AsyncIterator[_Item | int | None]:
        """Yield events as they come; an int is the number of events lost since the last
        yield (the client should know that it missed some); None after
        ``KEEPALIVE_SECONDS`` without any (time for a keepalive)."""
        reported = 0
        while not self.closed:
            if self.dropped != reported:
                yield self.dropped - reported
                reported = self.dropped
            if self.buffer:
                yield self.buffer.popleft()
                continue
            self._wake = wake = anyio.Event()
            with anyio.move_on_after(KEEPALIVE_SECONDS):
                await wake.wait()
            if not wake.is_set():
                yield None


class EventHub:
    """Every ``/v1/events`` client's subscription, and the recent events.

    The hub listens to the runner (``WorkerRunner.listen_events``) only while clients are
    connected, and ``LINGER`` seconds after the last one left (so that it can resume with
    ``Last-Event-ID``): while nobody watches, the runner builds no events for it.
    """

    def __init__(
        self, listen: Callable[[Callable[[EventModel], None]], Callable[[], None]]
    ) -> None:
        self._listen = listen
        self._stop_listening: Callable[[], None] | None = None
        self._idle_since = 0.0
        self.subscriptions: set[Subscription] = set()
        self.recent: deque[_Item] = deque(maxlen=REPLAY)
        self.dropped = 0
        """Events lost by slow clients, in all."""

    def publish(self, event: EventModel) -> None:
        """Offer one runtime event to every client that wants it."""
        if not self.subscriptions and time.monotonic() - self._idle_since > LINGER:
            self._stop()
            return
        item = _Item(event)
        self.recent.append(item)
        for subscription in self.subscriptions:
            if subscription.wanted.matches(item.worker, item.job_id):
                subscription.offer(item)

    def subscribe(self, wanted: EventFilter, after: int = 0) -> Subscription:
        """A new client; with ``after`` (its ``Last-Event-ID``) the kept events after that
        id are queued first."""
        if self._stop_listening is None:
            self._stop_listening = self._listen(self.publish)
        subscription = Subscription(self, wanted)
        if after:
            for item in self.recent:
                if item.sequence_id > after and wanted.matches(item.worker, item.job_id):
                    subscription.offer(item)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a client that has gone."""
        self.subscriptions.discard(subscription)
        subscription.closed = True
        subscription.wake()
        if not self.subscriptions:
            self._idle_since = time.monotonic()

    def _stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        self.recent.clear()

    def close(self) -> None:
        """End every client's stream and stop listening (the runner is ending)."""
        for subscription in list(self.subscriptions):
            self.unsubscribe(subscription)
        self._stop()
