"""Signed messages between runners: who sent a message, when, and that nobody altered or
replayed it.

With a shared secret, a network bus passes every message it sends through a ``Signer``
and everything it receives through a ``Verifier`` before it parses anything. A signed
message is the message's own bytes (the body, whatever the bus encodes) behind a fixed
header::

    offset  size  field
    0       1     version (1)
    1       32    HMAC-SHA256 of the destination (below), then everything from offset 33
                  to the end
    33      8     timestamp: milliseconds since the Unix epoch, unsigned big-endian
    41      16    nonce: unique per message (8 random bytes per signer, then a counter)
    57      2     n: the length of the sender's name in bytes, unsigned big-endian
    59      n     the sender's runner name, UTF-8
    59 + n        the body

The MAC covers the timestamp, the nonce, the sender's name and the body, so the header
says who sent the body and when, and cannot be moved to another body. It also covers the
message's destination, which the message does not carry: the name of the channel, stream
or queue the bus sends it to, as 2 bytes of length (unsigned big-endian) and the name in
UTF-8 before the signed fields. The receiver gives the name of where it read the message,
so a message copied to another destination (another runner's channel, say, where another
verifier has not seen it yet) does not verify there. The HMAC key is
derived from each secret for this use alone (``_derive``), so a secret shared with
something else signs nothing that could pass there, and a version-2 layout would get keys
of its own.

A verifier rejects a message that is not signed, fails verification, was sent more than
``max_age`` seconds ago or more than ``max_ahead`` seconds in the future by its own clock,
or was accepted before (its nonce is in the replay cache). Only messages that verify enter
the cache, so forged messages cannot grow it, and the cache is bounded however much
authentic traffic arrives: when it must forget nonces before they are stale, it also
rejects every message no newer than the newest one it forgot, so a replay can never slip
through a full cache. Each rejection is counted by reason, and the first one from each
sender is logged (a bounded number of senders, names escaped).

A copy sent again to the same destination is what the replay cache catches; a
destination that keeps messages for several readers (a stream) is checked with
``authenticate``, which remembers nothing: the bus judges repeats there itself.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import struct
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from hmac import compare_digest
from typing import Any, NamedTuple

from pydantic import SecretStr

logger = logging.getLogger("framework.bus.network")

VERSION = 1
"""The layout above; a message with another first byte is rejected as malformed."""
MIN_SECRET_BYTES = 16
"""The shortest secret accepted (in bytes, UTF-8 for a string): shorter ones can be guessed."""
MAX_AGE = 60.0
"""Seconds after which a message is stale (by the receiver's clock)."""
MAX_AHEAD = 60.0
"""Seconds a message's timestamp may be ahead of the receiver's clock (clocks disagree)."""
REPLAY_CACHE = 100_000
"""Nonces a verifier remembers at most (about 10 MB when full)."""
MAX_SENDER_BYTES = 1024
"""The longest sender name a signed message carries (256 characters of any script)."""
LOGGED_SENDERS = 1000
"""Senders whose first rejection a verifier logs; after that, rejections are only counted."""

_HEAD = struct.Struct(">B32sQ16sH")  # version, MAC, timestamp, nonce, name length
_MAC_END = 33
_NAME_START = _HEAD.size
_BLOCK = 64  # SHA-256's block size, for HMAC's pads
_INNER_PAD = bytes(x ^ 0x36 for x in range(256))
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))
_PURPOSE = b"agent-plugin-framework network bus signing, layout 1"
_DESTINATIONS = 1024
"""Destinations whose inner state a key keeps (see ``_Key.inner_to``)."""

Secret = str | bytes | SecretStr
"""One shared secret: text (encoded as UTF-8), bytes, or a pydantic ``SecretStr``."""


class Rejection(StrEnum):
    """Why a verifier refused a message (the keys of ``Verifier.rejections``)."""

    MALFORMED = "malformed"
    """Too short, of an unknown layout version, or with a broken header."""
    UNSIGNED = "unsigned"
    """Plain JSON: the sender has no secret configured."""
    BAD_SIGNATURE = "bad signature"
    """Signed with a secret this runner does not have, or altered on the way."""
    STALE = "stale"
    """Sent longer ago than the verifier accepts (or older than its replay cache reaches)."""
    FUTURE = "future"
    """Timestamped too far ahead of the verifier's clock."""
    REPLAYED = "replayed"
    """Accepted once already: the same nonce came again."""


class Verified(NamedTuple):
    """A message that passed verification."""

    sender: str
    """The runner name the sender signed: compare it with any name the body claims."""
    body: bytes
    """The message's own bytes, for the bus to parse."""
    sent_at: float
    """When it was signed: seconds since the Unix epoch, by the sender's clock."""


# Builds a Verified without NamedTuple's generated __new__, which costs twice as much.
_verified = tuple.__new__


_HOW = "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def secret_problem(secret: object) -> str | None:
    """Why ``secret`` cannot sign (the text never includes the secret), or None when it can."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if isinstance(secret, str):
        secret = secret.encode()
    if not isinstance(secret, bytes):
        return f"a secret must be a string, not {type(secret).__name__}"
    if not secret:
        return f"the secret is empty: use at least {MIN_SECRET_BYTES} random bytes ({_HOW})"
    if len(secret) < MIN_SECRET_BYTES:
        return (
            f"the secret is {len(secret)} bytes, shorter than the {MIN_SECRET_BYTES} required "
            f"({_HOW})"
        )
    return None


class SigningKeys:
    """The keys made from a bus's shared secrets: the first signs, any verifies.

    Listing two secrets is how a secret is replaced without rejecting a message: every
    runner first gets ``[old, new]`` (it signs with the old one and accepts both), then
    ``[new, old]`` (it signs with the new one), then ``[new]``.

    Only keys derived from the secrets are kept, and its repr never shows them.

    Raises:
        ValueError: no secret, or one that is empty or shorter than ``MIN_SECRET_BYTES``.
        TypeError: a secret that is not text, bytes or a ``SecretStr``.
    """

    __slots__ = ("_keys",)

    def __init__(self, secret: Secret | Sequence[Secret]) -> None:
        given: list[object] = (
            [secret] if isinstance(secret, str | bytes | SecretStr) else list(secret)
        )
        if not given:
            raise ValueError("no bus secret given: give at least one")
        keys = []
        for index, one in enumerate(given):
            where = f"bus secret {index + 1} of {len(given)}" if len(given) > 1 else "bus secret"
            if not isinstance(one, str | bytes | SecretStr):
                raise TypeError(f"{where}: a secret must be a string, not {type(one).__name__}")
            problem = secret_problem(one)
            if problem is not None:
                raise ValueError(f"{where}: {problem}")
            keys.append(_Key(_derive(_raw(one))))
        self._keys: tuple[_Key, ...] = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"SigningKeys(<{len(self._keys)} secret(s), hidden>)"

    __str__ = __repr__


def _raw(secret: Secret) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return secret.encode() if isinstance(secret, str) else secret


def _derive(secret: bytes) -> bytes:
    """The HMAC key for signing bus messages, made from a shared secret."""
    return hmac.digest(secret, _PURPOSE, "sha256")


class _Key:
    """One HMAC-SHA256 key with its padded states hashed once.

    ``hmac.digest`` sets up the key on every call, which is more than half of its cost on
    a message of a few hundred bytes; copying the two precomputed SHA-256 states is
    RFC 2104's own shortcut and gives the same MAC (tests compare it with ``hmac``).
    ``Signer.sign`` and ``Verifier.verify`` repeat ``mac``'s four lines for their own key
    instead of calling it: they run for every message, between two runners that each
    wait for the other, where a Python call is a measurable part of the round trip.
    """

    __slots__ = ("inner", "outer", "to")

    def __init__(self, key: bytes) -> None:
        padded = key.ljust(_BLOCK, b"\0")  # derived keys are 32 bytes, under the block size
        self.inner = hashlib.sha256(padded.translate(_INNER_PAD))
        self.outer = hashlib.sha256(padded.translate(_OUTER_PAD))
        self.to: dict[str, Any] = {}
        """Destination -> the inner state with it hashed too (see ``inner_to``)."""

    def inner_to(self, destination: str) -> Any:
        """The inner state after the destination: a few destinations take every message
        (a runner's own channel, the broadcast channel, the channels of the runners it
        talks to), so each is hashed once and copied after (at most ``_DESTINATIONS``
        kept)."""
        state = self.to.get(destination)
        if state is None:
            if len(self.to) >= _DESTINATIONS:
                self.to.clear()
            state = self.inner.copy()
            state.update(addressed(destination))  # may raise: nothing is kept then
            self.to[destination] = state
        return state

    def mac(self, data: bytes, destination: str | None = None) -> bytes:
        """HMAC-SHA256 of ``data``, or of ``addressed(destination) + data``."""
        inner = (self.inner if destination is None else self.inner_to(destination)).copy()
        inner.update(data)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def addressed(destination: str) -> bytes:
    """What a MAC covers of a message's destination: its length and name."""
    name = destination.encode()
    if len(name) > 0xFFFF:
        raise ValueError(f"a destination of {len(name)} bytes: at most 65,535")
    return len(name).to_bytes(2, "big") + name


class Signer:
    """Signs the messages one runner sends.

    Args:
        sender: this runner's name (at most ``MAX_SENDER_BYTES`` bytes as UTF-8).
        keys: the bus's keys; the first signs.
        clock: seconds since the Unix epoch (tests move it).
    """

    __slots__ = (
        "_clock",
        "_counter",
        "_head",
        "_key",
        "_name",
        "_outer",
        "_session",
        "_to",
        "sender",
    )

    def __init__(
        self, sender: str, keys: SigningKeys, *, clock: Callable[[], float] = time.time
    ) -> None:
        name = sender.encode()
        if not name or len(name) > MAX_SENDER_BYTES:
            raise ValueError(
                f"a signed message names its sender in 1 to {MAX_SENDER_BYTES} bytes; "
                f"this runner's name takes {len(name)}: give it a shorter name"
            )
        self.sender = sender
        # Timestamp, nonce (a random session, then a counter), name length, name.
        self._head = struct.Struct(f">Q8sQH{len(name)}s")
        self._name = name
        self._key = key = keys._keys[0]
        self._to, self._outer = key.to, key.outer
        self._clock = clock
        self._session = secrets.token_bytes(8)  # nonces stay unique across restarts
        self._counter = 0

    def sign(self, body: bytes, destination: str) -> bytes:
        """``body`` behind a header that names this runner, the time and a fresh nonce,
        signed for ``destination`` (where the bus sends it: a channel's name, say)."""
        self._counter = counter = self._counter + 1
        name = self._name
        signed = (
            self._head.pack(int(self._clock() * 1000), self._session, counter, len(name), name)
            + body
        )
        inner = self._to.get(destination)  # _Key.mac, inline
        if inner is None:
            inner = self._key.inner_to(destination)
        inner = inner.copy()
        inner.update(signed)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return b"".join((b"\x01", outer.digest(), signed))


class Verifier:
    """Checks what one runner receives; counts and logs what it rejects.

    Args:
        keys: the bus's keys; a message signed with any of them verifies.
        name: this runner's name, for its log lines.
        max_age: seconds after which a message is stale.
        max_ahead: seconds a timestamp may be ahead of this clock.
        replay_cache: nonces remembered at most (the memory bound).
        clock: seconds since the Unix epoch (tests move it).
    """

    __slots__ = (
        "_clock",
        "_current",
        "_current_newest",
        "_current_since",
        "_floor",
        "_generation",
        "_key",
        "_keys",
        "_logged",
        "_max_age",
        "_max_ahead",
        "_outer",
        "_prefix",
        "_previous",
        "_previous_newest",
        "_rejected",
        "_to",
        "_window",
    )

    def __init__(
        self,
        keys: SigningKeys,
        *,
        name: str = "",
        max_age: float = MAX_AGE,
        max_ahead: float = MAX_AHEAD,
        replay_cache: int = REPLAY_CACHE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (0 < max_age < math.inf and 0 <= max_ahead < math.inf and replay_cache >= 2):
            raise ValueError(
                "max_age must be > 0, max_ahead >= 0 (both finite) and replay_cache >= 2"
            )
        self._keys = keys._keys
        self._key = self._keys[0]
        self._to, self._outer = self._key.to, self._key.outer
        self._prefix = f"{name}: " if name else ""
        self._max_age = float(max_age)
        self._max_ahead = float(max_ahead)
        self._clock = clock
        self._rejected = dict.fromkeys(Rejection, 0)
        self._logged: set[str] = set()
        # The replay cache: two generations of nonces. The current one takes new nonces
        # and becomes the previous one when full or older than the window; the previous
        # one is then forgotten, and ``_floor`` (the newest timestamp it held) refuses
        # every message that old, whose nonce the cache may have forgotten. Timestamps
        # are kept in the messages' milliseconds, durations in seconds.
        self._generation = max(1, replay_cache // 2)
        self._window = self._max_age + self._max_ahead
        self._current: set[bytes] = set()
        self._previous: set[bytes] = set()
        self._current_newest = 0
        self._previous_newest = 0
        self._current_since = clock()
        self._floor = 0

    @property
    def rejections(self) -> dict[Rejection, int]:
        """How many messages were rejected, by reason (every reason listed)."""
        return dict(self._rejected)

    @property
    def remembered(self) -> int:
        """How many nonces the replay cache holds now."""
        return len(self._current) + len(self._previous)

    def verify(self, data: bytes, destination: str) -> Verified | None:
        """The verified message read at ``destination`` (the channel's name, say), or
        None when it is rejected (counted, maybe logged).

        Costs one MAC per key tried (the signing key first) and a few slices: the body is
        parsed only after it verifies. A message signed with the first key, on time and
        new, takes the straight path below; any other goes through ``_open`` and
        ``_untimely``, which say why it is rejected.
        """
        try:
            version, mac, stamp, nonce, size = _HEAD.unpack_from(data)
        except struct.error:  # shorter than a header
            self._open(data, destination)  # counts why
            return None
        end = _NAME_START + size
        if version != VERSION or not 0 < size <= MAX_SENDER_BYTES or end > len(data):
            self._open(data, destination)
            return None
        signed = data[_MAC_END:]  # a copy: less than a memoryview costs on small messages
        inner = self._to.get(destination)  # _Key.mac with the first key, inline
        if inner is None:
            inner = self._key.inner_to(destination)
        inner = inner.copy()
        inner.update(signed)
        outer = self._outer.copy()
        outer.update(inner.digest())
        if not compare_digest(outer.digest(), mac) and not any(
            compare_digest(key.mac(signed, destination), mac) for key in self._keys[1:]
        ):
            self._forged(data, end)
            return None
        try:
            sender = data[_NAME_START:end].decode()
        except UnicodeDecodeError:
            self._reject(Rejection.MALFORMED, "", "the sender's name is not UTF-8")
            return None
        sent_at = stamp / 1000
        now = self._clock()
        age = now - sent_at
        if age > self._max_age or -age > self._max_ahead or stamp <= self._floor:
            self._untimely(sender, age)
            return None
        current = self._current
        count = len(current)
        if count >= self._generation or now - self._current_since >= self._window:
            if nonce in current or nonce in self._previous:
                self._reject(Rejection.REPLAYED, sender, "")
                return None
            self._floor = max(self._floor, self._previous_newest)
            self._previous, self._current = current, set()
            self._previous_newest, self._current_newest = self._current_newest, 0
            self._current_since = now
            current, count = self._current, 0
        elif nonce in self._previous:
            self._reject(Rejection.REPLAYED, sender, "")
            return None
        current.add(nonce)
        if len(current) == count:  # it was there already
            self._reject(Rejection.REPLAYED, sender, "")
            return None
        if stamp > self._current_newest:
            self._current_newest = stamp
        return _verified(Verified, (sender, data[end:], sent_at))

    def _untimely(self, sender: str, age: float) -> None:
        """Reject a message that is too old, too far ahead (``age`` in seconds) or older
        than the replay cache reaches."""
        if age > self._max_age:
            self._reject(Rejection.STALE, sender, f"sent {age:.1f} s ago")
        elif -age > self._max_ahead:
            self._reject(Rejection.FUTURE, sender, f"timestamped {-age:.1f} s ahead")
        else:
            self._reject(
                Rejection.STALE, sender, "older than the replay cache reaches at this rate"
            )

    def authenticate(self, data: bytes, destination: str) -> Verified | None:
        """Check the signature only (for ``destination``), not the age nor replays: for a
        message the bus reads again from storage of its own (an entry of a stream it
        redelivers), where the bus judges age and repeats itself (``sent_at`` says when it
        was signed)."""
        opened = self._open(data, destination)
        if opened is None:
            return None
        sender, end, stamp = opened
        return _verified(Verified, (sender, data[end:], stamp / 1000))

    def _open(self, data: bytes, destination: str) -> tuple[str, int, int] | None:
        """The sender, where the body starts and the timestamp, once the MAC is checked;
        None, with the reason counted, when it does not verify."""
        if len(data) < _NAME_START or data[0] != VERSION:
            if data[:1] == b"{":
                self._reject(Rejection.UNSIGNED, "", "")
                return None
            self._reject(Rejection.MALFORMED, "", "")
            return None
        _, mac, stamp, _, size = _HEAD.unpack_from(data)
        end = _NAME_START + size
        if not size or size > MAX_SENDER_BYTES or end > len(data):
            self._reject(Rejection.MALFORMED, "", "the sender's name is out of bounds")
            return None
        signed = data[_MAC_END:]
        if not any(compare_digest(key.mac(signed, destination), mac) for key in self._keys):
            self._forged(data, end)
            return None
        try:
            sender = data[_NAME_START:end].decode()
        except UnicodeDecodeError:
            self._reject(Rejection.MALFORMED, "", "the sender's name is not UTF-8")
            return None
        return sender, end, stamp

    def _forged(self, data: bytes, end: int) -> None:
        """Reject a message whose MAC none of the keys gives, under the name it claims."""
        self._reject(Rejection.BAD_SIGNATURE, data[_NAME_START:end].decode(errors="replace"), "")

    def _reject(self, reason: Rejection, sender: str, detail: str) -> None:
        self._rejected[reason] += 1
        key = sender or f"\0{reason}"  # unknown senders: once per reason
        if key in self._logged or len(self._logged) > LOGGED_SENDERS:
            return
        self._logged.add(key)
        if len(self._logged) > LOGGED_SENDERS:
            logger.warning(
                "%srejected messages from more than %d senders: further rejections are "
                "counted, not logged",
                self._prefix,
                LOGGED_SENDERS,
            )
            return
        who = f"runner {_quoted(sender)}" if sender else "an unknown sender"
        logger.warning(
            "%srejected a message from %s: %s%s (%s); further rejections from it are "
            "counted, not logged",
            self._prefix,
            who,
            reason.value,
            f", {detail}" if detail else "",
            _EXPLAINED[reason],
        )


_EXPLAINED = {
    Rejection.MALFORMED: "not a signed message of this framework",
    Rejection.UNSIGNED: "the sender has no bus secret: give every runner the same bus_secret",
    Rejection.BAD_SIGNATURE: (
        "signed with a secret this runner does not have, or altered on the way: give every "
        "runner the same bus_secret"
    ),
    Rejection.STALE: "a replay, or clocks that disagree: keep the machines' clocks in sync",
    Rejection.FUTURE: "clocks that disagree: keep the machines' clocks in sync",
    Rejection.REPLAYED: "a message accepted once already, sent again",
}


def _quoted(text: str, limit: int = 256) -> str:
    """``text`` quoted for a log line, control characters escaped, at most ``limit``
    characters of it kept: a name from the network cannot forge log lines."""
    if len(text) > limit:
        return repr(text[:limit]) + f"... ({len(text)} characters)"
    return repr(text)
