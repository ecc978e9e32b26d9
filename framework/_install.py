"""What ``framework install`` adds to pip: when a name is not on the package index (as
agent-plugin-framework's own distributions are not yet), say how to install it instead.
And ``framework plugins --requirements``: lines pip can install again, from wherever
each distribution came (PEP 610's ``direct_url.json``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

from framework.urls import REPOSITORY_URL, docs_url

NOT_FOUND = re.compile(r"No matching distribution found for ([^\s;]+)")
"""What pip says (and uv's "not found in the package registry") about a missing name."""
UV_NOT_FOUND = re.compile(r"Because ([A-Za-z0-9._-]+) was not found in the package registry")


def run_installer(command: list[str]) -> int:
    """Run pip (or uv), passing its output through; a hint on stderr for each name it did
    not find. Returns its exit code."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    missing: list[str] = []
    assert process.stderr is not None
    for line in process.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        for pattern in (NOT_FOUND, UV_NOT_FOUND):
            found = pattern.search(line)
            if found:
                missing.append(found.group(1))
    code = process.wait()
    for name in dict.fromkeys(missing):
        print(not_on_index(name), file=sys.stderr)
    return code


def not_on_index(name: str) -> str:
    """How to install ``name`` when the index does not have it."""
    dist = re.split(r"[<>=!~\[ ]", name, maxsplit=1)[0]
    folder = f"plugins/{dist}" if dist != "agent-plugin-framework" else "."
    subdirectory = f"#subdirectory={folder}" if folder != "." else ""
    wheel = f"{dist.replace('-', '_')}-VERSION-py3-none-any.whl"
    return (
        f"framework: {dist!r} is not on your package index (agent-plugin-framework and its "
        "plugins are not published there yet). Install it from:\n"
        f"  a checkout:  framework install ./{folder}   (in the repository's folder)\n"
        f"  a wheel:     framework install path/to/{wheel}\n"
        f"  git:         framework install '{dist} @ git+{REPOSITORY_URL}{subdirectory}'\n"
        f"  (see {docs_url('configuration.md#installing-plugins')})"
    )


def requirement_line(distribution: str, version: str | None) -> str:
    """A line of a requirements file that installs ``distribution`` as it is installed
    here: ``-e PATH`` (editable), ``name @ URL`` (a folder, a wheel, a VCS checkout), or
    ``name==version`` (from an index)."""
    direct = _direct_url(distribution)
    if direct is None:
        return f"{distribution}=={version}" if version else distribution
    url = str(direct.get("url", ""))
    if direct.get("dir_info", {}).get("editable"):
        return f"-e {_path_of(url)}"
    vcs = direct.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs"):
        revision = vcs.get("commit_id") or vcs.get("requested_revision")
        url = f"{vcs['vcs']}+{url}" + (f"@{revision}" if revision else "")
    subdirectory = direct.get("subdirectory")
    if subdirectory:
        url += f"#subdirectory={subdirectory}"
    return f"{distribution} @ {url}"


def _direct_url(distribution: str) -> dict[str, Any] | None:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import distribution as find

    try:
        text = find(distribution).read_text("direct_url.json")
    except PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" else url
