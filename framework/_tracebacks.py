"""Where an exception was raised, for the one-line messages about plugins that fail, and
its whole traceback for ``-v``. The ``traceback`` module is imported only when needed."""

from __future__ import annotations


def where(exc: BaseException) -> str:
    """`` (at FILE, line N)``: the innermost frame of ``exc``'s traceback that is neither
    the standard library's nor frozen (the plugin's line that raised), or ``""``."""
    import os

    stdlib = os.path.dirname(os.__file__) + os.sep
    found = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(("<", stdlib)):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    if found is None:
        return ""
    return f" (at {found[0]}, line {found[1]})"


def format_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` as Python prints it (without a trailing newline)."""
    import traceback

    return "".join(traceback.format_exception(exc)).rstrip("\n")
