"""``framework new-plugin NAME``: a plugin distribution to start from, made from the
templates in ``framework/_scaffold`` (the echo plugin's layout: a worker registered by
import path, a light entry-point module, tests through ``framework.testing``, a README and
a ``pyproject.toml`` that ``framework install -e '.[test]'`` installs)."""

from __future__ import annotations

import re
import string
from pathlib import Path

SCAFFOLD = Path(__file__).resolve().parent / "_scaffold"
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


class ScaffoldError(Exception):
    """The plugin cannot be made there or with that name; the message says why."""


def check_name(name: str) -> str:
    """``name`` if it can be a plugin's name (lower case letters, digits and single
    hyphens, starting with a letter), else a ``ScaffoldError`` saying what would."""
    if not NAME.fullmatch(name):
        raise ScaffoldError(
            f"{name!r} cannot be a plugin name: use lower case letters, digits and single "
            "hyphens, starting with a letter (like 'shout' or 'web-search')"
        )
    return name


def names(name: str) -> dict[str, str]:
    """The names the templates use: ``name``, ``distribution``, ``package`` and ``cls``."""
    return {
        "name": name,
        "distribution": f"agent-plugin-{name}",
        "package": f"agent_plugin_{name.replace('-', '_')}",
        "cls": "".join(part.capitalize() for part in name.split("-")),
    }


def new_plugin(name: str, directory: Path) -> Path:
    """Write the plugin ``agent-plugin-NAME`` under ``directory``; returns its folder."""
    values = names(check_name(name))
    target = directory / values["distribution"]
    if target.exists():
        raise ScaffoldError(f"{target} exists already: pick another name or folder")
    package = target / "src" / values["package"]
    files = {
        "pyproject.toml.tmpl": target / "pyproject.toml",
        "README.md.tmpl": target / "README.md",
        "src/__init__.py.tmpl": package / "__init__.py",
        "src/workers.py.tmpl": package / "workers.py",
        "tests/conftest.py.tmpl": target / "tests" / "conftest.py",
        "tests/test_workers.py.tmpl": target / "tests" / "test_workers.py",
    }
    for template, path in files.items():
        text = string.Template((SCAFFOLD / template).read_text(encoding="utf-8"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.substitute(values), encoding="utf-8")
    (package / "py.typed").write_text("")
    return target
