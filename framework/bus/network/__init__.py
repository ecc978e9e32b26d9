"""The network-bus kit: what every bus that links runners in several processes shares, so
that such a bus is transport code only.

So far: the ``NetworkBus`` protocol, and signed messages (``SigningKeys``, ``Signer``,
``Verifier``).
"""

from framework.bus.network.base import NetworkBus
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

__all__ = [
    "MAX_AGE",
    "MAX_AHEAD",
    "MIN_SECRET_BYTES",
    "REPLAY_CACHE",
    "NetworkBus",
    "Rejection",
    "Secret",
    "Signer",
    "SigningKeys",
    "Verified",
    "Verifier",
    "secret_problem",
]
