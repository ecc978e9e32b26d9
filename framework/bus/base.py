"""The ``Bus`` protocol, and ``Inbox``: the receiving end every subscription hands out.

A bus moves messages between addresses (worker and runner names). Each address that
subscribes gets an ``Inbox``; ``send`` delivers a message to the inbox of its ``target``
only. Inside an inbox, control messages overtake queued data.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import anyio
from anyio import WouldBlock

from framework._wakeup import Wakeup
from framework.bus.messages import BusMessage


class UndeliverableError(LookupError):
    """``send`` found no subscriber for the message's target."""

    def __init__(self, target: str) -> None:
        super().__init__(f"no subscriber for {target!r} on this bus")
        self.target = target


class Inbox:
    """Messages waiting for one address: control messages first, then data, FIFO in each.

    Two deques and a ``Wakeup``, not an anyio memory object stream: on the job path a
    stream costs a checkpoint, an ``anyio.Event`` and a task lookup on every wait, a large
    share of a local round trip, so the inbox keeps its own queues and waits on a bare
    future (see ``framework._wakeup``).

    ``direct``, when set, is offered each data message at ``put`` time while no data is
    queued; returning True means it was handled there and then (a reply applied by its
    requester, a job request started by an idle worker, without a hop through the owner's
    receive loop). With a queue, order wins: the message waits its turn. ``put_back``
    returns a message ``direct`` took to the head of the queue.

    ``sinks``, when set, gives for a job id a function that takes that job's stream items
    (source, data) the way ``direct`` takes their messages; ``stream_sink`` wraps it in a
    ``StreamSink``, which an in-process producer uses to skip building a message per item.
    """

    __slots__ = (
        "_closed",
        "_control",
        "_data",
        "_wakeup",
        "address",
        "direct",
        "holding",
        "sinks",
    )

    def __init__(self, address: str) -> None:
        self.address = address
        self._control: deque[BusMessage] = deque()
        self._data: deque[BusMessage] = deque()
        self._wakeup = Wakeup()
        self._closed = False
        self.direct: Callable[[BusMessage], bool] | None = None
        self.sinks: Callable[[str], Callable[[str, Any], object] | None] | None = None
        self.holding = False
        """Set by the owner while what ``direct`` took is not settled yet: stream sinks
        then take no items (each goes as a message, through ``put`` and ``direct``)."""

    def put(self, message: BusMessage) -> None:
        """Queue ``message``; never blocks. Raises ``anyio.ClosedResourceError`` once closed."""
        if self._closed:
            raise anyio.ClosedResourceError
        if message.control:
            self._control.append(message)
        elif self._data or self.direct is None or not self.direct(message):
            self._data.append(message)
        else:
            return
        self._wakeup.set()

    @property
    def reader_waiting(self) -> bool:
        """Whether the owner's ``receive`` is waiting now: nothing is queued and no message
        is being handled by the loop that reads this inbox (it would take the next one
        at once)."""
        return self._wakeup.waiting

    @property
    def queued(self) -> bool:
        """Whether any message waits to be received."""
        return bool(self._control or self._data)

    def put_back(self, message: BusMessage) -> bool:
        """Queue a data message that ``direct`` took, ahead of the other data (control
        messages still come first); False once the inbox is closed."""
        if self._closed:
            return False
        self._data.appendleft(message)
        self._wakeup.set()
        return True

    def stream_sink(self, job_id: str) -> StreamSink | None:
        """Where the stream items of ``job_id`` may go without a message each, or None when
        the owner takes none directly (it has callbacks to await, or no such job)."""
        sinks = self.sinks
        if sinks is None:
            return None
        put = sinks(job_id)
        return None if put is None else StreamSink(self, put)

    def receive_nowait(self) -> BusMessage:
        """The next message, control first. Raises ``anyio.WouldBlock`` when empty, and
        ``anyio.EndOfStream`` when closed and empty."""
        if self._control:
            return self._control.popleft()
        if self._data:
            return self._data.popleft()
        if self._closed:
            raise anyio.EndOfStream
        raise WouldBlock

    async def receive(self) -> BusMessage:
        """The next message, waiting for one when the inbox is empty.

        Queued messages are taken without a scheduling point; the caller's loop is expected
        to reach one in its own work. Raises ``anyio.EndOfStream`` once closed and empty.
        """
        while True:
            if self._control:
                return self._control.popleft()
            if self._data:
                return self._data.popleft()
            if self._closed:
                raise anyio.EndOfStream
            await self._wakeup.wait()

    def drain(self) -> list[BusMessage]:
        """Take every queued message now (used when the owner stops, to answer them)."""
        drained = [*self._control, *self._data]
        self._control.clear()
        self._data.clear()
        return drained

    def close(self) -> None:
        """Refuse further messages; a waiting ``receive`` ends with ``anyio.EndOfStream``
        once the queued messages are taken."""
        self._closed = True
        self._wakeup.set()


class StreamSink:
    """One job's stream items handed straight to its requester in this process.

    ``put`` does what ``Inbox.put`` would do with the item's message, without building it,
    and only when ``put`` would hand the message to ``direct``: while nothing is queued in
    the inbox (an item never overtakes a message sent before it) and the inbox is open.
    Otherwise it returns False and the producer sends the message as usual.
    """

    __slots__ = ("_inbox", "_put")

    def __init__(self, inbox: Inbox, put: Callable[[str, Any], object]) -> None:
        self._inbox = inbox
        self._put = put

    def put(self, source: str, data: Any) -> bool:
        """Hand over one stream item from ``source``; False when it must go as a message."""
        inbox = self._inbox
        if inbox._data or inbox._closed or inbox.holding:
            return False
        self._put(source, data)
        return True


@runtime_checkable
class Bus(Protocol):
    """What a runner needs from a bus. ``register_buses`` plugins provide other ones."""

    async def start(self) -> None:
        """Connect and start delivering. Called once by the runner before any worker starts."""

    async def stop(self) -> None:
        """Stop delivering and release resources. Called once when the runner has ended."""

    def subscribe(self, address: str) -> Inbox:
        """Start receiving messages whose ``target`` is ``address``.

        Raises:
            ValueError: ``address`` is subscribed already.
        """

    def unsubscribe(self, address: str) -> None:
        """Stop receiving for ``address`` and close its inbox (unknown addresses are ignored)."""

    async def send(self, message: BusMessage) -> None:
        """Deliver ``message`` to the inbox of ``message.target``.

        Raises:
            UndeliverableError: nobody subscribes to the target (a network bus may instead
                report this later, or not at all: the registry's liveness covers that).
        """


# A network bus (one that links runners in several processes) is a ``NetworkBus``
# (``framework.bus.network``): a ``Bus`` with ``attach`` and ``serve`` too, which the
# in-process bus has no use for. docs/distributed.md describes what such a bus must
# guarantee.
