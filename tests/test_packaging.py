"""The distributions' metadata: an SPDX license expression and the LICENSE file (so that
setuptools has nothing to deprecate), project URLs, and messages that send pip users to
documentation they can open (URLs, not ``docs/`` paths a wheel does not carry)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECTS = [REPO, *sorted((REPO / "plugins").iterdir())]


@pytest.mark.parametrize("project", PROJECTS, ids=lambda p: p.name)
def test_license_expression_license_file_and_urls(project: Path) -> None:
    data = tomllib.loads((project / "pyproject.toml").read_text())
    meta = data["project"]
    assert meta["license"] == "Apache-2.0"  # a string: the table form is deprecated
    assert meta["license-files"] == ["LICENSE"]
    text = (project / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert {"Homepage", "Repository", "Issues", "Documentation"} <= set(meta["urls"])
    assert all(url.startswith("https://") for url in meta["urls"].values())
    assert any(
        re.fullmatch(r"setuptools>=(\d+)", req) and int(req.split(">=")[1]) >= 77
        for req in data["build-system"]["requires"]
    )


def _strings_a_user_may_see(path: Path) -> list[tuple[int, str]]:
    """Every string constant in the module (f-string parts included) but the docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_messages_name_urls_not_docs_paths() -> None:
    """No string in the code a user sees points at ``docs/NAME.md``: it names a URL."""
    offenders = []
    for path in [*(REPO / "framework").rglob("*.py"), *(REPO / "plugins").rglob("src/**/*.py")]:
        for line, text in _strings_a_user_may_see(path):
            if re.search(r"(?<!/main/)\bdocs/[\w-]+\.md", text):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {text!r}")
    assert offenders == []


def test_a_missing_bus_plugin_names_where_to_read_how_to_install_it() -> None:
    from click.testing import CliRunner

    from framework.cli import cli

    result = CliRunner().invoke(
        cli,
        ["run", "--bus", "redis://localhost", "--job", "x"],
        env={"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )
    assert result.exit_code == 2
    assert "agent-plugin-redis for redis://; how: https://" in result.stderr
    assert "configuration.md#installing-plugins" in result.stderr


def test_the_release_workflow_builds_every_distribution_and_publishes_with_trusted_publishing() -> (
    None
):
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    build, publish = workflow["jobs"]["build"], workflow["jobs"]["publish"]
    projects = build["strategy"]["matrix"]["project"]
    expected = ["."] + [
        f"plugins/{p.name}"
        for p in sorted((REPO / "plugins").iterdir())
        if (p / "pyproject.toml").is_file()
    ]
    assert sorted(projects) == sorted(expected)
    assert publish["permissions"] == {"id-token": "write"}
    uploads = [
        step for step in publish["steps"] if "gh-action-pypi-publish" in step.get("uses", "")
    ]
    assert uploads
    for step in uploads:  # trusted publishing: no password or token is passed
        assert not {"password", "user"} & set(step.get("with", {}))
    assert "release" in workflow[True]  # `on:` (YAML 1.1 reads the key as True)
