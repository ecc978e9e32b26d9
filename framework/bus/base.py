"""The ``Bus`` protocol, and ``Inbox``: the receiving end every subscription hands out.

A bus moves messages between addresses (worker and runner names). Each address that
subscribes gets an ``Inbox``; ``send`` delivers a message to the inbox of its ``target``
only. Inside an inbox, control messages overtake queued data.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol, runtime_checkable

import anyio
from anyio import WouldBlock

from framework.bus.messages import BusMessage


class UndeliverableError(LookupError):
    """``send`` found no subscriber for the message's target."""

    def __init__(self, target: str) -> None:
        super().__init__(f"no subscriber for {target!r} on this bus")
        self.target = target


class Inbox:
    """Messages waiting for one address: control messages first, then data, FIFO in each.

    Data travels on an unbounded anyio memory object stream. A control message goes to a
    side queue and leaves a wake-up marker on the stream, so a receiver waiting on the
    stream wakes for it, and every ``receive`` looks at the side queue first.
    """

    __slots__ = ("_control", "_receive", "_send", "address")

    _WAKE = None

    def __init__(self, address: str) -> None:
        self.address = address
        self._send, self._receive = anyio.create_memory_object_stream[BusMessage | None](math.inf)
        self._control: deque[BusMessage] = deque()

    def put(self, message: BusMessage) -> None:
        """Queue ``message``; never blocks. Raises ``anyio.ClosedResourceError`` once closed."""
        if message.control:
            self._send.send_nowait(self._WAKE)
            self._control.append(message)
        else:
            self._send.send_nowait(message)

    def receive_nowait(self) -> BusMessage:
        """The next message, control first. Raises ``anyio.WouldBlock`` when empty."""
        while True:
            if self._control:
                return self._control.popleft()
            message = self._receive.receive_nowait()
            if message is not None:
                return message

    async def receive(self) -> BusMessage:
        """The next message, waiting for one when the inbox is empty.

        Takes queued messages without a scheduling point (anyio's ``receive`` would add a
        full event-loop round per message); waits only when there is nothing to take. A
        data message handed over while we waited came before any control message queued
        since, so it is returned first. Raises ``anyio.EndOfStream`` once closed and empty.
        """
        while True:
            try:
                return self.receive_nowait()
            except WouldBlock:
                message = await self._receive.receive()
                if message is not None:
                    return message

    def drain(self) -> list[BusMessage]:
        """Take every queued message now (used when the owner stops, to answer them)."""
        drained = list(self._control)
        self._control.clear()
        while True:
            try:
                item = self._receive.receive_nowait()
            except (WouldBlock, anyio.EndOfStream):
                return drained
            if item is not None:
                drained.append(item)

    def close(self) -> None:
        """Refuse further messages; a waiting ``receive`` ends with ``anyio.EndOfStream``."""
        self._send.close()


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
