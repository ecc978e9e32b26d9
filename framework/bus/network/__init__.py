"""The network-bus kit: what every bus that links runners in several processes shares, so
that such a bus is transport code only.

- ``NetworkBus`` (``base``): the protocol the runner checks for.
- The wire envelope (``wire``): the four kinds of envelope runners exchange, validated and
  size-limited when received, checked when sent.
- Signed messages (``signing``): ``SigningKeys``, ``Signer``, ``Verifier``.
- Peers and liveness (``peers``): the bounded table of the other runners and their workers.
- Routes (``routes``): the requests sent to other runners until answered, and the ending of
  those whose runner or link is lost.
"""

from framework.bus.network.base import NetworkBus
from framework.bus.network.durable import DurableJob, DurableJobError, DurableStore
from framework.bus.network.peers import (
    DESCRIBED_PER_RUNNER,
    DESCRIPTION_BYTES,
    LIVENESS_MAX,
    MAX_PEERS,
    MAX_REMOTE_WORKERS,
    WAITING_RUNNERS,
    HeartbeatChange,
    Peer,
    Peers,
)
from framework.bus.network.routes import Route, RouteKey, Routes
from framework.bus.network.signing import (
    MAX_AGE,
    MAX_AHEAD,
    MIN_SECRET_BYTES,
    REPLAY_CACHE,
    Rejection,
    Secret,
    Signer,
    SigningKeys,
    Verified,
    Verifier,
    secret_problem,
)
from framework.bus.network.wire import (
    NAME_LIMIT,
    Bye,
    Described,
    Envelope,
    Heartbeat,
    Name,
    Routed,
    RoutedEncoder,
    WireError,
    claimed_sender,
    decode_envelope,
    encode_description,
    encode_envelope,
    request_head,
    response_head,
    unreadable,
)

__all__ = [
    "DESCRIBED_PER_RUNNER",
    "DESCRIPTION_BYTES",
    "LIVENESS_MAX",
    "MAX_AGE",
    "MAX_AHEAD",
    "MAX_PEERS",
    "MAX_REMOTE_WORKERS",
    "MIN_SECRET_BYTES",
    "NAME_LIMIT",
    "REPLAY_CACHE",
    "WAITING_RUNNERS",
    "Bye",
    "Described",
    "DurableJob",
    "DurableJobError",
    "DurableStore",
    "Envelope",
    "Heartbeat",
    "HeartbeatChange",
    "Name",
    "NetworkBus",
    "Peer",
    "Peers",
    "Rejection",
    "Route",
    "RouteKey",
    "Routed",
    "RoutedEncoder",
    "Routes",
    "Secret",
    "Signer",
    "SigningKeys",
    "Verified",
    "Verifier",
    "WireError",
    "claimed_sender",
    "decode_envelope",
    "encode_description",
    "encode_envelope",
    "request_head",
    "response_head",
    "secret_problem",
    "unreadable",
]
