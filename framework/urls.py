"""URL helpers for the core and for plugins.

A bus or publisher URL may carry a password, in its userinfo (``redis://:secret@host``)
or as a query parameter (``?password=secret``, which redis-py and others accept).
``redact_url`` gives the text to put in a message or a log line instead, so no plugin
needs its own copy of the rules.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit

__all__ = ["redact_url"]

HIDDEN = "***"
"""What a password is replaced with."""


def redact_url(url: str) -> str:
    """``url`` with every password in it replaced by ``***``: safe to print or log.

    The password of the userinfo (``user:***@host``) and the value of each ``password``
    query parameter are hidden; everything else is kept as written, so a URL without a
    password comes back unchanged (``local://`` stays ``local://``). A string that does not
    parse as a URL comes back as ``<an invalid URL>``, since it cannot be searched for a
    password reliably.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an invalid URL>"
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:{HIDDEN}@{host}"
    pairs = parts.query.split("&") if parts.query else []
    query = "&".join(_redact_pair(pair) for pair in pairs)
    if netloc == parts.netloc and query == parts.query:
        return url  # as written (geturl() would turn "local://" into "local:")
    return parts._replace(netloc=netloc, query=query).geturl()


def _redact_pair(pair: str) -> str:
    key, sep, _ = pair.partition("=")
    if sep and unquote_plus(key) == "password":
        return f"{key}={HIDDEN}"
    return pair
