"""Buses: how messages travel between workers and runners."""

from framework.bus.base import Bus, Inbox, UndeliverableError
from framework.bus.local import LocalBus
from framework.bus.messages import (
    ActivateMessage,
    BusMessage,
    CancelMessage,
    DeactivateMessage,
    EndMessage,
    JobCancelMessage,
    JobRequestMessage,
    JobResponseMessage,
    JobStreamDataMessage,
    JobStreamEndMessage,
    JobStreamStartMessage,
    JobUpdateMessage,
    JobUpdateRequestMessage,
    Message,
    WorkerLostMessage,
    decode_message,
    encode_message,
)

__all__ = [
    "ActivateMessage",
    "Bus",
    "BusMessage",
    "CancelMessage",
    "DeactivateMessage",
    "EndMessage",
    "Inbox",
    "JobCancelMessage",
    "JobRequestMessage",
    "JobResponseMessage",
    "JobStreamDataMessage",
    "JobStreamEndMessage",
    "JobStreamStartMessage",
    "JobUpdateMessage",
    "JobUpdateRequestMessage",
    "LocalBus",
    "Message",
    "UndeliverableError",
    "WorkerLostMessage",
    "decode_message",
    "encode_message",
]
