"""URL helpers for the core and for plugins.

A bus or publisher URL may carry a password, in its userinfo (``redis://:secret@host``)
or as a query parameter (``?password=secret``, which redis-py and others accept).
``redact_url`` gives the text to put in a message or a log line instead, so no plugin
needs its own copy of the rules.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit

__all__ = ["DOCS_URL", "docs_url", "redact_url"]

HIDDEN = "***"
"""What a password is replaced with."""

REPOSITORY_URL = "https://github.com/agent-plugin-framework/agent-plugin-framework"
"""The project's home, as ``[project.urls]`` in each ``pyproject.toml`` names it."""
DOCS_URL = REPOSITORY_URL + "/blob/main/docs/"
"""Where the documentation pages are read online (messages name these, not ``docs/``
paths, which a ``pip install`` does not bring)."""


def docs_url(page: str) -> str:
    """The online address of a documentation page: ``docs_url("hooks.md#register_workers")``."""
    return DOCS_URL + page


def redact_url(url: str) -> str:
    """``url`` with every password in it replaced by ``***``: safe to print or log.

    The password of the userinfo (``user:***@host``) and the value of each ``password``
    query parameter are hidden; everything else is kept as written, so a URL without a
    password comes back unchanged (``local://`` stays ``local://``). A string that does not
    parse as a URL comes back as ``<an invalid URL>``, since it cannot be searched for a
    password reliably.

    The userinfo is found without trusting percent-encoding: a password written with an
    unencoded ``#``, ``/``, ``?`` or ``@`` ends at the last ``@`` of the URL, and everything
    from the first ``:`` after ``//`` up to that ``@`` is hidden. When an ``@`` belongs to
    the path or the query instead, more is hidden than needed, never less.
    """
    try:
        urlsplit(url)
    except ValueError:
        return "<an invalid URL>"
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    head = ""
    if at != -1 and ":" in rest[:at]:
        user = rest[:at].split(":", 1)[0]
        head, rest = f"{user}:{HIDDEN}@", rest[at + 1 :]
    redacted = head + _redact_query(rest)
    return f"{scheme}{sep}{redacted}" if sep else redacted


def _redact_query(text: str) -> str:
    """``text`` (what follows the userinfo) with each ``password`` parameter's value hidden,
    up to the next ``&`` (a ``#`` in it is part of the value, not a fragment)."""
    path, mark, query = text.partition("?")
    if not mark:
        return text
    return f"{path}?{'&'.join(_redact_pair(pair) for pair in query.split('&'))}"


def _redact_pair(pair: str) -> str:
    key, sep, _ = pair.partition("=")
    if sep and unquote_plus(key) == "password":
        return f"{key}={HIDDEN}"
    return pair
