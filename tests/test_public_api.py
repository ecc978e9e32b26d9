"""The top-level package: ``__all__``, the lazy-import table ``_LOCATIONS`` and the
type checkers' imports in ``framework/__init__.py`` name the same objects, and importing
``framework`` loads none of the runtime."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import framework

INIT = Path(framework.__file__)


def _type_checking_imports() -> dict[str, str]:
    """``name -> module`` for the ``from module import name`` lines under
    ``if TYPE_CHECKING:`` in ``framework/__init__.py``."""
    found: dict[str, str] = {}
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom) and statement.module is not None
                for alias in statement.names:
                    found[alias.asname or alias.name] = statement.module
    return found


def test_all_and_the_lazy_import_table_name_the_same_things() -> None:
    assert len(set(framework.__all__)) == len(framework.__all__), "a name is listed twice"
    assert set(framework.__all__) == set(framework._LOCATIONS)


def test_the_type_checkers_see_what_the_table_imports() -> None:
    assert _type_checking_imports() == framework._LOCATIONS


@pytest.mark.parametrize("name", sorted(framework._LOCATIONS))
def test_each_name_resolves_from_its_module(name: str) -> None:
    module = importlib.import_module(framework._LOCATIONS[name])
    value = getattr(framework, name)
    assert value is getattr(module, name)
    assert getattr(value, "__name__", name) == name  # markers are instances, without one
    assert name in dir(framework)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = framework.Nope


def test_importing_framework_loads_none_of_the_runtime() -> None:
    code = (
        "import framework, sys; print(sorted(m for m in sys.modules "
        "if m.startswith(('pydantic', 'anyio', 'pluggy', 'framework.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


API_PAGE = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def _public_modules() -> list[str]:
    """Every module of the package whose dotted name has no part starting with ``_``."""
    found = []
    for path in sorted(INIT.parent.rglob("*.py")):
        parts = list(path.relative_to(INIT.parent.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if not any(part.startswith("_") for part in parts):
            found.append(".".join(parts))
    return found


@pytest.mark.parametrize("module", _public_modules())
def test_each_public_module_is_on_the_api_page(module: str) -> None:
    """docs/api.md says which modules are public and stable; a new one must be added."""
    assert f"`{module}`" in API_PAGE.read_text(), f"docs/api.md does not list {module}"


def test_each_module_on_the_api_page_exists() -> None:
    """Each name in the first column of the page's table is a module that imports."""
    rows = [line for line in API_PAGE.read_text().splitlines() if line.startswith("| `")]
    named = [name for row in rows for name in re.findall(r"`([\w.]+)`", row.split("|")[1])]
    assert "framework" in named
    for name in named:
        importlib.import_module(name)
