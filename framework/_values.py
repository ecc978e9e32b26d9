"""What may travel in a job: JSON-compatible values and request headers.

A payload, an update, a stream item or a response must survive a network bus unchanged, so
the in-process bus holds them to the same rule: a plugin that passes its tests locally then
behaves the same across machines. ``jsonable`` checks a value (and turns pydantic models into
plain data); ``check_headers`` checks the headers given to a job request.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

MAX_DEPTH = 100
"""Deepest nesting of lists and dicts accepted (a circular value is caught here too)."""

MAX_HEADERS = 64
"""Most headers one request may carry."""

MAX_HEADER_BYTES = 8 * 1024
"""Most bytes (UTF-8, names and values together) the headers of one request may take."""

RESERVED_HEADER_PREFIX = "framework-"
"""Header names the framework keeps for itself."""

_HEADER_NAME = re.compile(r"[a-z0-9-]+")
_BIG_INT = 10**4000
"""Integers from here on are refused: Python's own JSON reader stops at 4,300 digits."""
_SCALARS = (str, int, float, bool, type(None))


class NotJSONError(TypeError):
    """A value that a network bus could not carry: ``path`` says where, the message what."""

    def __init__(self, what: str, path: str, reason: str) -> None:
        super().__init__(f"{what} at {path} {reason}")
        self.path = path


def jsonable(value: Any, what: str = "value") -> Any:
    """``value`` as JSON-compatible data: the same object when it is so already, a copy
    with every pydantic model dumped (``mode="json"``) when it holds models.

    Raises:
        NotJSONError: something in it is not JSON-compatible (an arbitrary object, bytes,
            a non-string dict key, NaN or infinity, a string with lone surrogates, or
            nesting deeper than ``MAX_DEPTH``, which a circular value always reaches). The
            message names ``what``, the path (``$.items[2].when``) and the type.
    """
    if is_plain(value, 0):
        return value
    return _convert(value, what, "$", 0)


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is JSON data as it is: the quick check every value goes through
    (on the job path, for each update and stream item); anything it cannot vouch for takes
    the slow path, which converts models and names what is wrong."""
    kind = type(value)
    if kind is str:
        return bool(value.isascii()) or _encodes(value)
    if kind is int:
        return bool(-_BIG_INT < value < _BIG_INT)
    if kind is bool or value is None:
        return True
    if kind is float:
        return bool(value - value == 0.0)  # False for NaN and the infinities
    if depth >= MAX_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or _encodes(key)):
                return False
            # Scalars are checked here, without a call: a flat dict (a stream item, an
            # update) costs one call in all.
            item_kind = type(item)
            if item_kind is str:
                if not (item.isascii() or _encodes(item)):
                    return False
            elif item_kind is int:
                if not -_BIG_INT < item < _BIG_INT:
                    return False
            elif item_kind is bool or item is None:
                continue
            elif not is_plain(item, depth + 1):
                return False
        return True
    if kind is list:
        return all(is_plain(item, depth + 1) for item in value)
    return False


def _check_text(text: str, what: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise NotJSONError(
            what, path, "is a str with lone surrogates, which UTF-8 cannot encode"
        ) from None


def _convert(value: Any, what: str, path: str, depth: int) -> Any:
    kind = type(value)
    if kind is str:
        if not value.isascii():
            _check_text(value, what, path)
        return value
    if kind is bool or value is None:
        return value
    if kind is int:
        if -_BIG_INT < value < _BIG_INT:
            return value
        raise NotJSONError(
            what, path, "is an int too large for JSON readers (over 4,000 digits); send it as a str"
        )
    if kind is float:
        if math.isfinite(value):
            return value
        raise NotJSONError(what, path, f"is {value!r}, which JSON cannot represent")
    if depth >= MAX_DEPTH:
        raise NotJSONError(
            what, path, f"is nested deeper than {MAX_DEPTH} levels (a circular value?)"
        )
    if isinstance(value, BaseModel):
        try:
            return value.model_dump(mode="json")
        except Exception as exc:
            raise NotJSONError(
                what, path, f"is a {kind.__name__} that does not serialize: {exc}"
            ) from None
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        changed = kind is not dict
        for key, item in value.items():
            if type(key) is not str and isinstance(key, str):
                key = str.__str__(key)  # a str enum or subclass: its plain text
                changed = True
            if type(key) is not str:
                raise NotJSONError(
                    what, f"{path}[{key!r}]", f"has a {type(key).__name__} key; keys must be str"
                )
            _check_text(key, what, f"{path}[{key!r}]")
            converted = _convert(item, what, f"{path}.{key}", depth + 1)
            changed = changed or converted is not item
            result[key] = converted
        return result if changed else value
    if isinstance(value, (list, tuple)):
        items: list[Any] | None = None
        for index, item in enumerate(value):
            converted = _convert(item, what, f"{path}[{index}]", depth + 1)
            if converted is not item and items is None:
                items = list(value)
            if items is not None:
                items[index] = converted
        if items is not None:
            return items
        return value if kind is list else list(value)
    if isinstance(value, _SCALARS):  # subclasses of str, int, float (enums among them)
        return _convert(_plain(value), what, path, depth)
    raise NotJSONError(
        what,
        path,
        f"is a {kind.__module__}.{kind.__qualname__}, which is not JSON-compatible; send "
        "dicts, lists, str, int, float, bool, None or pydantic models",
    )


def _plain(value: Any) -> Any:
    """A subclass of a JSON scalar (a str or int enum, say) as the plain value it holds;
    ``str(value)`` would give an enum's name instead."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    return float.__float__(value)


def check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers of a job request as a new dict, checked.

    Raises:
        ValueError: a name is not lower-case ``[a-z0-9-]`` or starts with the reserved
            ``framework-``, a value is not a str, there are more than ``MAX_HEADERS``, or
            they take more than ``MAX_HEADER_BYTES``.
    """
    if not headers:
        return {}
    if not isinstance(headers, Mapping):
        raise ValueError(f"headers must be a dict of str to str, got {type(headers).__name__}")
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"a job request takes at most {MAX_HEADERS} headers, got {len(headers)}")
    size = 0
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ValueError(
                f"header name {name!r} is not allowed; names are lower-case letters, digits "
                "and '-' (e.g. 'traceparent', 'idempotency-key')"
            )
        if name.startswith(RESERVED_HEADER_PREFIX):
            raise ValueError(
                f"header {name!r}: names starting with {RESERVED_HEADER_PREFIX!r} are "
                "reserved for the framework; pick another name"
            )
        if not isinstance(value, str):
            raise ValueError(
                f"header {name!r}: the value must be a str, got {type(value).__name__}"
            )
        try:
            size += len(name) + len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r}: the value has lone surrogates") from None
    if size > MAX_HEADER_BYTES:
        raise ValueError(
            f"the headers take {size} bytes; a job request takes at most {MAX_HEADER_BYTES}"
        )
    return dict(headers)
