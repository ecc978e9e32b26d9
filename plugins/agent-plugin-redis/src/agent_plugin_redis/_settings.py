"""The settings of a ``redis://`` bus, read from its URL.

Our own settings ride in the URL's query string (``?heartbeat=0.5``) and are taken out
before the rest goes to redis-py, which knows the others (``ssl_ca_certs``,
``socket_timeout``...). A password comes from the URL or, when the URL has none (it may have an
ACL user name), from the environment variable ``FRAMEWORK_REDIS_PASSWORD``, so it need not
sit in a config file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from redis.exceptions import RedisError

from framework.bus.network.peers import LIVENESS_MAX
from framework.urls import redact_url

if TYPE_CHECKING:
    import redis.asyncio as aioredis

CONNECTION_ERRORS = (RedisError, OSError)
"""What a broken link to Redis (or a command it refused) raises."""

PASSWORD_ENV = "FRAMEWORK_REDIS_PASSWORD"
"""Environment variable holding the Redis password when the URL carries none."""

DEFAULT_HEARTBEAT = 1.0
DEFAULT_MISSES = 3
DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
MAX_MESSAGE_SIZE_CAP = 8 * 1024 * 1024
"""The biggest ``max_message_size`` a URL may set: a quarter of the hard limit of Redis's
default ``client-output-buffer-limit`` for pub/sub clients (32 MB). Redis disconnects a
subscriber whose unread output reaches that limit, so a bigger message, published to a
runner's channel, would cut that runner off (and with it every job it has in flight); at a
quarter, a message leaves room for the others queued with it."""
DEFAULT_NAMESPACE = "framework"
DEFAULT_IDEMPOTENCY_TTL = 24 * 3600
MAX_IDEMPOTENCY_TTL = 365 * 24 * 3600


class SettingsError(ValueError):
    """A bad ``redis://`` bus URL: the message names the parameter and what is allowed."""


@dataclass(frozen=True, slots=True)
class RedisBusSettings:
    """What a ``RedisBus`` needs beyond the connection itself.

    Attributes:
        url: the URL for redis-py (our parameters removed, the password added when it
            came from the environment).
        heartbeat: seconds between heartbeats (``?heartbeat=``).
        misses: heartbeats a runner may miss before it counts as lost (``?misses=``).
        max_message_size: bytes; a bigger message is refused when sent and dropped when
            received (``?max_message_size=``).
        namespace: prefix of every key and channel (``?namespace=``), so several systems
            can share one Redis database.
        idempotency_ttl: seconds the response to a request with an ``idempotency-key``
            header is kept, to answer a repeated request (``?idempotency_ttl=``).
    """

    url: str
    heartbeat: float = DEFAULT_HEARTBEAT
    misses: int = DEFAULT_MISSES
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    namespace: str = DEFAULT_NAMESPACE
    idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL

    @classmethod
    def from_url(cls, url: str) -> RedisBusSettings:
        """Parse a ``redis://`` or ``rediss://`` URL.

        Raises:
            SettingsError: an unknown scheme, or one of our parameters out of range.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise SettingsError(
                f"a Redis bus URL starts with redis:// or rediss://, got {redact_url(url)!r}"
            )
        ours: dict[str, str] = {}
        theirs: list[tuple[str, str]] = []
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key in _OURS:
                ours[key] = value
            else:
                theirs.append((key, value))
        netloc = parts.netloc
        password = os.environ.get(PASSWORD_ENV)
        if password and parts.password is None:  # with or without an ACL user name
            user, _, host = netloc.rpartition("@")
            netloc = f"{user}:{quote(password, safe='')}@{host}"
        redis_url = urlunsplit((parts.scheme, netloc, parts.path, urlencode(theirs), ""))
        _check_for_redis_py(redis_url, theirs)
        heartbeat = _number(ours, "heartbeat", DEFAULT_HEARTBEAT, 0.01, LIVENESS_MAX)
        misses = int(_number(ours, "misses", DEFAULT_MISSES, 1, 1000, integer=True))
        if heartbeat * misses > LIVENESS_MAX:
            raise SettingsError(
                f"bus URL parameter heartbeat={heartbeat:g} with misses={misses}: a runner "
                f"would be lost only after {heartbeat * misses:g} s of silence, over the "
                f"{LIVENESS_MAX:g} s after which every runner counts it lost; make heartbeat "
                f"times misses at most {LIVENESS_MAX:g}"
            )
        return cls(
            url=redis_url,
            heartbeat=heartbeat,
            misses=misses,
            max_message_size=int(
                _number(
                    ours,
                    "max_message_size",
                    DEFAULT_MAX_MESSAGE_SIZE,
                    1024,
                    MAX_MESSAGE_SIZE_CAP,
                    integer=True,
                    why=(
                        ": a bigger message could make Redis disconnect its reader (Redis's "
                        "client-output-buffer-limit for pub/sub clients is 32 MB by default)"
                    ),
                )
            ),
            namespace=_namespace(ours.get("namespace", DEFAULT_NAMESPACE)),
            idempotency_ttl=int(
                _number(
                    ours,
                    "idempotency_ttl",
                    DEFAULT_IDEMPOTENCY_TTL,
                    1,
                    MAX_IDEMPOTENCY_TTL,
                    integer=True,
                )
            ),
        )


_OURS = ("heartbeat", "misses", "max_message_size", "namespace", "idempotency_ttl")


def _number(
    values: dict[str, str],
    key: str,
    default: float,
    low: float,
    high: float,
    *,
    integer: bool = False,
    why: str = "",
) -> float:
    raw = values.get(key)
    if raw is None:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise SettingsError(f"bus URL parameter {key}={raw!r} must be {kind}") from None
    if not low <= value <= high:
        span = f"{int(low)} to {int(high)}" if integer else f"{low:g} to {high:g}"
        raise SettingsError(f"bus URL parameter {key}={raw!r} is out of range: use {span}{why}")
    return value


def _check_for_redis_py(url: str, theirs: list[tuple[str, str]]) -> None:
    """Build (without connecting) the connection redis-py would make for ``url``, so that a
    parameter it does not know or a value it cannot read is a ``SettingsError`` now, not a
    traceback at the first command.

    Raises:
        SettingsError: naming the parameter, and what to do.
    """
    import redis.asyncio as aioredis

    try:
        aioredis.ConnectionPool.from_url(url).make_connection()  # type: ignore[no-untyped-call]
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '([^']*)'", str(exc))
        name = unknown.group(1) if unknown else ", ".join(key for key, _ in theirs)
        todo = (
            "the ssl_* parameters need a rediss:// URL"
            if name.startswith("ssl_") and not url.startswith("rediss://")
            else "remove it or fix its spelling"
        )
        raise SettingsError(
            f"bus URL parameter {name!r} is not one the Redis bus ({', '.join(_OURS)}) or "
            f"redis-py knows: {todo}"
        ) from None
    except ValueError as exc:
        named = re.search(r"'([^']*)'", str(exc))
        values = dict(theirs)
        if named and named.group(1) in values:
            key = named.group(1)
            raise SettingsError(
                f"bus URL parameter {key}={values[key]!r} is not a value redis-py accepts ({exc})"
            ) from None
        raise SettingsError(f"a bus URL parameter redis-py cannot use: {exc}") from None


def pubsub_hard_limit(reply: Any) -> int | None:
    """The hard limit, in bytes, of a ``CONFIG GET client-output-buffer-limit`` reply's
    ``pubsub`` class; None when the reply has none, or 0 (no limit)."""
    value = next(iter(reply.values()), b"") if isinstance(reply, dict) else b""
    words = (value.decode() if isinstance(value, bytes) else str(value)).split()
    for i, word in enumerate(words[:-1]):
        if word == "pubsub" and words[i + 1].isdigit():
            return int(words[i + 1]) or None
    return None


def _namespace(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", value):
        raise SettingsError(
            f"bus URL parameter namespace={value!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )
    return value


def connect(url: str) -> aioredis.Redis:
    """A redis-py client for ``url`` that never retries on its own and sets no socket
    timeout.

    A silent retry could send a message twice, or hide an outage during which messages
    were lost; the bus wants to see every broken connection and decide itself. A socket
    timeout makes redis-py wrap every command in ``asyncio.wait_for`` (a task per command,
    a noticeable share of a job's round trip); the bus notices a dead link by itself
    instead (it must read its own heartbeats back), and then empties the pool.
    """
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # redis-py's plain pool: its bounded (blocking) pool costs a condition and a timeout
    # per command. The bus bounds its senders itself (``SENDS_AT_ONCE``), so hundreds of
    # jobs sent at once queue rather than open hundreds of sockets.
    pool = aioredis.ConnectionPool.from_url(
        url,
        decode_responses=False,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=None,
        socket_connect_timeout=5,
    )
    return aioredis.Redis.from_pool(pool)


SENDS_AT_ONCE = 32
"""Commands a bus's senders have in flight at once (each holds a pooled connection); the
readers and the heartbeat hold a few more."""
