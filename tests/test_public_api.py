"""The top-level package: ``__all__``, the lazy-import table ``_LOCATIONS`` and the
type checkers' imports in ``framework/__init__.py`` name the same objects, and importing
``framework`` loads none of the runtime."""

from __future__ import annotations

import ast
import importlib
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
