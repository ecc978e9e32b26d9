"""Keep a client's bad request out of the runner's console.

The a2a-sdk logs every request it refuses: a warning for an unknown method, a skill this
runner does not have or a missing ``A2A-Version`` header, and an error with a traceback for
a body that is not a JSON-RPC request or params that do not parse. The client gets the
error in its answer; the runner's operator has nothing to fix, and a traceback in the
console looks like a crash. So those records, and only those, are lowered to DEBUG (shown
when the a2a-sdk's loggers are set to DEBUG); the SDK's reports of its own failures
(internal errors, unhandled exceptions) stay as they are.
"""

from __future__ import annotations

import logging

_CLIENT_ERRORS: dict[str, dict[str, int]] = {
    # logger: {message format: the highest level at which it reports a client's error}
    "a2a.server.routes.jsonrpc_dispatcher": {
        # ERROR is kept: the SDK logs internal errors (-32603) with the same format.
        "Request Error (ID: %s): Code=%s, Message='%s'%s": logging.WARNING,
        "Failed to validate base JSON-RPC request": logging.ERROR,
        "Failed to parse request params": logging.ERROR,
    },
    "a2a.compat.v0_3.jsonrpc_adapter": {
        "Failed to validate base JSON-RPC request for v0.3": logging.ERROR,
    },
    "a2a.utils.version_validator": {
        "Version mismatch: actual='%s', expected='%s'": logging.WARNING,
    },
    "a2a.utils.error_handlers": {
        "Request error: Code=%s, Message='%s'%s": logging.WARNING,
        "Parse error: %s": logging.WARNING,
    },
}


class ClientErrorFilter(logging.Filter):
    """Lowers the a2a-sdk's records of a client's bad request to DEBUG (see the module)."""

    def filter(self, record: logging.LogRecord) -> bool:
        highest = _CLIENT_ERRORS.get(record.name, {}).get(str(record.msg))
        if highest is None or record.levelno > highest:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_client_errors() -> None:
    """Install the filter on the a2a-sdk's loggers (once per process)."""
    for name in _CLIENT_ERRORS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientErrorFilter) for f in logger.filters):
            logger.addFilter(ClientErrorFilter())
