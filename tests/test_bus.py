"""The bus: targeted delivery, control messages first, and messages from the network."""

from __future__ import annotations

import json
from typing import Any, get_args

import anyio
import pydantic
import pytest

from framework import JobStatus
from framework.bus import (
    ActivateMessage,
    Bus,
    BusMessage,
    CancelMessage,
    DeactivateMessage,
    EndMessage,
    Inbox,
    JobCancelMessage,
    JobRequestMessage,
    JobResponseMessage,
    JobStreamDataMessage,
    JobStreamEndMessage,
    JobStreamStartMessage,
    JobUpdateMessage,
    JobUpdateRequestMessage,
    LocalBus,
    Message,
    UndeliverableError,
    WorkerLostMessage,
    decode_message,
    encode_message,
)

# One fully populated example of every message type, and the same with only what is required.
FULL: list[tuple[type[BusMessage], dict[str, Any]]] = [
    (
        JobRequestMessage,
        {"job_id": "j1", "name": "echo", "payload": {"text": "hi", "n": [1, 2]}},
    ),
    (
        JobResponseMessage,
        {"job_id": "j1", "status": JobStatus.FAILED, "response": {"error": "bad"}},
    ),
    (JobUpdateMessage, {"job_id": "j1", "data": {"pct": 50}}),
    (JobStreamStartMessage, {"job_id": "j1"}),
    (JobStreamDataMessage, {"job_id": "j1", "data": {"chunk": "abc"}}),
    (JobStreamEndMessage, {"job_id": "j1"}),
    (JobUpdateRequestMessage, {"job_id": "j1"}),
    (WorkerLostMessage, {"worker_name": "w", "reason": "runner r lost"}),
    (JobCancelMessage, {"job_id": "j1", "reason": "timed out"}),
    (ActivateMessage, {"args": {"metadata": {"k": "v"}}}),
    (DeactivateMessage, {}),
    (EndMessage, {"reason": "done", "grace_period": 2.5}),
    (CancelMessage, {"reason": "now"}),
]
MINIMAL: list[tuple[type[BusMessage], dict[str, Any]]] = [
    (JobRequestMessage, {"job_id": "j1"}),
    (JobResponseMessage, {"job_id": "j1", "status": JobStatus.COMPLETED}),
    (JobUpdateMessage, {"job_id": "j1"}),
    (JobStreamStartMessage, {"job_id": "j1"}),
    (JobStreamDataMessage, {"job_id": "j1"}),
    (JobStreamEndMessage, {"job_id": "j1"}),
    (JobUpdateRequestMessage, {"job_id": "j1"}),
    (WorkerLostMessage, {"worker_name": "w"}),
    (JobCancelMessage, {"job_id": "j1"}),
    (ActivateMessage, {}),
    (DeactivateMessage, {}),
    (EndMessage, {}),
    (CancelMessage, {}),
]
CONTROL = {JobCancelMessage, ActivateMessage, DeactivateMessage, EndMessage, CancelMessage}
ADDRESS = {"source": "alice", "target": "bob"}


EXAMPLES = [pytest.param(c, f, id=f"full-{c.__name__}") for c, f in FULL] + [
    pytest.param(c, f, id=f"minimal-{c.__name__}") for c, f in MINIMAL
]


def data_msg(job_id: str, target: str = "bob") -> JobRequestMessage:
    return JobRequestMessage(source="alice", target=target, job_id=job_id)


def cancel_msg(job_id: str, target: str = "bob") -> JobCancelMessage:
    return JobCancelMessage(source="alice", target=target, job_id=job_id)


def drain(inbox: Inbox) -> list[BusMessage]:
    out: list[BusMessage] = []
    while True:
        try:
            out.append(inbox.receive_nowait())
        except anyio.WouldBlock:
            return out


def test_every_message_type_is_covered() -> None:
    (union, *_) = get_args(Message)
    known = set(get_args(union))
    assert len(known) == 13
    assert [cls for cls, _ in FULL] == [cls for cls, _ in MINIMAL]
    assert len(FULL) == len(known)
    assert {cls for cls, _ in FULL} == known


def test_control_flag() -> None:
    for cls, _ in FULL:
        assert cls.control is (cls in CONTROL), cls.__name__


def test_local_bus_is_a_bus() -> None:
    assert isinstance(LocalBus(), Bus)


# ----------------------------------------------------------------- LocalBus delivery


@pytest.mark.anyio
async def test_local_bus_delivers_only_to_the_addressed_inbox() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        await bus.start()
        bob = bus.subscribe("bob")
        carol = bus.subscribe("carol")
        message = data_msg("j1")
        await bus.send(message)
        assert bob.address == "bob"
        # Passed as the very object: no serialization on the in-process bus.
        assert drain(bob) == [message]
        assert drain(carol) == []

        await bus.send(data_msg("j2", target="carol"))
        assert [m.job_id for m in drain(carol)] == ["j2"]  # type: ignore[attr-defined]
        assert drain(bob) == []
        await bus.stop()


@pytest.mark.anyio
async def test_send_passes_the_object_itself() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        inbox = bus.subscribe("bob")
        message = data_msg("j1")
        await bus.send(message)
        assert await inbox.receive() is message


@pytest.mark.anyio
async def test_control_messages_overtake_queued_data() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        inbox = bus.subscribe("bob")
        await bus.send(data_msg("d1"))
        await bus.send(data_msg("d2"))
        await bus.send(cancel_msg("c1"))
        await bus.send(data_msg("d3"))
        await bus.send(EndMessage(source="runner", target="bob"))

        received = [await inbox.receive() for _ in range(5)]

        assert [type(m).__name__ for m in received] == [
            "JobCancelMessage",
            "EndMessage",
            "JobRequestMessage",
            "JobRequestMessage",
            "JobRequestMessage",
        ]
        assert [getattr(m, "job_id", None) for m in received] == ["c1", None, "d1", "d2", "d3"]
        assert drain(inbox) == []


@pytest.mark.anyio
async def test_every_control_type_overtakes_data() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        inbox = bus.subscribe("bob")
        for cls in (ActivateMessage, DeactivateMessage, EndMessage, CancelMessage):
            await bus.send(data_msg("d"))
            control = cls.build(**ADDRESS)
            await bus.send(control)
            assert await inbox.receive() is control
            assert isinstance(await inbox.receive(), JobRequestMessage)


@pytest.mark.anyio
async def test_fifo_within_each_class() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        inbox = bus.subscribe("bob")
        expected_data, expected_control = [], []
        for i in range(50):
            if i % 3 == 0:
                await bus.send(cancel_msg(f"c{i}"))
                expected_control.append(f"c{i}")
            else:
                await bus.send(data_msg(f"d{i}"))
                expected_data.append(f"d{i}")

        received = [await inbox.receive() for _ in range(50)]

        ids = [m.job_id for m in received]  # type: ignore[attr-defined]
        assert ids == expected_control + expected_data


@pytest.mark.anyio
async def test_control_message_wakes_a_waiting_receiver() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        inbox = bus.subscribe("bob")
        got: list[BusMessage] = []

        async def receiver() -> None:
            got.append(await inbox.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            await bus.send(cancel_msg("c1"))
        assert [type(m) for m in got] == [JobCancelMessage]
        assert drain(inbox) == []


@pytest.mark.anyio
async def test_receive_waits_for_data_too() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        inbox = bus.subscribe("bob")
        got: list[BusMessage] = []

        async def receiver() -> None:
            for _ in range(3):
                got.append(await inbox.receive())

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            for i in range(3):
                await anyio.wait_all_tasks_blocked()
                await bus.send(data_msg(f"d{i}"))
        assert [m.job_id for m in got] == ["d0", "d1", "d2"]  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_send_to_an_unknown_target_is_undeliverable() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        bus.subscribe("bob")
        with pytest.raises(UndeliverableError, match="nobody") as info:
            await bus.send(data_msg("j1", target="nobody"))
        assert info.value.target == "nobody"
        assert isinstance(info.value, LookupError)


@pytest.mark.anyio
async def test_send_after_unsubscribe_is_undeliverable() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        bus.subscribe("bob")
        bus.unsubscribe("bob")
        with pytest.raises(UndeliverableError):
            await bus.send(data_msg("j1"))
        # Unknown addresses are ignored, and the address can be subscribed again.
        bus.unsubscribe("bob")
        bus.unsubscribe("never")
        inbox = bus.subscribe("bob")
        await bus.send(data_msg("j2"))
        assert [m.job_id for m in drain(inbox)] == ["j2"]  # type: ignore[attr-defined]


def test_duplicate_subscribe_is_a_value_error() -> None:
    bus = LocalBus()
    bus.subscribe("bob")
    with pytest.raises(ValueError, match="bob"):
        bus.subscribe("bob")


@pytest.mark.anyio
async def test_unsubscribe_closes_the_inbox_and_ends_a_waiting_receive() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        inbox = bus.subscribe("bob")
        outcome: list[object] = []

        async def receiver() -> None:
            try:
                outcome.append(await inbox.receive())
            except anyio.EndOfStream:
                outcome.append("end of stream")

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.wait_all_tasks_blocked()
            bus.unsubscribe("bob")
        assert outcome == ["end of stream"]
        with pytest.raises(anyio.EndOfStream):
            await inbox.receive()


@pytest.mark.anyio
async def test_stop_closes_every_inbox() -> None:
    with anyio.fail_after(5):
        bus = LocalBus()
        await bus.start()
        inboxes = [bus.subscribe(name) for name in ("a", "b")]
        await bus.stop()
        for inbox in inboxes:
            with pytest.raises(anyio.EndOfStream):
                await inbox.receive()
        with pytest.raises(UndeliverableError):
            await bus.send(data_msg("j", target="a"))


def test_a_stream_sink_takes_items_only_while_its_inbox_would_hand_them_over_directly() -> None:
    bus = LocalBus()
    inbox = bus.subscribe("bob")
    taken: list[tuple[str, Any]] = []
    assert bus.stream_sink("bob", "j1") is None  # the owner offers no sinks
    assert bus.stream_sink("nobody", "j1") is None
    inbox.sinks = lambda job_id: lambda source, data: taken.append((source, data))
    sink = bus.stream_sink("bob", "j1")
    assert sink is not None
    assert sink.put("alice", 1) is True
    inbox.put(data_msg("queued"))  # nothing may overtake it: the items go as messages now
    assert sink.put("alice", 2) is False
    assert [m.job_id for m in drain(inbox)] == ["queued"]  # type: ignore[attr-defined]
    assert sink.put("alice", 3) is True
    bus.unsubscribe("bob")  # closed: a message is refused with UndeliverableError
    assert sink.put("alice", 4) is False
    assert taken == [("alice", 1), ("alice", 3)]
    inbox.sinks = lambda job_id: None  # the owner takes none for this job
    assert inbox.stream_sink("j2") is None


# ----------------------------------------------------------------- messages from the network


@pytest.mark.parametrize(("cls", "fields"), EXAMPLES)
def test_encode_decode_round_trip(cls: type[BusMessage], fields: dict[str, Any]) -> None:
    message = cls(**ADDRESS, **fields)
    raw = encode_message(message)
    assert isinstance(raw, bytes)
    decoded = decode_message(raw)
    assert type(decoded) is cls
    assert decoded == message
    # str works as well as bytes.
    assert decode_message(raw.decode()) == message
    assert json.loads(raw)["type"] == message.type


@pytest.mark.parametrize(("cls", "fields"), EXAMPLES)
def test_build_equals_validated_construction(cls: type[BusMessage], fields: dict[str, Any]) -> None:
    built = cls.build(**ADDRESS, **fields)
    validated = cls(**ADDRESS, **fields)
    assert type(built) is cls
    assert built == validated
    assert built.model_dump() == validated.model_dump()
    assert decode_message(encode_message(built)) == validated


def test_decode_gives_the_right_types_and_values() -> None:
    raw = json.dumps(
        {
            "type": "job_response",
            "source": "w",
            "target": "r",
            "job_id": "j9",
            "status": "error",
            "response": {"error": "boom"},
        }
    )
    message = decode_message(raw)
    assert isinstance(message, JobResponseMessage)
    assert message.status is JobStatus.ERROR
    assert message.response == {"error": "boom"}
    assert message.control is False
    cancel = decode_message(b'{"type": "job_cancel", "source": "a", "target": "b", "job_id": "x"}')
    assert isinstance(cancel, JobCancelMessage)
    assert cancel.control is True


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('{"type": "nope", "source": "a", "target": "b"}', id="unknown type"),
        pytest.param('{"type": "BusMessage", "source": "a", "target": "b"}', id="class name"),
        pytest.param(
            '{"type": "framework.bus.messages.EndMessage", "source": "a", "target": "b"}',
            id="dotted class path",
        ),
        pytest.param('{"source": "a", "target": "b", "job_id": "j"}', id="no type"),
        pytest.param('{"type": "end", "source": "a"', id="malformed json"),
        pytest.param("not json at all", id="not json"),
        pytest.param("", id="empty"),
        pytest.param('["end", "a", "b"]', id="json array"),
        pytest.param('{"type": "job_request", "source": "a", "target": "b"}', id="missing job_id"),
        pytest.param(
            '{"type": "job_request", "source": "a", "target": "b", "job_id": 5}',
            id="job_id not a string",
        ),
        pytest.param(
            '{"type": "job_request", "source": "a", "target": "b", "job_id": "j", "payload": []}',
            id="payload not a dict",
        ),
        pytest.param(
            '{"type": "job_response", "source": "a", "target": "b", "job_id": "j", '
            '"status": "exploded"}',
            id="unknown status",
        ),
        pytest.param(
            '{"type": "end", "source": "a", "target": "b", "grace_period": "soon"}',
            id="grace_period not a number",
        ),
        pytest.param('{"type": "end", "source": 1, "target": "b"}', id="source not a string"),
    ],
)
def test_decode_rejects_bad_input(raw: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        decode_message(raw)
