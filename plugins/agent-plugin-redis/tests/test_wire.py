"""The envelope format: what a runner accepts from Redis, and what it sends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agent_plugin_redis._wire import (
    Bye,
    Heartbeat,
    Routed,
    RoutedEncoder,
    WireError,
    decode,
    encode,
)

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
    WorkerLostMessage,
)
from framework.types import JobStatus

LIMIT = 64 * 1024


def _raw(envelope: dict[str, Any]) -> bytes:
    return json.dumps(envelope).encode()


def _routed(message: dict[str, Any]) -> bytes:
    return _raw({"kind": "msg", "origin": "runner-a", "message": message})


EVERY_MESSAGE: list[BusMessage] = [
    JobRequestMessage.build(
        source="a", target="b", job_id="j1", name="echo", payload={"text": "hi", "n": [1, 2]}
    ),
    JobRequestMessage.build(source="a", target="b", job_id="j1b"),
    JobResponseMessage.build(
        source="b", target="a", job_id="j2", status=JobStatus.COMPLETED, response={"ok": True}
    ),
    JobResponseMessage.build(
        source="b", target="a", job_id="j2e", status=JobStatus.ERROR, response={"error": "boom"}
    ),
    JobUpdateMessage.build(source="b", target="a", job_id="j3", data={"progress": 0.5}),
    JobStreamStartMessage.build(source="b", target="a", job_id="j4"),
    JobStreamDataMessage.build(source="b", target="a", job_id="j4", data="tok"),
    JobStreamDataMessage.build(source="b", target="a", job_id="j4", data={"x": [1, None]}),
    JobStreamEndMessage.build(source="b", target="a", job_id="j4"),
    JobUpdateRequestMessage.build(source="a", target="b", job_id="j5"),
    WorkerLostMessage.build(source="b", target="a", worker_name="b", reason="gone"),
    JobCancelMessage.build(source="a", target="b", job_id="j6", reason="enough"),
    ActivateMessage.build(source="a", target="b", args={"k": "v"}),
    ActivateMessage.build(source="a", target="b", args=None),
    DeactivateMessage.build(source="a", target="b"),
    EndMessage.build(source="a", target="b", reason="bye", grace_period=1.5),
    CancelMessage.build(source="a", target="b", reason="now"),
]


def test_every_message_type_is_covered() -> None:
    from framework.bus.messages import Message

    union = Message.__origin__  # type: ignore[attr-defined]
    kinds = set(union.__args__)
    assert {type(m) for m in EVERY_MESSAGE} == kinds


@pytest.mark.parametrize("message", EVERY_MESSAGE, ids=lambda m: m.type)
def test_routed_round_trip(message: BusMessage) -> None:
    raw = RoutedEncoder("runner-a").encode(message)
    envelope = decode(raw, LIMIT)
    assert type(envelope) is Routed
    assert envelope.origin == "runner-a"
    assert type(envelope.message) is type(message)
    assert envelope.message.model_dump() == message.model_dump()
    # What the encoder builds by hand is what pydantic would build.
    assert json.loads(raw) == json.loads(
        Routed(origin="runner-a", message=message).model_dump_json()  # type: ignore[arg-type]
    )


def test_encoder_quotes_an_odd_origin() -> None:
    origin = 'we"ird\\name ü'
    raw = RoutedEncoder(origin).encode(
        JobStreamStartMessage.build(source="a", target="b", job_id="j")
    )
    envelope = decode(raw, LIMIT)
    assert isinstance(envelope, Routed) and envelope.origin == origin


def test_heartbeat_and_bye_round_trip() -> None:
    beat = Heartbeat(
        runner="r1", instance="i1", interval=0.5, misses=3, workers=["a", "b"], hello=True
    )
    assert decode(encode(beat), LIMIT) == beat
    bye = Bye(runner="r1", instance="i1")
    assert decode(encode(bye), LIMIT) == bye


def test_size_limit_is_checked_before_parsing() -> None:
    message = JobRequestMessage.build(source="a", target="b", job_id="j", payload={"x": "y" * 500})
    raw = RoutedEncoder("r").encode(message)
    assert isinstance(decode(raw, len(raw)), Routed)  # exactly at the limit: fine
    with pytest.raises(WireError, match=rf"{len(raw)} bytes, over the {len(raw) - 1}-byte limit"):
        decode(raw, len(raw) - 1)
    # Garbage over the limit is refused for its size, not parsed at all.
    with pytest.raises(WireError, match=r"over the 100-byte limit \(max_message_size\)"):
        decode(b"\xff" * 101, 100)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param(b"not json", "Invalid JSON", id="not-json"),
        pytest.param(b"\xff\xfe\x00", "Invalid JSON", id="binary"),
        pytest.param(b"", "Invalid JSON", id="empty"),
        pytest.param(b"[1, 2]", "Input should be an object", id="array"),
        pytest.param(b"{}", "Unable to extract tag using discriminator 'kind'", id="no-kind"),
        pytest.param(
            _raw({"kind": "pickle", "runner": "a"}),
            "Input tag 'pickle' found using 'kind' does not match",
            id="unknown-kind",
        ),
        pytest.param(
            _routed({"type": "exec", "source": "a", "target": "b"}),
            "msg.message: Input tag 'exec' found using 'type' does not match",
            id="unknown-message-type",
        ),
        pytest.param(
            _raw({"kind": "bye", "runner": "a", "instance": "i", "extra": 1}),
            "bye.extra: Extra inputs are not permitted",
            id="extra-envelope-field",
        ),
        pytest.param(
            _routed({"type": "job_cancel", "source": "a", "target": "b", "job_id": "j", "evil": 1}),
            "msg.message.job_cancel.evil: Extra inputs are not permitted",
            id="extra-message-field",
        ),
        pytest.param(
            _raw({"kind": "bye", "runner": "a"}),
            "bye.instance: Field required",
            id="missing-envelope-field",
        ),
        pytest.param(
            _routed({"type": "job_request", "source": "a", "target": "b"}),
            "msg.message.job_request.job_id: Field required",
            id="missing-message-field",
        ),
        pytest.param(
            _raw({"kind": "msg", "message": {"type": "deactivate", "source": "a", "target": "b"}}),
            "msg.origin: Field required",
            id="missing-origin",
        ),
        pytest.param(
            _raw(
                {
                    "kind": "hb",
                    "runner": "a",
                    "instance": "i",
                    "interval": 0,
                    "misses": 3,
                    "workers": [],
                }
            ),
            "hb.interval: Input should be greater than 0",
            id="bad-interval",
        ),
        pytest.param(
            _raw({"kind": "bye", "runner": "", "instance": "i"}),
            "bye.runner: String should have at least 1 character",
            id="empty-name",
        ),
        pytest.param(
            _routed(
                {
                    "type": "job_response",
                    "source": "b",
                    "target": "a",
                    "job_id": "j",
                    "status": "exploded",
                }
            ),
            "msg.message.job_response.status",
            id="bad-status",
        ),
    ],
)
def test_decode_rejects_with_a_reason(raw: bytes, why: str) -> None:
    with pytest.raises(WireError) as caught:
        decode(raw, LIMIT)
    text = str(caught.value)
    assert text.startswith("not a valid envelope (")
    assert why in text


def test_wire_error_is_a_value_error() -> None:
    assert issubclass(WireError, ValueError)
