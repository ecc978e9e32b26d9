"""The Redis bus across real processes: the ``framework run`` command as runners, and a
driver process (``mp_driver.py``) as a requester, on a real redis-server.

Each runner process is ``framework -p mp_workers run --config <name>.toml --bus URL``:
the configuration file gives the runner its name and its workers (``--name`` is the job's
name, with ``--job``), and ``mp_workers`` (a plugin module in this folder, found through
``PYTHONPATH``) adds the test workers ``mp_slow`` and ``mp_whoami``. A runner is ready once
its stderr says ``... Ctrl-C or SIGTERM to stop``.

Every wait has a deadline, so a bug fails a test instead of hanging it; every process a
test starts is ended by the ``procs`` fixture (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest
import redis
from agent_plugin_redis.bus import HEARTBEAT_LIMIT

from framework.bus.messages import JobRequestMessage
from framework.bus.network.wire import RoutedEncoder

if TYPE_CHECKING:
    from conftest import RedisServer

TESTS = Path(__file__).resolve().parent
DRIVER = TESTS / "mp_driver.py"
_VENV_FRAMEWORK = Path(sys.executable).parent / "framework"
FRAMEWORK = str(_VENV_FRAMEWORK) if _VENV_FRAMEWORK.exists() else shutil.which("framework")

START_TIMEOUT = 20.0
"""Seconds a process may take to start (imports included) on a loaded machine."""
SERVING = "Ctrl-C or SIGTERM to stop"


# --------------------------------------------------------------------------- processes


class Proc:
    """A child process whose stdout and stderr lines are read as they come, each with the
    time (``time.monotonic()``) it was read."""

    def __init__(self, label: str, args: list[str], *, cwd: Path, env: dict[str, str]) -> None:
        self.label = label
        self.args = args
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.lines: dict[str, list[tuple[float, str]]] = {"out": [], "err": []}
        self.closed = {"out": False, "err": False}
        self._changed = threading.Condition()
        for which, stream in (("out", self.popen.stdout), ("err", self.popen.stderr)):
            assert stream is not None
            threading.Thread(target=self._read, args=(which, stream), daemon=True).start()

    def _read(self, which: str, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines[which].append((time.monotonic(), line.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self.closed[which] = True
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self, which: str = "err") -> str:
        with self._changed:
            return "\n".join(line for _, line in self.lines[which])

    def tail(self, which: str, lines: int = 60, width: int = 400) -> str:
        """The last ``lines`` lines, each cut at ``width`` characters (for failure reports)."""
        with self._changed:
            kept = [line for _, line in self.lines[which][-lines:]]
        return "\n".join(line if len(line) <= width else line[:width] + " ..." for line in kept)

    def describe(self) -> str:
        return (
            f"--- {self.label} (pid {self.pid}, exit {self.popen.poll()}): {' '.join(self.args)}\n"
            f"stdout (end):\n{self.tail('out')}\nstderr (end):\n{self.tail('err')}"
        )

    def wait_line(
        self, which: str, match: str | Callable[[str], bool], timeout: float
    ) -> tuple[float, str]:
        """The first line of stdout/stderr (``which``: "out"/"err") that contains ``match``
        (or satisfies it), with the time it was read; fails after ``timeout`` seconds or
        when the stream ends without it."""
        test = match if callable(match) else (lambda line: match in line)
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = 0
            while True:
                lines = self.lines[which]
                for at, line in lines[seen:]:
                    if test(line):
                        return at, line
                seen = len(lines)
                if self.closed[which]:
                    pytest.fail(f"{self.label} ended without {match!r}\n{self.describe()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.label}: no {match!r} in {timeout} s\n{self.describe()}")
                self._changed.wait(left)

    def count_lines(self, which: str, match: str) -> int:
        with self._changed:
            return sum(match in line for _, line in self.lines[which])

    def json_lines(self) -> list[dict[str, Any]]:
        """stdout, as JSON objects (one per line)."""
        with self._changed:
            return [json.loads(line) for _, line in self.lines["out"] if line.startswith("{")]

    def wait_event(self, event: str, timeout: float) -> tuple[float, dict[str, Any]]:
        """The driver's first stdout line ``{"event": event, ...}``, and when it was read."""
        at, line = self.wait_line("out", f'{{"event": "{event}"', timeout)
        return at, json.loads(line)

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def wait_exit(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.label} did not exit within {timeout} s\n{self.describe()}")
        with self._changed:  # let the readers take the last lines
            self._changed.wait_for(lambda: all(self.closed.values()), timeout=5)
        return code

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(5)


class Procs:
    """The processes of one test, ended at its end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.all: list[Proc] = []
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FRAMEWORK_") and k not in ("PYTHONPATH", "PYTHONHOME")
        }
        self.env["PYTHONPATH"] = str(TESTS)
        self.env["PYTHONUNBUFFERED"] = "1"

    def start(self, label: str, args: list[str]) -> Proc:
        proc = Proc(label, args, cwd=self.tmp_path, env=self.env)
        self.all.append(proc)
        return proc

    def config(self, name: str, workers: list[tuple[str, str]]) -> Path:
        """A configuration file: the runner's name and its workers as (type, name)."""
        lines = [f'name = "{name}"', "grace_period = 0.5"]
        if not workers:
            lines.append("workers = []")
        for kind, worker in workers:
            lines += ["[[workers]]", f'type = "{kind}"', f'name = "{worker}"']
        path = self.tmp_path / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def runner(self, url: str, name: str, workers: list[tuple[str, str]]) -> Proc:
        """``framework -p mp_workers run`` serving as runner ``name`` with ``workers``
        (without HTTP: the machine's default address is not the tests' to take)."""
        config = self.config(name, workers)
        args = ["-p", "mp_workers", "run", "--no-http", "--config", str(config), "--bus", url]
        return self.start(f"runner {name}", [FRAMEWORK, *args])

    def submit(self, url: str, worker: str, *args: str, name: str = "cli") -> Proc:
        """``framework run --job WORKER`` from a runner that hosts no worker."""
        config = self.config(name, [])
        return self.start(
            f"framework run --job {worker} ({name})",
            [FRAMEWORK, "run", "--config", str(config), "--bus", url, "--job", worker, *args],
        )

    def driver(self, url: str, *args: str, name: str = "driver") -> Proc:
        return self.start(
            f"driver {name}", [sys.executable, str(DRIVER), url, *args, "--name", name]
        )

    def close(self) -> None:
        running = [p for p in self.all if p.popen.poll() is None]
        for proc in running:
            proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in running:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc in self.all:
            for stream in (proc.popen.stdin, proc.popen.stdout, proc.popen.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()

    def describe(self) -> str:
        return "\n".join(p.describe() for p in self.all)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_serving(*procs: Proc) -> None:
    """Wait until each runner process says it serves."""
    for proc in procs:
        proc.wait_line("err", SERVING, START_TIMEOUT)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = Procs(tmp_path)
    try:
        yield group
    finally:
        group.close()
        print(group.describe())  # shown by pytest when the test failed


def namespace_of(url: str) -> str:
    found = re.search(r"namespace=([^&]+)", url)
    assert found is not None
    return found.group(1)


def response_line(proc: Proc) -> dict[str, Any]:
    """The ``{"type": "response", ...}`` line of ``framework run --job ... --json``."""
    responses = [line for line in proc.json_lines() if line.get("type") == "response"]
    assert len(responses) == 1, proc.describe()
    return responses[0]


# --------------------------------------------------------------------------- the cases


def test_job_across_runners(procs: Procs, redis_url: str) -> None:
    """Runner A hosts echo (and mp_whoami); ``framework run --job`` in another process,
    hosting no worker itself, gets the answers from A."""
    a = procs.runner(redis_url, "A", [("echo", "echo"), ("mp_whoami", "who")])
    wait_serving(a)
    echo = procs.submit(redis_url, "echo", "--payload", '{"text":"hi"}', "--json", name="cli1")
    who = procs.submit(
        redis_url, "who", "--payload", '{"n": 1}', "--json", "--timeout", "10", name="cli2"
    )
    assert echo.wait_exit(START_TIMEOUT) == 0, echo.describe()
    assert response_line(echo) == {
        "type": "response",
        "status": "completed",
        "response": {"text": "hi"},
    }
    assert who.wait_exit(START_TIMEOUT) == 0, who.describe()
    assert response_line(who)["response"] == {"runner": "A", "worker": "who", "payload": {"n": 1}}
    assert a.popen.poll() is None


def test_group_spanning_three_runners(procs: Procs, redis_url: str) -> None:
    runners = [procs.runner(redis_url, f"R{i}", [("mp_whoami", f"w{i}")]) for i in (1, 2, 3)]
    wait_serving(*runners)
    driver = procs.driver(redis_url, "group", "w1", "w2", "w3", "--payload", '{"x": 1}')
    _, group = driver.wait_event("group", START_TIMEOUT + 10)
    assert group["error"] is None, group
    assert group["statuses"] == {"w1": "completed", "w2": "completed", "w3": "completed"}
    for i in (1, 2, 3):
        assert group["responses"][f"w{i}"] == {
            "runner": f"R{i}",
            "worker": f"w{i}",
            "payload": {"x": 1},
        }
    assert driver.wait_exit(10) == 0, driver.describe()


def test_runner_killed_mid_job(procs: Procs, redis_url: str) -> None:
    """SIGKILL a runner while it runs jobs: each requester gets ERROR "runner B lost"
    within 5 s, and B's workers leave the requesters' registry (C's stay)."""
    b = procs.runner(redis_url, "B", [("mp_slow", "b_slow"), ("mp_whoami", "b_who")])
    c = procs.runner(redis_url, "C", [("mp_whoami", "c_who")])
    wait_serving(b, c)
    driver = procs.driver(
        redis_url,
        "slow",
        "b_slow",
        "--seconds",
        "30",
        "--ready",
        "b_who",
        "c_who",
        "--gone",
        "b_slow",
        "b_who",
        "--job-timeout",
        "25",
    )
    # The requester as a user runs it: framework run --job.
    cli = procs.submit(redis_url, "b_slow", "--payload", '{"seconds": 30}', "--json")
    # Both jobs run on B before it is killed.
    deadline = time.monotonic() + START_TIMEOUT + 10
    while b.count_lines("err", "mp_slow: started job") < 2:
        assert time.monotonic() < deadline, procs.describe()
        time.sleep(0.02)
    driver.wait_event("sent", 5)
    os.kill(b.pid, signal.SIGKILL)
    killed = time.monotonic()
    b.popen.wait(5)

    at, response = driver.wait_event("response", 5)
    assert at - killed < 5
    assert response["status"] == "error", response
    assert "runner B lost" in response["response"]["error"], response
    _, registry = driver.wait_event("registry", 6)
    assert "b_slow" not in registry["remote_workers"], registry
    assert "b_who" not in registry["remote_workers"], registry
    assert "c_who" in registry["remote_workers"], registry  # C is alive: it stays
    assert driver.wait_exit(10) == 0, driver.describe()

    code = cli.wait_exit(max(0.1, killed + 5 - time.monotonic()))
    assert time.monotonic() - killed < 5
    assert code == 1, cli.describe()
    line = response_line(cli)
    assert line["status"] == "error", line
    assert "runner B lost" in line["response"]["error"], line
    assert "job to worker 'b_slow' ended error: runner B lost" in cli.text("err")
    assert c.popen.poll() is None


def test_two_replicas_share_a_thousand_jobs(procs: Procs, redis_url: str) -> None:
    """Two runners host a worker of the same name: 1,000 jobs (50 at a time) are each
    answered once, by one replica, and both replicas serve."""
    r1 = procs.runner(redis_url, "R1", [("mp_whoami", "who")])
    r2 = procs.runner(redis_url, "R2", [("mp_whoami", "who")])
    wait_serving(r1, r2)
    driver = procs.driver(
        redis_url,
        "many",
        "who",
        "--count",
        "1000",
        "--concurrency",
        "50",
        "--job-timeout",
        "30",
        "--settle",
        "0.5",
        "--payload",
        '{"log": true}',
    )
    _, many = driver.wait_event("many", 60)
    results = many["results"]
    assert len(results) == 1000
    bad = [r for r in results if r["status"] != "completed"]
    assert not bad, bad[:5]
    job_ids = [r["job_id"] for r in results]
    assert len(set(job_ids)) == 1000
    assert sorted(r["response"]["payload"]["i"] for r in results) == list(range(1000))
    split = Counter(r["response"]["runner"] for r in results)
    print(f"replica split over 1000 jobs in {many['seconds']:.2f} s: {dict(split)}")
    assert set(split) == {"R1", "R2"}, split
    assert split["R1"] > 0 and split["R2"] > 0, split
    assert driver.wait_exit(10) == 0, driver.describe()
    # Served once, counted where it ran: no job ran on both replicas, none ran twice.
    served = {
        name: [
            line.rsplit(" ", 1)[1]
            for line in proc.text().splitlines()
            if "mp_whoami: served" in line
        ]
        for name, proc in (("R1", r1), ("R2", r2))
    }
    assert {name: len(ids) for name, ids in served.items()} == dict(split)
    assert sorted(served["R1"] + served["R2"]) == sorted(job_ids)


RECOVERY = 4.0
"""Seconds after Redis is back by which every process has reconnected and re-announced:
the bus retries with a backoff of at most 2 s (plus up to 50 % jitter), then heartbeats
every 0.2 s."""


def test_redis_restart_mid_traffic(own_redis_server: RedisServer, procs: Procs) -> None:
    """redis-server stopped for 3 s and started again on the same port while two drivers
    keep sending jobs (one every 50 ms, to a replicated worker and to a single one): no
    job hangs, every job ends COMPLETED or ERROR, and every job sent once the processes
    have had time to reconnect completes."""
    url = f"{own_redis_server.url}?namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2"
    r1 = procs.runner(url, "R1", [("mp_whoami", "who"), ("mp_whoami", "solo")])
    r2 = procs.runner(url, "R2", [("mp_whoami", "who")])
    wait_serving(r1, r2)
    drivers = {
        worker: procs.driver(
            url,
            "traffic",
            worker,
            "--every",
            "0.05",
            "--job-timeout",
            "10",
            "--deadline",
            "60",
            name=f"driver-{worker}",
        )
        for worker in ("who", "solo")
    }

    def results(proc: Proc) -> list[dict[str, Any]]:
        return [line for line in proc.json_lines() if line.get("event") == "result"]

    for proc in drivers.values():
        proc.wait_event("ready", START_TIMEOUT + 10)
    deadline = time.monotonic() + 10
    while any(sum(r["status"] == "completed" for r in results(p)) < 5 for p in drivers.values()):
        assert time.monotonic() < deadline, procs.describe()
        time.sleep(0.05)

    own_redis_server.stop()
    stopped = time.monotonic()
    time.sleep(3)
    own_redis_server.start()
    restarted = time.monotonic()
    # The runners say they lost Redis and got it back.
    for runner in (r1, r2):
        runner.wait_line("err", "lost the connection to Redis", 5)
        runner.wait_line("err", "reconnected to Redis", 10)
    # Traffic goes on for 2 s after the processes should have recovered.
    time.sleep(max(0.0, restarted + RECOVERY + 2 - time.monotonic()))
    for proc in drivers.values():
        proc.send("stop\n")

    problems = []
    for worker, proc in drivers.items():
        _, summary = proc.wait_event("traffic", 20)  # the jobs' timeouts are 10 s
        assert proc.wait_exit(10) == 0, proc.describe()
        done = results(proc)
        statuses = Counter(r["status"] for r in done)
        print(
            f"to {worker!r}: {summary['sent']} jobs sent, outcomes {dict(statuses)}; "
            f"Redis down for {restarted - stopped:.1f} s"
        )
        assert summary["answered"] == summary["sent"], summary
        assert sorted(r["i"] for r in done) == list(range(summary["sent"]))

        def when(r: dict[str, Any], worker: str = worker) -> str:
            return (
                f"job {r['i']} to {worker!r} sent {r['sent'] - stopped:+.2f} s from the stop "
                f"(Redis back at {restarted - stopped:+.2f} s), ended {r['status']} "
                f"{r['done'] - r['sent']:.2f} s later: {r['response']}"
            )

        # A job that ends CANCELLED hung until its own 10-s timeout.
        problems += [when(r) for r in done if r["status"] not in ("completed", "error")]
        late = [r for r in done if r["sent"] > restarted + RECOVERY]
        assert len(late) >= 20, (len(late), summary)
        problems += [when(r) for r in late if r["status"] != "completed"]
    for runner in (r1, r2):
        assert runner.popen.poll() is None, runner.describe()
    assert not problems, "\n".join(problems)


def test_connection_loss_ends_jobs_with_its_cause(
    own_redis_server: RedisServer, procs: Procs
) -> None:
    """redis-server stops while a job runs: the requester's job ends ERROR at once, and the
    error and the runner's log say why the connection was lost."""
    url = f"{own_redis_server.url}?namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2"
    s = procs.runner(url, "S", [("mp_slow", "s_slow")])
    wait_serving(s)
    driver = procs.driver(url, "slow", "s_slow", "--seconds", "30", "--job-timeout", "20")
    s.wait_line("err", "mp_slow: started job", START_TIMEOUT + 10)
    driver.wait_event("sent", 5)
    own_redis_server.stop()
    stopped = time.monotonic()
    at, response = driver.wait_event("response", 5)
    assert at - stopped < 5
    assert response["status"] == "error", response
    error = response["response"]["error"]
    assert error.startswith("the connection to Redis was lost ("), error
    _, lost = s.wait_line("err", "lost the connection to Redis", 5)
    # The reason names what happened to the connection, not how the bus's tasks ended.
    for text in (error, lost):
        assert "TaskGroup" not in text and "sub-exception" not in text, text


def test_garbage_and_oversized_messages_are_dropped(procs: Procs, redis_url: str) -> None:
    """Junk published straight onto the runners' channels, the broadcast channel and a
    worker's stream: each runner drops it with a warning naming the reason, and keeps
    serving."""
    url = f"{redis_url}&max_message_size=4096"
    ns = namespace_of(url)
    g1 = procs.runner(url, "G1", [("mp_whoami", "g1_who")])
    g2 = procs.runner(url, "G2", [("mp_whoami", "g2_who")])
    wait_serving(g1, g2)
    client = redis.Redis.from_url(url.split("?")[0])
    try:
        junk = [
            b"not json at all",
            b"\xff\xfe\x00binary",
            b"[]",
            b'{"kind": "msg"}',
            b'{"kind": "nope", "runner": "x"}',
            b'{"kind": "msg", "origin": "x", "message": {"type": "job_request"}}',
            b"x" * 10_000,
            b'{"kind": "msg", "pad": "' + b"y" * 5000 + b'"}',
        ]
        # The broadcast channel takes heartbeats up to HEARTBEAT_LIMIT whatever
        # max_message_size says (a heartbeat lists every worker of its runner).
        too_big_for_broadcast = b"x" * (HEARTBEAT_LIMIT + 1)
        for channel in (f"{ns}:runner:G1", f"{ns}:runner:G2", f"{ns}:all"):
            extra = [too_big_for_broadcast] if channel.endswith(":all") else []
            for data in junk + extra:
                receivers = client.publish(channel, data)
                assert receivers >= 1, channel  # someone listens: the runner(s)
        # A heartbeat on a runner's own channel: it belongs on the broadcast channel.
        beat = {
            "kind": "hb",
            "runner": "ghost",
            "instance": "i1",
            "interval": 1.0,
            "misses": 3,
            "workers": ["ghost_worker"],
        }
        client.publish(f"{ns}:runner:G1", json.dumps(beat))
        # Junk entries in a worker's stream (every runner reads its workers' streams), once
        # its consumer group exists (the runner makes it when it announces the worker;
        # entries added before would never be read).
        stream = f"{ns}:worker:g1_who"
        deadline = time.monotonic() + 5
        while not client.exists(stream) or not client.xinfo_groups(stream):
            assert time.monotonic() < deadline, f"no consumer group on {stream}"
            time.sleep(0.02)
        client.xadd(stream, {"m": b"junk in a stream"})
        client.xadd(stream, {"other": b"no m field"})
        client.xadd(stream, {"m": b"z" * 10_000})

        for runner, name in ((g1, "G1"), (g2, "G2")):
            err = runner.wait_line("err", "-byte limit", 5)[1]
            assert f"{name}: dropped a message from {ns}:" in err
            runner.wait_line("err", "not a valid envelope", 5)
            for where in (f"{ns}:runner:{name}", f"{ns}:all"):
                runner.wait_line(
                    "err",
                    lambda line, w=where: f"from {w}: " in line and "valid envelope" in line,
                    5,
                )
                runner.wait_line(
                    "err", lambda line, w=where: f"from {w}: " in line and "byte limit" in line, 5
                )
        g1.wait_line("err", "dropped a hb envelope from", 5)
        g1.wait_line("err", f"dropped a message from {stream}: not a valid envelope", 5)
        g1.wait_line("err", f"dropped a message from {stream}: 10000 bytes, over the", 5)
        g1.wait_line("err", f"dropped a stream entry of {stream} with no data", 5)
        # The junk entries were acknowledged and deleted: nobody reads them again.
        deadline = time.monotonic() + 5
        while client.xlen(stream) != 0:
            assert time.monotonic() < deadline, client.xrange(stream)
            time.sleep(0.05)
    finally:
        client.close()
    assert "Traceback" not in g1.text() + g2.text(), procs.describe()

    # Both keep serving.
    driver = procs.driver(url, "group", "g1_who", "g2_who")
    _, group = driver.wait_event("group", START_TIMEOUT + 10)
    assert group["statuses"] == {"g1_who": "completed", "g2_who": "completed"}, group
    assert group["responses"]["g1_who"]["runner"] == "G1"
    assert group["responses"]["g2_who"]["runner"] == "G2"
    assert driver.wait_exit(10) == 0
    assert g1.popen.poll() is None and g2.popen.poll() is None


def test_a_job_request_on_the_broadcast_channel_is_dropped(procs: Procs, redis_url: str) -> None:
    """The broadcast channel carries heartbeats and byes only (a heartbeat on a runner's
    channel is dropped: it belongs on the broadcast channel). A job request published there
    is not run by every runner that hosts its worker: it is dropped, with a warning."""
    ns = namespace_of(redis_url)
    g = procs.runner(redis_url, "G", [("mp_whoami", "g_who")])
    wait_serving(g)
    request = JobRequestMessage.build(
        source="ghost-requester", target="g_who", job_id="forged-1", payload={"log": True}
    )
    client = redis.Redis.from_url(redis_url.split("?")[0])
    try:
        assert client.publish(f"{ns}:all", RoutedEncoder("ghost").encode(request, f"{ns}:all")) >= 1
    finally:
        client.close()
    # A job afterwards: once it is answered, the forged one has been handled too.
    cli = procs.submit(redis_url, "g_who", "--payload", '{"log": true}', "--json")
    assert cli.wait_exit(START_TIMEOUT) == 0, cli.describe()
    assert "mp_whoami: served forged-1" not in g.text(), g.describe()
    assert g.count_lines("err", "mp_whoami: served") == 1, g.describe()
    g.wait_line("err", f"from {ns}:all", 2)


# --------------------------------------------------------------------------- the command


def test_job_to_a_worker_nobody_hosts(procs: Procs, redis_url: str) -> None:
    cli = procs.submit(redis_url, "nope", "--timeout", "1")
    started = time.monotonic()
    code = cli.wait_exit(START_TIMEOUT)
    assert code == 1, cli.describe()
    assert time.monotonic() - started < START_TIMEOUT
    bus = redis_url  # no password: printed as it is
    # The bus settles (it has heard every runner on it) well within --timeout: at once.
    assert f"framework: no worker named 'nope' on {bus} (workers: none)" in cli.text(), (
        cli.describe()
    )
    assert "Traceback" not in cli.text()


@pytest.mark.parametrize("mode", ["serve", "job"])
def test_unreachable_redis_exits_2(procs: Procs, mode: str) -> None:
    """Nothing listens on the port: exit 2 and a message naming the URL (its password
    hidden), whether the runner was to serve or to submit one job."""
    port = free_port()
    extra = ["--no-http"] if mode == "serve" else ["--job", "echo"]
    plain = procs.start("plain", [FRAMEWORK, "run", "--bus", f"redis://127.0.0.1:{port}/0", *extra])
    secret = procs.start(
        "secret", [FRAMEWORK, "run", "--bus", f"redis://:s3cr3t-pw@127.0.0.1:{port}/0", *extra]
    )
    for proc, shown in (
        (plain, f"redis://127.0.0.1:{port}/0"),
        (secret, f"redis://:***@127.0.0.1:{port}/0"),
    ):
        assert proc.wait_exit(START_TIMEOUT) == 2, proc.describe()
        err = proc.text()
        assert "s3cr3t-pw" not in err + proc.text("out")
        assert "Traceback" not in err
        assert SERVING not in err
        assert err.startswith("framework: configuration error: --bus: bus: "), err
        assert f"cannot reach Redis at {shown}: " in err, err


def _stream_events(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"event"]) for _, fields in client.xrange(key)]


@pytest.mark.parametrize("url_given", [True, False], ids=["explicit-url", "bus-url"])
def test_publisher_sends_events_to_a_stream(
    procs: Procs, redis_server: RedisServer, redis_url: str, url_given: bool
) -> None:
    """``[plugins.redis.publisher]`` in framework.toml: the events of a run arrive on a
    Redis stream; without ``url`` the publisher uses the bus URL (the documented default),
    which here carries the bus's own parameters (namespace, heartbeat)."""
    key = f"{namespace_of(redis_url)}:events"
    url = f'url = "{redis_server.url}"\n' if url_given else ""
    config = procs.tmp_path / "framework.toml"
    config.write_text(
        'name = "pub"\n'
        f'bus = "{redis_url}"\n'
        "[[workers]]\n"
        'type = "echo"\n'
        "[plugins.redis.publisher]\n"
        'to = "stream"\n'
        f'key = "{key}"\n' + url
    )
    cli = procs.start(
        "publisher", [FRAMEWORK, "run", "--job", "echo", "--payload", '{"text": "ev"}', "--json"]
    )
    assert cli.wait_exit(START_TIMEOUT) == 0, cli.describe()
    assert response_line(cli)["response"] == {"text": "ev"}
    client = redis.Redis.from_url(redis_server.url)
    try:
        events = _stream_events(client, key)
    finally:
        client.close()
    assert "redis publisher: cannot send events" not in cli.text(), cli.describe()
    assert events, f"no event on stream {key}\n{cli.describe()}"
    kinds = {(e["event"], e["event_type"]) for e in events}
    assert ("graph_execution", "start") in kinds and ("graph_execution", "end") in kinds, kinds
    assert any("ev" in json.dumps(e) for e in events), events
