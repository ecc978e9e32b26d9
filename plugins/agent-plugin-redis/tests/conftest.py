"""Fixtures: a real ``redis-server`` on 127.0.0.1, on a free port, started by the tests.

The Debian package ``redis-server`` provides the binary (``.ci/run`` installs it when it is
missing). Without it the tests are skipped on a developer's machine and fail under CI
(``CI=true``), so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's asyncio client: the Redis bus runs on asyncio only.
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_binary() -> str:
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if path is None:
        message = "redis-server is not installed (Debian: apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run should have installed it")
        pytest.skip(message)
    return path


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; it keeps nothing on disk."""

    def __init__(self, directory: Path, port: int | None = None, *extra: str) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def listen_args(self) -> list[str]:
        """Where the server listens (a subclass may listen with TLS instead)."""
        return ["--port", str(self.port)]

    def answers(self) -> bool:
        """One PING on a new connection: True when the server answers it."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))

    def start(self) -> None:
        """Start (or restart, on the same port) and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                *self.listen_args(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.log),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}: {output[-1000:]}"
                )
            try:
                if self.answers():
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within 10 s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A server shared by the tests that do not stop it (each uses its own namespace)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server for one test, which may stop, kill or restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A bus URL on the shared server, in a namespace of this test's own, with fast
    heartbeats (0.2 s: a silent runner is lost after 0.6 s)."""
    return f"{redis_server.url}?namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2"


@contextlib.asynccontextmanager
async def channel_limited_user(server: RedisServer, *channels: str) -> AsyncIterator[str]:
    """The URL of a user of ``server`` who may run any command on any key but use only
    the pub/sub channels matching ``channels`` (glob patterns): Redis refuses a PUBLISH to
    any other, the way it refuses a command for lack of memory. Deleted on exit."""
    admin = aioredis.Redis.from_url(server.url)
    user = f"limited-{uuid.uuid4().hex[:8]}"
    await admin.acl_setuser(
        user, enabled=True, passwords=["+limited-password"], keys=["*"], commands=["+@all"]
    )
    rules = [f"&{channel}" for channel in channels]
    await admin.execute_command("ACL", "SETUSER", user, "resetchannels", *rules)
    try:
        yield f"redis://{user}:limited-password@127.0.0.1:{server.port}/0"
    finally:
        with contextlib.suppress(Exception):  # (a test may have stopped the server)
            await admin.acl_deluser(user)
        await admin.aclose()
