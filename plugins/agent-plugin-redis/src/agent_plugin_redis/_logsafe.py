"""The bus's logger, whose lines cannot be forged by what other runners send.

Runner and worker names, keys of JSON objects and the texts of validation errors come from
the network and end up in log lines. A newline (or any control character) in one would let
a peer write lines of its own into a runner's log, so every argument of a log call is
escaped before it is formatted: ``\\n`` stays two visible characters. Only the arguments
are touched; the format strings are the bus's own.
"""

from __future__ import annotations

import logging
import re

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """``text`` with each control character written as an escape (``\\n``, ``\\x1b``...)."""
    return _CONTROLS.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _safe(value: object) -> object:
    if value is None or isinstance(value, int | float):
        return value  # (bool is an int): kept for %d and %g
    text = value if isinstance(value, str) else str(value)
    return escape(text) if _CONTROLS.search(text) else value


class _EscapeControls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_safe(arg) for arg in args)
        return True


logger = logging.getLogger("agent_plugin_redis.bus")
"""The logger of the Redis bus (its connection, streams and peers too)."""
if not any(isinstance(f, _EscapeControls) for f in logger.filters):
    logger.addFilter(_EscapeControls())
