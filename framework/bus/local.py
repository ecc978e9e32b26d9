"""The in-process bus: objects handed from one inbox to another, never serialized."""

from __future__ import annotations

import anyio

from framework.bus.base import Inbox, StreamSink, UndeliverableError
from framework.bus.messages import BusMessage


class LocalBus:
    """Delivers each message to the inbox of its target only, in the same process.

    ``send`` has no scheduling point: it appends to the target's inbox and returns, which is
    what keeps a local round trip close to a bare queue ping-pong.
    """

    def __init__(self) -> None:
        self._inboxes: dict[str, Inbox] = {}

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` is subscribed here."""
        return address in self._inboxes

    async def start(self) -> None:
        """Nothing to connect: the local bus is ready at once."""

    async def stop(self) -> None:
        """Close every remaining inbox."""
        for inbox in self._inboxes.values():
            inbox.close()
        self._inboxes.clear()

    def subscribe(self, address: str) -> Inbox:
        """A new inbox for ``address``; a second subscription to one address is an error."""
        if address in self._inboxes:
            raise ValueError(
                f"address {address!r} is already subscribed on this bus: another worker (or "
                "a runner sharing this bus) uses that name; names must be unique per bus"
            )
        inbox = self._inboxes[address] = Inbox(address)
        return inbox

    def unsubscribe(self, address: str) -> None:
        """Close and forget the inbox of ``address``."""
        inbox = self._inboxes.pop(address, None)
        if inbox is not None:
            inbox.close()

    def stream_sink(self, target: str, job_id: str) -> StreamSink | None:
        """A way to hand the stream items of ``job_id`` to ``target`` without building a
        message per item (see ``StreamSink``), or None when ``target`` takes none directly.
        Only for a bus whose ``send`` is this one's: a subclass that overrides ``send``
        must see every message."""
        inbox = self._inboxes.get(target)
        return None if inbox is None else inbox.stream_sink(job_id)

    async def send(self, message: BusMessage) -> None:
        """Put ``message`` into its target's inbox."""
        self.send_nowait(message)

    def send_nowait(self, message: BusMessage) -> None:
        """``send`` without the coroutine, for callers that must not reach a checkpoint."""
        inbox = self._inboxes.get(message.target)
        if inbox is None:
            raise UndeliverableError(message.target)
        try:
            inbox.put(message)
        except anyio.ClosedResourceError:
            raise UndeliverableError(message.target) from None
