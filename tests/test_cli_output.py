"""What ``framework run --job`` writes where: stdout only the response (or the stream's
text), updates on stderr; a live status line under a pseudo-terminal, plain lines without
one or with ``NO_COLOR``."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from framework._live import progress_of
from framework.cli import cli

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(TESTS), "FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1"}
for name in ("FRAMEWORK_URL", "NO_COLOR"):
    ENV.pop(name, None)
ENV["TERM"] = "xterm-256color"


def _under_a_terminal(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``framework`` with stderr on a pseudo-terminal: (exit code, stdout, the terminal)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "framework", *args],
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
        cwd=TESTS,
    )
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process ended
                break
            if not chunk:
                break
            screen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    return process.wait(timeout=30), out, screen.decode(errors="replace")


def test_the_live_status_line_under_a_terminal() -> None:
    code, out, screen = _under_a_terminal(
        "-p", "named_jobs_plugin", "run", "--job", "steps", "--payload", '{"n": 8}', env=ENV
    )
    assert code == 0, screen
    assert json.loads(out) == {"steps": 8}  # stdout: the response alone
    assert "\x1b[" in screen  # drawn with escape sequences
    assert "steps" in screen
    assert "/8" in screen  # the progress: done of 8
    assert '{"done": ' in screen  # the last update
    assert "update:" not in screen  # no plain lines


def test_no_color_gives_plain_lines_even_on_a_terminal() -> None:
    code, out, screen = _under_a_terminal(
        "-p",
        "named_jobs_plugin",
        "run",
        "--job",
        "steps",
        "--payload",
        '{"n": 2, "pause": 0}',
        env={**ENV, "NO_COLOR": "1"},
    )
    assert code == 0, screen
    assert json.loads(out) == {"steps": 2}
    lines = [line for line in screen.splitlines() if line.startswith("update:")]
    assert lines == ['update: {"done": 1, "of": 2}', 'update: {"done": 2, "of": 2}']
    assert "\x1b[" not in screen


def test_without_a_terminal_stdout_is_only_the_response_and_updates_go_to_stderr(
    tmp_path: Path,
) -> None:
    env = {"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1", "FRAMEWORK_URL": None}
    result = CliRunner().invoke(
        cli,
        ["-p", "sample_plugin", "run", "--job", "counter", "--payload", '{"n": 2}'],
        env=env,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == '{"chunks": 2}\n'  # `| jq` reads one document
    assert 'update: {"done": 0}\nstream: {"i": 0}\nupdate: {"done": 1}\nstream: {"i": 1}\n' in (
        result.stderr
    )


def test_progress_comes_from_progress_or_done_and_of() -> None:
    assert progress_of({"progress": 0.25}) == (0.25, 1.0)
    assert progress_of({"done": 3, "of": 8}) == (3.0, 8.0)
    assert progress_of({"done": 9, "of": 8}) == (8.0, 8.0)
    assert progress_of({"done": 1}) is None
    assert progress_of({"progress": 7}) is None  # not a fraction
    assert progress_of({"done": True, "of": 2}) is None
    assert progress_of({"done": 1, "of": 0}) is None


def test_verbose_events_are_json_lines_with_text_deltas_gathered_per_line() -> None:
    import io

    from framework.builtins.console import ConsolePublisher
    from framework.events import Event, EventModel, EventType

    stream = io.StringIO()
    console = ConsolePublisher(stream)

    def delta(text: str) -> EventModel:
        return EventModel(
            event=Event.STREAMING,
            event_type=EventType.PROGRESS,
            content=text,
            delta=True,
            delta_type="text",
            node_name="assistant",
            thread_id="j-1",
        )

    console.publish_event(
        EventModel(event=Event.NODE_EXECUTION, event_type=EventType.START, node_name="assistant")
    )
    for token in ["Hel", "lo", "\nwor", "ld"]:
        console.publish_event(delta(token))
    console.publish_event(
        EventModel(
            event=Event.NODE_EXECUTION,
            event_type=EventType.RESULT,
            node_name="assistant",
            data={"status": "completed", "at": Path("/x")},
        )
    )
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "node_execution/start",
        "streaming/progress",
        "streaming/progress",
        "node_execution/result",
    ]
    assert (lines[1]["content"], lines[1]["deltas"]) == ("Hello\n", 3)
    assert (lines[2]["content"], lines[2]["deltas"]) == ("world", 2)
    assert lines[1]["job"] == "j-1"
    assert lines[3]["data"] == {"status": "completed", "at": "/x"}


def test_rich_is_imported_only_to_draw_on_a_terminal() -> None:
    def imported(*args: str) -> set[str]:
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "framework", *args],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=TESTS,
            timeout=60,
        )
        return {
            line.rsplit("|", 1)[1].strip().split(".")[0]
            for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line
        }

    assert "rich" not in imported("--help")
    # sample:// is an in-process bus on which no hint about a runner serving at the default
    # address is given: that hint imports httpx, and httpx imports rich when it is installed.
    job = ("-p", "sample_plugin", "run", "--bus", "sample://x", "--job", "counter")
    assert "rich" not in imported(*job)
    assert "anyio" in imported(*job)  # the job ran
