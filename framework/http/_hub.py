"""Runtime events for ``GET /v1/events``: one shared ring, a read position per client.

The runner hands each event here (``WorkerRunner.listen_events``) while clients watch.
Publishing costs the same whatever the number of clients: the event is appended to the
ring and the clients that wait for news are woken through one shared event. Each client
then sends what it has not sent yet as one write, at most once per ``batch_interval``,
which grows with the number of clients: the work of delivering is bounded by time, not by
events times clients. A client that does not read (or cannot keep up) falls behind the
ring's tail and skips ahead, told how many it lost with a ``dropped`` event: it costs the
runner nothing more. Events are turned into SSE text once, however many clients send
them. The ring doubles as the replay for clients that resume with ``Last-Event-ID``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import anyio

from framework.events import EventModel
from framework.http._sse import KEEPALIVE, KEEPALIVE_SECONDS, encode
from framework.http._tracker import to_json

Listen = Callable[[Callable[[EventModel], None]], Callable[[], None]]
"""``WorkerRunner.listen_events``: start calling a listener; returns how to stop."""

RING = 4096
"""Events kept for the clients: one further behind than this loses what it missed."""
MAX_EVENT_BYTES = 64 * 1024
"""The largest event sent whole to ``/v1/events`` clients, as JSON."""
SMALL_VALUE_BYTES = 1024
"""What a value of a truncated event's ``data`` may take, as JSON, to be kept."""
LINGER = 30.0
"""Seconds the hub keeps listening after its last client left, for one that reconnects."""
BATCH_PER_CLIENT = 0.001
"""Seconds added to the delivery interval per connected client: a thousand clients write at
most once a second each."""
MAX_BATCH = 1.0
"""The longest a client waits before it sends what it has (with very many clients)."""
MAX_BATCH_BYTES = 16 * 1024
"""The most one write carries: a client whose connection is full holds at most this (and
the server's own write buffer) in memory; what did not fit waits for the next write."""


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
    """One event in the ring, turned into SSE text at most once, when first sent."""

    __slots__ = ("_sse", "event", "job_id", "sequence_id", "worker")

    def __init__(self, event: EventModel) -> None:
        self.event = event
        self.sequence_id = event.sequence_id
        self.worker = event.node_name
        self.job_id = str(event.thread_id)
        self._sse: bytes | None = None

    def sse(self) -> bytes:
        """The event as one SSE message (``id`` = its sequence id, no event name). One
        larger than ``MAX_EVENT_BYTES`` goes out without its large fields: ``content`` is
        cut, ``data`` keeps its small values (a response's ``status``) and gains
        ``"truncated"``, the event's size (``GET /v1/jobs/{job_id}`` has a response in
        full)."""
        if self._sse is None:
            text = self.event.model_dump_json()
            if len(text) > MAX_EVENT_BYTES:
                kept = {
                    key: value
                    for key, value in self.event.data.items()
                    if len(to_json(value)) <= SMALL_VALUE_BYTES
                }
                kept["truncated"] = len(text)
                cut = self.event.model_copy(
                    update={
                        "data": kept,
                        "content": self.event.content[:1000],
                        "content_blocks": None,
                    }
                )
                text = cut.model_dump_json()
            self._sse = encode(None, text, self.sequence_id)
        return self._sse


class Subscription:
    """One ``/v1/events`` client: what it wants and how far it has read."""

    def __init__(self, hub: EventHub, wanted: EventFilter, position: int) -> None:
        self.hub = hub
        self.wanted = wanted
        self.position = position
        """The hub index of the next event this client has not looked at."""
        self.dropped = 0
        self.closed = False

    async def batches(self) -> AsyncIterator[bytes]:
        """Yield what to write, one chunk per delivery: the events this client wants, a
        ``dropped`` event first when it fell behind, or a keepalive after a quiet while."""
        hub = self.hub
        while not self.closed:
            if self.position >= hub.count:  # nothing new: wait for news
                with anyio.move_on_after(KEEPALIVE_SECONDS):
                    await hub.news()
                if self.closed:
                    return
                if self.position >= hub.count:
                    yield KEEPALIVE
                    continue
            await anyio.sleep(hub.batch_interval)
            chunk = self._take()
            if chunk:
                yield chunk

    def _take(self) -> bytes:
        hub = self.hub
        first = hub.count - len(hub.ring)
        parts = []
        if self.position < first:
            lost = first - self.position
            self.dropped += lost
            hub.dropped += lost
            parts.append(encode("dropped", to_json({"dropped": lost})))
            self.position = first
        wanted = self.wanted
        ring = hub.ring
        size = 0
        index = self.position - first
        while index < len(ring) and size < MAX_BATCH_BYTES:
            item = ring[index]
            index += 1
            if wanted.matches(item.worker, item.job_id):
                text = item.sse()
                parts.append(text)
                size += len(text)
        self.position = first + index
        return b"".join(parts)


class EventHub:
    """The ring of recent events and every ``/v1/events`` client.

    The hub listens to the runner only while clients are connected, and ``LINGER``
    seconds after the last one left (so that it can resume with ``Last-Event-ID``): while
    nobody watches, the runner builds no events for it.
    """

    def __init__(
        self, listen: Callable[[Callable[[EventModel], None]], Callable[[], None]]
    ) -> None:
        self._listen = listen
        self._stop_listening: Callable[[], None] | None = None
        self._idle_since = 0.0
        self._news: anyio.Event | None = None
        self.subscriptions: set[Subscription] = set()
        self.ring: deque[_Item] = deque(maxlen=RING)
        self.count = 0
        """Events published so far: the hub index the next one gets."""
        self.dropped = 0
        """Events clients lost by falling behind, in all."""

    def lost(self) -> int:
        """Events clients have lost so far, counting those that a client still blocked on
        a full connection has already fallen behind by."""
        first = self.count - len(self.ring)
        behind = sum(max(0, first - s.position) for s in self.subscriptions)
        return self.dropped + behind

    @property
    def batch_interval(self) -> float:
        """How long a woken client gathers events before it writes them."""
        return min(MAX_BATCH, BATCH_PER_CLIENT * len(self.subscriptions))

    def publish(self, event: EventModel) -> None:
        """Add one runtime event and wake the clients that wait for news."""
        if not self.subscriptions and time.monotonic() - self._idle_since > LINGER:
            self._stop()
            return
        self.ring.append(_Item(event))
        self.count += 1
        news, self._news = self._news, None
        if news is not None:
            news.set()

    async def news(self) -> None:
        """Wait until an event is published."""
        if self._news is None:
            self._news = anyio.Event()
        await self._news.wait()

    def subscribe(self, wanted: EventFilter, after: int = 0) -> Subscription:
        """A new client; with ``after`` (its ``Last-Event-ID``) it starts with the kept
        events whose sequence id is greater."""
        if self._stop_listening is None:
            self._stop_listening = self._listen(self.publish)
        position = self.count
        if after:
            position -= sum(1 for item in self.ring if item.sequence_id > after)
        subscription = Subscription(self, wanted, position)
        self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a client that has gone."""
        self.subscriptions.discard(subscription)
        subscription.closed = True
        if not self.subscriptions:
            self._idle_since = time.monotonic()

    def _stop(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        self.ring.clear()

    def close(self) -> None:
        """End every client's stream and stop listening (the runner is ending)."""
        for subscription in list(self.subscriptions):
            self.unsubscribe(subscription)
        news, self._news = self._news, None
        if news is not None:
            news.set()
        self._stop()
