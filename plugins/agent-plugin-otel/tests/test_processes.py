"""One trace across runner processes on a real redis-server: ``framework run`` processes
with the plugin found through its entry point and configured by ``OTEL_*`` variables only,
exporting over OTLP/HTTP to the test's receiver.

Runner A hosts ``planner`` (a ``fan_out`` worker) and ``near`` (a ``leaf``); runner B hosts
``far`` (a ``leaf``). A third process, ``framework run --job planner``, submits the request.
The trace: the CLI's CLIENT span, the planner's SERVER span on A, ``near`` as an INTERNAL
child on A, and ``far`` as a CLIENT span on A with a SERVER child on B.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Receiver

TESTS = Path(__file__).resolve().parent
_VENV_FRAMEWORK = Path(sys.executable).parent / "framework"
FRAMEWORK = str(_VENV_FRAMEWORK) if _VENV_FRAMEWORK.exists() else shutil.which("framework")
SERVING = "Ctrl-C or SIGTERM to stop"


def environment(receiver: Receiver, service: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("FRAMEWORK_", "OTEL_")) and k not in ("PYTHONPATH", "PYTHONHOME")
    }
    env.update(
        PYTHONPATH=str(TESTS),
        PYTHONUNBUFFERED="1",
        OTEL_SERVICE_NAME=service,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_METRICS_EXPORTER="none",
    )
    return env


def config(tmp_path: Path, name: str, workers: list[tuple[str, str]]) -> Path:
    lines = [f'name = "{name}"', "grace_period = 0.5"]
    if not workers:
        lines.append("workers = []")
    for kind, worker in workers:
        lines += ["[[workers]]", f'type = "{kind}"', f'name = "{worker}"']
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_runner(
    tmp_path: Path, receiver: Receiver, url: str, name: str, workers: list[tuple[str, str]]
) -> subprocess.Popen[str]:
    args = [FRAMEWORK, "-p", "otel_workers", "run", "--no-http", "--config"]
    args += [str(config(tmp_path, name, workers)), "--bus", url]
    return subprocess.Popen(
        args,
        cwd=tmp_path,
        env=environment(receiver, f"runner-{name}"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / f"{name}.log", "w"),
        text=True,
    )


def wait_serving(tmp_path: Path, *names: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        log = tmp_path / f"{name}.log"
        while SERVING not in log.read_text():
            if time.monotonic() > deadline:
                pytest.fail(f"runner {name} did not start: {log.read_text()}")
            time.sleep(0.05)


def submit(
    tmp_path: Path, receiver: Receiver, url: str, payload: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    args = [FRAMEWORK, "run", "--config", str(config(tmp_path, "cli", []))]
    args += ["--bus", url, "--job", "planner", "--payload", json.dumps(payload), "--json"]
    args += ["--timeout", "20"]
    return subprocess.run(
        args,
        cwd=tmp_path,
        env=environment(receiver, "cli"),
        capture_output=True,
        text=True,
        timeout=40,
    )


def stop(*processes: subprocess.Popen[str]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_one_trace_across_three_processes(
    tmp_path: Path, receiver: Receiver, redis_url: str
) -> None:
    a = start_runner(tmp_path, receiver, redis_url, "A", [("fan_out", "planner"), ("leaf", "near")])
    b = start_runner(tmp_path, receiver, redis_url, "B", [("leaf", "far")])
    try:
        wait_serving(tmp_path, "A", "B")
        ok = submit(tmp_path, receiver, redis_url, {"workers": ["near", "far"]})
        assert ok.returncode == 0, ok.stderr
        failing = submit(tmp_path, receiver, redis_url, {"workers": ["near", "far"], "fail": "far"})
        assert failing.returncode != 0
    finally:
        stop(a, b)
    logs = "\n".join((tmp_path / f"{n}.log").read_text() for n in "AB")
    spans = receiver.wait_for(lambda spans: len(spans) >= 10)
    assert len(spans) == 10, (spans, logs)
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        traces.setdefault(span["trace_id"], []).append(span)
    assert len(traces) == 2  # one per request, across the three processes

    def shape(trace: list[dict[str, Any]]) -> dict[str, Any]:
        by_id = {span["span_id"]: span for span in trace}

        def key(span: dict[str, Any]) -> str:
            return f"{span['service']}: {span['kind']} {span['name']}"

        tree: dict[str, str | None] = {}
        for span in trace:
            parent = by_id.get(span["parent"]) if span["parent"] else None
            tree[key(span)] = key(parent) if parent else None
        return tree

    expected = {
        "cli: CLIENT invoke_agent planner": None,
        "runner-A: SERVER invoke_agent planner": "cli: CLIENT invoke_agent planner",
        "runner-A: INTERNAL invoke_agent near": "runner-A: SERVER invoke_agent planner",
        "runner-A: CLIENT invoke_agent far": "runner-A: SERVER invoke_agent planner",
        "runner-B: SERVER invoke_agent far": "runner-A: CLIENT invoke_agent far",
    }
    ok_trace, failed_trace = sorted(
        traces.values(), key=lambda t: any(s["status"] == "ERROR" for s in t)
    )
    assert shape(ok_trace) == expected
    assert shape(failed_trace) == expected
    for span in ok_trace:
        assert span["status"] == "UNSET"
        assert span["attributes"]["framework.job.status"] == "completed"
        assert span["attributes"]["gen_ai.operation.name"] == "invoke_agent"
    errors = {
        f"{s['service']}: {s['kind']} {s['name']}": s["description"]
        for s in failed_trace
        if s["status"] == "ERROR"
    }
    assert errors["runner-B: SERVER invoke_agent far"] == "far was told to fail"
    assert errors["runner-A: CLIENT invoke_agent far"] == "far was told to fail"
    assert "runner-A: SERVER invoke_agent planner" in errors
    far = {s["kind"]: s for s in failed_trace if s["name"] == "invoke_agent far"}
    assert far["SERVER"]["attributes"]["framework.runner"] == "B"
    assert far["CLIENT"]["attributes"]["framework.runner"] == "A"
    assert (
        far["SERVER"]["attributes"]["framework.job.id"]
        == far["CLIENT"]["attributes"]["framework.job.id"]
    )
