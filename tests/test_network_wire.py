"""The wire envelope: what a runner accepts from another, and what it sends."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
from framework.bus.network.wire import (
    Bye,
    Described,
    Heartbeat,
    Routed,
    RoutedEncoder,
    WireError,
    decode_envelope,
    encode_description,
    encode_envelope,
    request_head,
)
from framework.types import JobDescription, JobStatus

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
    raw = RoutedEncoder("runner-a").encode(message, "ns:runner:b")
    envelope = decode_envelope(raw, LIMIT)
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
        JobStreamStartMessage.build(source="a", target="b", job_id="j"), "ns:runner:b"
    )
    envelope = decode_envelope(raw, LIMIT)
    assert isinstance(envelope, Routed) and envelope.origin == origin


def test_heartbeat_and_bye_round_trip() -> None:
    beat = Heartbeat(
        runner="r1", instance="i1", interval=0.5, misses=3, workers=["a", "b"], hello=True
    )
    assert decode_envelope(encode_envelope(beat), LIMIT) == beat
    bye = Bye(runner="r1", instance="i1")
    assert decode_envelope(encode_envelope(bye), LIMIT) == bye


def test_description_round_trip() -> None:
    described = Described(
        runner="r1",
        instance="i1",
        worker="reverse",
        jobs=[
            JobDescription(
                description="Reverse the text.",
                input_schema={"type": "object", "properties": {"text": {"type": "string"}}},
            ),
            JobDescription(name="count", streaming=True),
        ],
    )
    assert decode_envelope(encode_envelope(described), LIMIT) == described
    assert (
        decode_envelope(
            encode_envelope(Described(runner="r", instance="i", worker="w")), LIMIT
        ).jobs
        == []
    )


def test_a_description_that_json_cannot_carry_is_refused_when_encoded() -> None:
    odd = Described(
        runner="r", instance="i", worker="w", jobs=[JobDescription(input_schema={"x": object()})]
    )
    with pytest.raises(WireError, match="a desc that JSON cannot carry"):
        encode_envelope(odd)
    raw, problem = encode_description(odd, LIMIT)
    assert problem.startswith("is a desc that JSON cannot carry")
    assert decode_envelope(raw, LIMIT) == Described(runner="r", instance="i", worker="w")


def test_a_description_over_the_limit_is_encoded_empty() -> None:
    described = Described(
        runner="r", instance="i", worker="w", jobs=[JobDescription(description="x" * 2000)]
    )
    raw, problem = encode_description(described, 4096)
    assert problem == ""
    assert decode_envelope(raw, LIMIT) == described
    raw, problem = encode_description(described, 1024)
    assert (
        problem
        == f"takes {len(encode_envelope(described))} bytes, over the 1024-byte limit "
        + ("(max_message_size)")
    )
    assert decode_envelope(raw, 1024) == Described(runner="r", instance="i", worker="w")


def test_a_job_request_the_reader_would_refuse_is_refused_when_encoded() -> None:
    """Built without validation (``build``), a request may hold a header that is not a
    str; the reader would drop it, so the sender refuses it, naming the field."""
    encoder = RoutedEncoder("r")
    odd = JobRequestMessage.build(source="a", target="b", job_id="j", headers={"retries": 3})
    with pytest.raises(
        WireError, match=r"refuse \(1 error\(s\); first: job_request\.headers\.retries"
    ):
        encoder.encode(odd, "ns:runner:b")
    lone = JobRequestMessage.build(source="a", target="b", job_id="j", headers={"x": "\ud800"})
    with pytest.raises(WireError, match=r"a job_request that JSON cannot carry .*surrogates"):
        encoder.encode(lone, "ns:runner:b")
    bad = JobResponseMessage.build(
        source="b", target="a", job_id="j", status=JobStatus.COMPLETED, response={"x": object()}
    )
    with pytest.raises(WireError, match="a job_response that JSON cannot carry"):
        encoder.encode(bad, "ns:runner:a")


def test_request_head_finds_who_to_answer_in_a_request_that_failed_to_decode() -> None:
    request = {"type": "job_request", "source": "asker", "target": "w", "job_id": "j1"}
    refused = _routed({**request, "headers": {"retries": 3}})
    with pytest.raises(WireError):
        decode_envelope(refused, LIMIT)
    assert request_head(refused) == ("runner-a", "j1", "asker", "w")
    assert request_head(_routed({**request, "type": "job_cancel"})) is None
    assert request_head(_raw({"kind": "msg", "message": request})) is None  # no origin
    assert request_head(b"not json") is None


def test_size_limit_is_checked_before_parsing() -> None:
    message = JobRequestMessage.build(source="a", target="b", job_id="j", payload={"x": "y" * 500})
    raw = RoutedEncoder("r").encode(message, "ns:runner:b")
    assert isinstance(decode_envelope(raw, len(raw)), Routed)  # exactly at the limit: fine
    with pytest.raises(WireError, match=rf"{len(raw)} bytes, over the {len(raw) - 1}-byte limit"):
        decode_envelope(raw, len(raw) - 1)
    # Garbage over the limit is refused for its size, not parsed at all.
    with pytest.raises(WireError, match=r"over the 100-byte limit \(max_message_size\)"):
        decode_envelope(b"\xff" * 101, 100)


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
            _raw({"kind": "desc", "runner": "a", "instance": "i", "worker": "w", "jobs": "all"}),
            "desc.jobs: Input should be a valid array",
            id="description-not-a-list",
        ),
        pytest.param(
            _raw(
                {
                    "kind": "desc",
                    "runner": "a",
                    "instance": "i",
                    "worker": "w",
                    "jobs": [{"name": None, "input_schema": "any"}],
                }
            ),
            "desc.jobs.0.input_schema: Input should be an object",
            id="description-bad-schema",
        ),
        pytest.param(
            _raw({"kind": "desc", "runner": "a", "instance": "i", "jobs": []}),
            "desc.worker: Field required",
            id="description-of-no-worker",
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
        decode_envelope(raw, LIMIT)
    text = str(caught.value)
    assert text.startswith("not a valid envelope (")
    assert why in text


def test_wire_error_is_a_value_error() -> None:
    assert issubclass(WireError, ValueError)
