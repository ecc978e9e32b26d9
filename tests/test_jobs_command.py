"""``framework jobs``: list (text and ``--json``), retry and drop on a bus that keeps durable
jobs, and clear exits for a bus that keeps none, a store that cannot be reached and an
unknown job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from framework.cli import cli

ENV = {"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1", "FRAMEWORK_PLUGINS": None}


@pytest.fixture(autouse=True)
def _in_empty_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def invoke(*args: str, env: dict[str, Any] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env={**ENV, **(env or {})}, catch_exceptions=False)


def test_list_prints_a_table_and_json_with_the_documented_fields() -> None:
    result = invoke("jobs", "list", "-p", "durable_store_plugin", "--bus", "keep://")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["JOB", "ID", "WORKER", "NAME", "STATE", "ATTEMPTS", "ERROR"]
    assert lines[1].split() == ["j-pending", "payments", "charge", "pending", "1"]
    assert lines[2].split()[:5] == ["j-dead", "payments", "-", "dead", "3"]
    assert lines[2].endswith("runner r2 lost")
    result = invoke("jobs", "list", "--json", "-p", "durable_store_plugin", "--bus", "keep://")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {
            "job_id": "j-pending",
            "worker": "payments",
            "name": "charge",
            "state": "pending",
            "attempts": 1,
            "error": "",
        },
        {
            "job_id": "j-dead",
            "worker": "payments",
            "name": None,
            "state": "dead",
            "attempts": 3,
            "error": "runner r2 lost",
        },
    ]


def test_the_bus_comes_from_the_configuration_file_as_for_run(tmp_path: Path) -> None:
    (tmp_path / "framework.toml").write_text('bus = "keep://"\n')
    result = invoke("jobs", "list", "-p", "durable_store_plugin")
    assert result.exit_code == 0, result.output
    assert "j-dead" in result.output


def test_retry_and_drop_say_what_they_did_and_an_unknown_job_exits_1() -> None:
    base = ("-p", "durable_store_plugin", "--bus", "keep://")
    result = invoke("jobs", "retry", "j-dead", *base)
    assert result.exit_code == 0, result.output
    assert "job j-dead queued again for worker 'payments'" in result.output
    result = invoke("jobs", "drop", "j-pending", *base)
    assert result.exit_code == 0, result.output
    assert "job j-pending (pending, worker 'payments') dropped" in result.output
    result = invoke("jobs", "retry", "j-pending", *base)
    assert result.exit_code == 1
    assert "no dead durable job 'j-pending'" in result.stderr
    result = invoke("jobs", "drop", "nope", *base)
    assert result.exit_code == 1
    assert "no durable job 'nope'" in result.stderr


def test_a_bus_without_a_durable_store_or_out_of_reach_exits_2_saying_so() -> None:
    result = invoke("jobs", "list", "--bus", "local://")
    assert result.exit_code == 2
    assert "the bus local:// keeps no durable jobs" in result.stderr
    assert "--bus URL" in result.stderr
    result = invoke("jobs", "list", "-p", "durable_store_plugin", "--bus", "keep://down")
    assert result.exit_code == 2
    assert "cannot reach the store at keep://down" in result.stderr
    result = invoke("jobs", "list", "--bus", "nope://x")
    assert result.exit_code == 2
    assert "no bus is registered for 'nope://x'" in result.stderr


def test_importing_the_cli_does_not_import_the_bus_kit() -> None:
    code = "import sys, framework.cli; print('framework.bus.network' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
