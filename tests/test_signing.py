"""Signed messages between runners: ``framework.bus.network.signing``."""

from __future__ import annotations

import hmac
import logging
import math
import os
import struct
import tracemalloc
from typing import Any

import pytest
from pydantic import SecretStr

from framework.bus.network import (
    MAX_AGE,
    MAX_AHEAD,
    MIN_SECRET_BYTES,
    Rejection,
    Signer,
    SigningKeys,
    Verified,
    Verifier,
)
from framework.bus.network import signing as signing_module
from framework.bus.network.signing import LOGGED_SENDERS, _Key

SECRET = "correct-horse-battery-staple-1"
OTHER = "another-secret-of-enough-bytes"
BODY = b'{"kind":"msg","origin":"one","message":{"type":"job_request"}}'
NOW = 1_800_000_000.0
TO = "ns:runner:two"
"""Where the messages of these tests are sent (a channel's name, say)."""


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pair(
    sign_with: str | list[str] = SECRET,
    verify_with: str | list[str] = SECRET,
    *,
    sender: str = "one",
    **options: object,
) -> tuple[Signer, Verifier, Clock]:
    clock = Clock()
    signer = Signer(sender, SigningKeys(sign_with), clock=clock)
    verifier = Verifier(SigningKeys(verify_with), name="two", clock=clock, **options)  # type: ignore[arg-type]
    return signer, verifier, clock


def only(verifier: Verifier) -> dict[Rejection, int]:
    """The reasons counted at least once."""
    return {reason: n for reason, n in verifier.rejections.items() if n}


def count_macs(verifier: Verifier, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item list that counts the MACs ``verifier`` computes, with any of its keys:
    each begins with the key's inner state for the destination (``_Key.inner_to``)."""
    macs = [0]
    monkeypatch.setattr(verifier, "_to", {})  # no state kept: each MAC asks for one
    inner_to = _Key.inner_to

    def counted(key: _Key, destination: str) -> Any:
        macs[0] += 1
        return inner_to(key, destination)

    monkeypatch.setattr(_Key, "inner_to", counted)
    return macs


def test_a_signed_message_verifies_with_its_sender_body_and_time() -> None:
    signer, verifier, _ = pair()
    verified = verifier.verify(signer.sign(BODY, TO), TO)
    assert verified == Verified("one", BODY, NOW)
    assert (verified.sender, verified.body, verified.sent_at) == ("one", BODY, NOW)
    assert only(verifier) == {}


def test_the_mac_is_hmac_sha256_of_the_destination_and_the_data() -> None:
    for size in (0, 1, 55, 56, 63, 64, 65, 1000, 100_000):
        key = os.urandom(32)
        data = os.urandom(size)
        assert _Key(key).mac(data) == hmac.digest(key, data, "sha256")
        for to in ("", TO, "é" * 40):
            addressed = len(to.encode()).to_bytes(2, "big") + to.encode()
            assert _Key(key).mac(data, to) == hmac.digest(key, addressed + data, "sha256")


def test_a_message_read_at_another_destination_is_rejected() -> None:
    signer, verifier, _ = pair()
    signed = signer.sign(BODY, "ns:runner:one")
    assert verifier.verify(signed, "ns:runner:three") is None  # copied to another runner
    assert verifier.authenticate(signed, "ns:worker:echo") is None  # or into a stream
    assert verifier.verify(signed, "ns:runner:one") == Verified("one", BODY, NOW)
    assert only(verifier) == {Rejection.BAD_SIGNATURE: 2}


@pytest.mark.parametrize("to", ["x" * 70_000, "\ud800"])
def test_a_destination_that_cannot_be_signed_for_is_refused_every_time(to: str) -> None:
    signer, verifier, _ = pair()
    for _ in range(2):
        with pytest.raises((ValueError, UnicodeEncodeError)):
            signer.sign(BODY, to)
        with pytest.raises((ValueError, UnicodeEncodeError)):
            verifier.verify(signer.sign(BODY, TO), to)


def test_every_destination_keeps_its_own_state_and_the_states_stay_bounded() -> None:
    signer, verifier, _ = pair()
    for n in range(signing_module._DESTINATIONS * 2 + 5):
        to = f"ns:runner:{n}"
        assert verifier.verify(signer.sign(BODY, to), to) is not None
    assert len(verifier._key.to) <= signing_module._DESTINATIONS


def test_the_header_is_the_documented_layout() -> None:
    signer, _, _ = pair(sender="runner-é")
    signed = signer.sign(BODY, TO)
    name = "runner-é".encode()
    version, mac, stamp, nonce, size = struct.unpack_from(">B32sQ16sH", signed)
    assert (version, stamp, size) == (1, int(NOW * 1000), len(name))
    assert signed[59 : 59 + size] == name
    assert signed[59 + size :] == BODY
    key = _Key(signing_module._derive(SECRET.encode()))
    assert mac == key.mac(signed[33:], TO)
    assert signer.sign(BODY, TO)[41:57] != nonce


@pytest.mark.parametrize("where", [0, 10, len(BODY) - 1])
def test_a_tampered_body_is_rejected(where: int) -> None:
    signer, verifier, _ = pair()
    signed = bytearray(signer.sign(BODY, TO))
    signed[-len(BODY) + where] ^= 0x01
    assert verifier.verify(bytes(signed), TO) is None
    assert only(verifier) == {Rejection.BAD_SIGNATURE: 1}


def test_a_body_moved_under_another_header_or_cut_short_is_rejected() -> None:
    signer, verifier, _ = pair()
    first, second = signer.sign(BODY, TO), signer.sign(b'{"other":1}', TO)
    spliced = first[:62] + second[62:]  # first's header, second's body
    assert verifier.verify(spliced, TO) is None
    assert verifier.verify(first[:-1], TO) is None
    assert verifier.verify(first + b" ", TO) is None
    assert only(verifier) == {Rejection.BAD_SIGNATURE: 3}


@pytest.mark.parametrize(
    ("offset", "field"),
    [(1, "mac"), (32, "mac"), (33, "timestamp"), (40, "timestamp"), (41, "nonce"), (56, "nonce")],
)
def test_a_tampered_header_is_rejected(offset: int, field: str) -> None:
    signer, verifier, _ = pair()
    signed = bytearray(signer.sign(BODY, TO))
    signed[offset] ^= 0x01
    assert verifier.verify(bytes(signed), TO) is None, field
    assert only(verifier) == {Rejection.BAD_SIGNATURE: 1}


def test_a_forged_sender_name_is_rejected() -> None:
    signer, verifier, _ = pair(sender="one")
    signed = signer.sign(BODY, TO)
    assert verifier.verify(signed[:59] + b"two" + signed[62:], TO) is None
    assert only(verifier) == {Rejection.BAD_SIGNATURE: 1}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\x02" + bytes(100),  # another version
        b"\x01" + bytes(58),  # a name of 0 bytes
        b"\x01" + bytes(56) + b"\x04\x01" + b"x" * 2000,  # a name over MAX_SENDER_BYTES
        b"\x01" + bytes(56) + b"\x00\x10" + b"short",  # a name longer than the data
    ],
)
def test_malformed_data_is_rejected_before_any_mac(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, verifier, _ = pair()
    macs = count_macs(verifier, monkeypatch)
    assert verifier.verify(data, TO) is None
    assert only(verifier) == {Rejection.MALFORMED: 1}
    assert macs == [0]


def test_a_signed_message_with_another_version_byte_is_malformed() -> None:
    signer, verifier, _ = pair()
    signed = signer.sign(BODY, TO)
    assert verifier.verify(b"\x02" + signed[1:], TO) is None  # the MAC does not cover byte 0
    assert only(verifier) == {Rejection.MALFORMED: 1}


@pytest.mark.parametrize("keys", [[SECRET], [SECRET, OTHER + "-2"]])
def test_a_forged_message_costs_one_mac_per_key(
    keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, verifier, _ = pair(verify_with=keys)
    forged = Signer("x", SigningKeys(OTHER)).sign(BODY, TO)
    macs = count_macs(verifier, monkeypatch)
    assert verifier.verify(forged, TO) is None
    assert macs == [len(keys)]
    assert only(verifier) == {Rejection.BAD_SIGNATURE: 1}


def test_plain_json_is_rejected_as_unsigned() -> None:
    _, verifier, _ = pair()
    assert verifier.verify(BODY, TO) is None
    assert verifier.verify(b"{}", TO) is None
    assert only(verifier) == {Rejection.UNSIGNED: 2}


def test_a_message_signed_with_another_secret_is_rejected() -> None:
    signer, verifier, _ = pair(sign_with=OTHER, verify_with=SECRET)
    assert verifier.verify(signer.sign(BODY, TO), TO) is None
    assert only(verifier) == {Rejection.BAD_SIGNATURE: 1}


def test_rotation_the_first_secret_signs_and_any_verifies() -> None:
    old, new = SECRET, OTHER
    # Step 1: [old, new] everywhere signs with old; runners with only [old] still accept.
    signer, verifier, _ = pair(sign_with=[old, new], verify_with=[old])
    assert verifier.verify(signer.sign(BODY, TO), TO) is not None
    # Step 2: [new, old] signs with new; runners still on [old, new] accept it.
    signer, verifier, _ = pair(sign_with=[new, old], verify_with=[old, new])
    assert verifier.verify(signer.sign(BODY, TO), TO) is not None
    # ... and so do runners on [new] (step 3), while [old] alone does not.
    signer, verifier, _ = pair(sign_with=[new, old], verify_with=[new])
    assert verifier.verify(signer.sign(BODY, TO), TO) is not None
    signer, verifier, _ = pair(sign_with=[new, old], verify_with=[old])
    assert verifier.verify(signer.sign(BODY, TO), TO) is None


def test_a_stale_message_is_rejected() -> None:
    signer, verifier, clock = pair()
    signed = signer.sign(BODY, TO)
    clock.now = NOW + MAX_AGE - 0.5
    assert verifier.verify(signed, TO) is not None
    later = signer.sign(BODY, TO)
    clock.now += MAX_AGE + 1
    assert verifier.verify(later, TO) is None
    assert only(verifier) == {Rejection.STALE: 1}


def test_a_message_from_the_future_is_rejected() -> None:
    signer, verifier, clock = pair()
    clock.now = NOW + MAX_AHEAD + 1
    ahead = signer.sign(BODY, TO)
    clock.now = NOW + MAX_AHEAD - 0.5
    near = signer.sign(BODY, TO)
    clock.now = NOW
    assert verifier.verify(ahead, TO) is None
    assert verifier.verify(near, TO) is not None
    assert only(verifier) == {Rejection.FUTURE: 1}


def test_a_replayed_message_is_rejected() -> None:
    signer, verifier, clock = pair()
    signed = signer.sign(BODY, TO)
    assert verifier.verify(signed, TO) is not None
    assert verifier.verify(signed, TO) is None
    clock.now += MAX_AGE / 2
    assert verifier.verify(signed, TO) is None
    assert verifier.verify(signer.sign(BODY, TO), TO) is not None  # a new nonce: fine
    assert only(verifier) == {Rejection.REPLAYED: 2}


def test_authenticate_checks_the_signature_only() -> None:
    signer, verifier, clock = pair()
    signed = signer.sign(BODY, TO)
    clock.now += 3600
    assert verifier.authenticate(signed, TO) == Verified("one", BODY, NOW)
    assert verifier.authenticate(signed, TO) is not None
    assert verifier.remembered == 0
    tampered = signed[:-1] + b"!"
    assert verifier.authenticate(tampered, TO) is None
    assert only(verifier) == {Rejection.BAD_SIGNATURE: 1}


def test_forged_messages_never_enter_the_replay_cache_nor_grow_memory() -> None:
    _, verifier, _ = pair()
    forger = Signer("x", SigningKeys(OTHER))
    verifier.verify(forger.sign(BODY, TO), TO)  # the first one logs: that may allocate
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(20_000):
            signed = forger.sign(BODY, TO)
            verifier.verify(signed[:59] + b"%05d" % n + signed[60:], TO)  # distinct names too
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert verifier.remembered == 0
    assert verifier.rejections[Rejection.BAD_SIGNATURE] == 20_001
    assert grown < 200_000  # the log-once set holds at most LOGGED_SENDERS names


def test_a_replay_from_the_previous_generation_is_caught() -> None:
    signer, verifier, _ = pair(replay_cache=4)  # generations of 2 nonces
    first = signer.sign(BODY, TO)
    assert verifier.verify(first, TO) is not None
    assert verifier.verify(signer.sign(BODY, TO), TO) is not None
    assert verifier.verify(signer.sign(BODY, TO), TO) is not None  # a new generation: first is old
    assert verifier.verify(first, TO) is None  # the new one holds 1 nonce: no turnover now
    assert only(verifier) == {Rejection.REPLAYED: 1}


def test_sent_at_is_the_senders_time() -> None:
    signer, verifier, clock = pair()
    signed = signer.sign(BODY, TO)
    clock.now += 5
    assert verifier.verify(signed, TO) == Verified("one", BODY, NOW)


def test_a_message_exactly_at_either_age_limit_is_accepted() -> None:
    signer, verifier, clock = pair()
    at_limit = signer.sign(BODY, TO)
    clock.now -= 0.001
    beyond = signer.sign(BODY, TO)
    clock.now = NOW + MAX_AGE
    assert verifier.verify(at_limit, TO) is not None
    assert verifier.verify(beyond, TO) is None
    clock.now = NOW + MAX_AHEAD
    at_limit = signer.sign(BODY, TO)
    clock.now += 0.001
    beyond = signer.sign(BODY, TO)
    clock.now = NOW
    assert verifier.verify(at_limit, TO) is not None
    assert verifier.verify(beyond, TO) is None
    assert only(verifier) == {Rejection.STALE: 1, Rejection.FUTURE: 1}


@pytest.mark.parametrize(
    "limits",
    [
        {"max_age": 0},
        {"max_age": math.nan},
        {"max_age": math.inf},
        {"max_ahead": -1},
        {"max_ahead": math.nan},
        {"replay_cache": 1},
    ],
)
def test_limits_that_would_let_anything_through_are_refused(limits: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="max_age must be > 0"):
        Verifier(SigningKeys(SECRET), **limits)  # type: ignore[arg-type]


def test_a_replay_is_caught_as_the_replay_cache_starts_a_new_generation() -> None:
    # The cache starts a new generation when the current one is older than MAX_AGE +
    # MAX_AHEAD; a replay that arrives just then is still in the old one.
    signer, verifier, clock = pair()
    clock.now += MAX_AGE + MAX_AHEAD - 10
    signed = signer.sign(BODY, TO)
    assert verifier.verify(signed, TO) is not None
    clock.now += 20  # the generation is over; the message is 20 s old, still on time
    assert verifier.verify(signed, TO) is None
    assert only(verifier) == {Rejection.REPLAYED: 1}
    assert verifier.verify(signer.sign(BODY, TO), TO) is not None


def test_a_signed_sender_name_that_is_not_utf8_is_malformed() -> None:
    _, verifier, _ = pair()
    name = b"\xff\xfe"
    signed = struct.pack(">Q16sH", int(NOW * 1000), os.urandom(16), len(name)) + name + BODY
    mac = _Key(signing_module._derive(SECRET.encode())).mac(signed, TO)
    assert verifier.verify(b"\x01" + mac + signed, TO) is None
    assert verifier.authenticate(b"\x01" + mac + signed, TO) is None
    assert only(verifier) == {Rejection.MALFORMED: 2}


def test_the_replay_cache_stays_bounded_and_still_catches_every_replay() -> None:
    signer, verifier, clock = pair(replay_cache=100)
    sent = []
    for _ in range(1_000):
        clock.now += 0.001
        signed = signer.sign(BODY, TO)
        sent.append(signed)
        assert verifier.verify(signed, TO) is not None
        assert verifier.remembered <= 100
    # Every earlier message is refused again: recent ones from the cache, older ones
    # because they are no newer than the newest nonce the cache forgot.
    for signed in sent:
        assert verifier.verify(signed, TO) is None
    counted = only(verifier)
    assert sum(counted.values()) == 1_000
    assert counted[Rejection.REPLAYED] >= 50
    assert set(counted) == {Rejection.REPLAYED, Rejection.STALE}


def test_at_a_low_rate_the_replay_cache_forgets_only_stale_nonces() -> None:
    signer, verifier, clock = pair(replay_cache=100)
    # Below 100 nonces per window (max_age + max_ahead): an hour, 2 messages per 6 s.
    for _ in range(600):
        clock.now += 6
        late = signer.sign(BODY, TO)  # sent now, delivered 50 s later, after a newer one
        clock.now += 50
        assert verifier.verify(signer.sign(BODY, TO), TO) is not None
        assert verifier.verify(late, TO) is not None
        clock.now -= 50
    assert only(verifier) == {}
    assert verifier.remembered <= 100


def test_each_sender_is_logged_once_and_every_rejection_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "framework.bus.network")
    _, verifier, _ = pair()
    forged = {name: Signer(name, SigningKeys(OTHER)) for name in ("mallory", "eve")}
    for _ in range(3):
        for signer in forged.values():
            verifier.verify(signer.sign(BODY, TO), TO)
    verifier.verify(b"{}", TO)
    verifier.verify(b"{}", TO)
    verifier.verify(b"\x07", TO)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 4, lines
    assert lines[0].startswith("two: rejected a message from runner 'mallory': bad signature")
    assert "give every runner the same bus_secret" in lines[0]
    assert "runner 'eve'" in lines[1]
    assert "unknown sender: unsigned" in lines[2]
    assert "unknown sender: malformed" in lines[3]
    assert verifier.rejections == {
        Rejection.MALFORMED: 1,
        Rejection.UNSIGNED: 2,
        Rejection.BAD_SIGNATURE: 6,
        Rejection.STALE: 0,
        Rejection.FUTURE: 0,
        Rejection.REPLAYED: 0,
    }


def test_a_sender_name_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "framework.bus.network")
    _, verifier, _ = pair()
    name = "x\nERROR framework: forged\r\x1b[31m\u2028" + "y" * 900
    verifier.verify(Signer(name, SigningKeys(OTHER)).sign(BODY, TO), TO)
    (line,) = [record.getMessage() for record in caplog.records]
    assert line.isprintable()
    assert "\\nERROR framework: forged\\r\\x1b[31m\\u2028" in line
    assert len(line) < 700  # the name is cut short
    assert f"({len(name)} characters)" in line


def test_the_number_of_senders_logged_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "framework.bus.network")
    _, verifier, _ = pair()
    forger = Signer("x", SigningKeys(OTHER))
    for n in range(LOGGED_SENDERS + 50):
        signed = forger.sign(BODY, TO)
        verifier.verify(signed[:57] + b"\x00\x05" + b"%05d" % n + signed[60:], TO)
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == LOGGED_SENDERS + 1
    assert "more than 1000 senders" in lines[-1]


def test_secrets_are_checked_and_never_shown() -> None:
    keys = SigningKeys([SECRET, SecretStr(OTHER), OTHER.encode()])
    assert len(keys) == 3
    for text in (repr(keys), str(keys)):
        assert text == "SigningKeys(<3 secret(s), hidden>)"
    assert not any(
        SECRET in str(getattr(keys, slot, "")) for slot in ("__dict__", "_keys", "_secrets")
    )
    short = "tiny-secret"
    with pytest.raises(ValueError, match="bus secret 2 of 2: the secret is 11 bytes") as info:
        SigningKeys([SECRET, short])
    assert short not in str(info.value)
    assert f"{MIN_SECRET_BYTES} required" in str(info.value)
    assert "secrets.token_urlsafe" in str(info.value)
    with pytest.raises(ValueError, match="bus secret: the secret is empty"):
        SigningKeys("")
    with pytest.raises(ValueError, match="no bus secret given"):
        SigningKeys([])
    with pytest.raises(TypeError, match="must be a string, not int"):
        SigningKeys([SECRET, 12345678901234567890])  # type: ignore[list-item]


def test_a_sender_name_too_long_to_sign_is_refused() -> None:
    keys = SigningKeys(SECRET)
    Signer("é" * 512, keys)  # 1024 bytes: fine
    with pytest.raises(ValueError, match="1 to 1024 bytes; this runner's name takes 1026"):
        Signer("é" * 513, keys)
    with pytest.raises(ValueError, match="takes 0"):
        Signer("", keys)


def test_verifier_options_are_checked() -> None:
    keys = SigningKeys(SECRET)
    for bad in ({"max_age": 0}, {"max_ahead": -1}, {"replay_cache": 1}):
        with pytest.raises(ValueError, match="max_age must be > 0"):
            Verifier(keys, **bad)  # type: ignore[arg-type]
