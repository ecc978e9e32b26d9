"""``framework run`` serving HTTP, and ``framework run --job --url``, as processes: the
banner, exit codes for addresses that cannot be served, and a job submitted to a serving
runner printing exactly what the in-process path prints."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

TESTS = Path(__file__).resolve().parent
ENV = {
    **os.environ,
    "PYTHONPATH": str(TESTS),
    "FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1",
}
ENV.pop("FRAMEWORK_URL", None)
ENV.pop("FRAMEWORK_HTTP_TOKEN", None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _framework(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "framework", "-p", "http_plugin", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        cwd=TESTS,
        timeout=timeout,
    )


@contextmanager
def _serving(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "framework",
            "-p",
            "http_plugin",
            "run",
            "--http",
            f"127.0.0.1:{port}",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or ENV,
        cwd=TESTS,
    )
    url = f"http://127.0.0.1:{port}"
    output: list[str] = []  # stdout and stderr, once it has ended
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the runner did not serve within 20 s"
            time.sleep(0.05)
        yield url, output
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output.extend(process.communicate(timeout=15))
        finally:
            process.kill()


def test_serving_prints_the_url_and_a_job_over_url_prints_like_the_in_process_path() -> None:
    with _serving() as (url, output):
        remote = _framework(
            "run", "--job", "tools", "--name", "count", "--payload", '{"n": 3}', "--url", url
        )
        remote_json = _framework("run", "--job", "tools", "--name", "count", "--json", "--url", url)
        failed = _framework("run", "--job", "tools", "--name", "fail", "--url", url)
        env_url = _framework(
            "run",
            "--job",
            "tools",
            "--name",
            "reverse",
            "--payload",
            '{"text": "ab"}',
            env={**ENV, "FRAMEWORK_URL": url},
        )
        unknown = _framework("run", "--job", "tool", "--url", url)
    banner = output[1]
    local = _framework("run", "--job", "tools", "--name", "count", "--payload", '{"n": 3}')
    local_json = _framework("run", "--job", "tools", "--name", "count", "--json")
    assert f"dashboard and HTTP API at {url}/" in banner
    assert f"framework run --job WORKER --url {url}" in banner
    assert remote.returncode == local.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout
    assert remote_json.stdout == local_json.stdout
    assert failed.returncode == 1
    assert "job to worker 'tools' ended failed: it failed on purpose" in failed.stderr
    assert env_url.returncode == 0
    assert env_url.stdout.strip() == '{"text": "ba"}'
    assert unknown.returncode == 1
    assert "no worker named 'tool' on the runner at" in unknown.stderr
    assert "did you mean 'tools'?" in unknown.stderr


def test_sigint_during_a_job_over_url_cancels_it_on_the_runner() -> None:
    with _serving() as (url, _):
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "framework",
                "-p",
                "http_plugin",
                "run",
                "--job",
                "tools",
                "--name",
                "sleep",
                "--url",
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=TESTS,
        )
        try:
            assert client.stderr is not None
            assert client.stderr.readline().strip() == 'update: {"sleeping": true}'
            client.send_signal(signal.SIGINT)
            _, err = client.communicate(timeout=15)
        finally:
            client.kill()
        metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert client.returncode == 130, err
    assert "SIGINT received; the job to worker 'tools' was cancelled" in err
    assert 'framework_jobs_total{status="cancelled",worker="tools"} 1.0' in metrics


def test_a_url_where_nothing_serves_is_a_clear_failure() -> None:
    port = _free_port()
    result = _framework("run", "--job", "tools", "--url", f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot reach a runner at http://127.0.0.1:{port}" in result.stderr
    bad = _framework("run", "--job", "tools", "--url", "ftp://x")
    assert bad.returncode == 2
    assert "is not an HTTP URL" in bad.stderr


def test_options_that_do_not_go_together_are_usage_errors() -> None:
    assert _framework("run", "--url", "http://127.0.0.1:1").returncode == 2
    assert _framework("run", "--job", "tools", "--http", "127.0.0.1:0").returncode == 2


def test_an_address_asked_for_that_is_in_use_exits_2_before_anything_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _framework("run", "--http", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert f"cannot serve HTTP on 127.0.0.1:{port}: the port is in use" in result.stderr
    assert "Ctrl-C" not in result.stderr  # nothing started


def test_a_non_loopback_address_without_a_token_exits_2() -> None:
    result = _framework("run", "--http", "0.0.0.0:0")
    assert result.returncode == 2
    assert "without a token" in result.stderr
    assert "FRAMEWORK_HTTP_TOKEN" in result.stderr


def test_a_malformed_address_exits_2_naming_it() -> None:
    result = _framework("run", "--http", "localhost")
    assert result.returncode == 2
    assert "'localhost' is not HOST:PORT" in result.stderr


def test_the_default_address_in_use_is_a_warning_and_the_runner_serves_without_http(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8765))
            taken.listen()
        except OSError:
            pass  # something serves there already: the same situation
        process = subprocess.Popen(
            [sys.executable, "-m", "framework", "-p", "http_plugin", "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=tmp_path,
        )
        try:
            assert process.stderr is not None
            first = process.stderr.readline()
            second = process.stderr.readline()
            process.send_signal(signal.SIGTERM)
            _, rest = process.communicate(timeout=15)
        finally:
            process.kill()
    assert process.returncode == 0, first + second + rest
    assert "warning: cannot serve HTTP on 127.0.0.1:8765: the port is in use" in first
    assert "serving without HTTP" in first
    assert "Ctrl-C or SIGTERM to stop" in second
    assert "dashboard" not in second + rest


def test_a_blank_token_is_a_configuration_error() -> None:
    result = _framework("run", "--http", "127.0.0.1:0", env={**ENV, "FRAMEWORK_HTTP_TOKEN": "  "})
    assert result.returncode == 2
    assert "token is empty" in result.stderr


def test_a_runner_that_dies_mid_job_is_reported_with_an_unknown_outcome() -> None:
    with _serving() as (url, _):
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "framework",
                "-p",
                "http_plugin",
                "run",
                "--job",
                "tools",
                "--name",
                "sleep",
                "--url",
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=TESTS,
        )
        try:
            assert client.stdout is not None and client.stderr is not None
            health = httpx.get(f"{url}/v1/health", timeout=5).json()
            assert health["status"] == "ok"
            # Wait for the job to run, then kill the runner under it.
            deadline = time.monotonic() + 20
            while "framework_jobs_in_flight 1.0" not in httpx.get(f"{url}/metrics").text:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            runner_pid = int(
                subprocess.run(
                    ["pgrep", "-f", "--", f"--http 127.0.0.1:{url.rsplit(':', 1)[1]}"],
                    capture_output=True,
                    text=True,
                ).stdout.split()[0]
            )
            os.kill(runner_pid, signal.SIGKILL)
            _, err = client.communicate(timeout=20)
        finally:
            client.kill()
    assert client.returncode == 1, err
    assert "went away before the job's response" in err
    assert "outcome is unknown" in err
    assert "Traceback" not in err


def test_a_missing_or_wrong_token_says_which_variable_to_set() -> None:
    token_env = {**ENV, "FRAMEWORK_HTTP_TOKEN": "right-token-0123456789"}
    with _serving(env=token_env) as (url, _):
        missing = _framework("run", "--job", "tools", "--url", url)
        wrong = _framework(
            "run",
            "--job",
            "tools",
            "--url",
            url,
            env={**ENV, "FRAMEWORK_HTTP_TOKEN": "wrong-token-0123456789"},
        )
        right = _framework("run", "--job", "tools", "--url", url, env=token_env)
    assert missing.returncode == wrong.returncode == 1
    assert "set FRAMEWORK_HTTP_TOKEN" in missing.stderr
    assert "is not the runner's" in wrong.stderr
    assert right.returncode == 0, right.stderr
