"""A password-protected redis-server, and one speaking TLS only (``rediss://``)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis._settings import PASSWORD_ENV
from agent_plugin_redis.bus import RedisBus, RedisUnavailableError
from agent_plugin_redis.publisher import RedisEventPublisher
from conftest import RedisServer

from framework import BaseWorker, Job, JobStatus, WorkerRunner, job
from framework.events import EventModel

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret"


class Echo(BaseWorker):
    @job
    async def echo(self, j: Job) -> dict[str, Any]:
        return {"payload": j.payload, "runner": self.runner.name}


def namespaced(url: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2"


async def job_across_two_runners(url: str) -> None:
    """Runner b hosts echo; runner a asks it one job through ``url``."""
    async with (
        WorkerRunner("a", bus=RedisBus(url)) as a,
        WorkerRunner("b", bus=RedisBus(url)) as b,
    ):
        await b.add_worker(Echo("echo"))
        await a.registry.wait_ready("echo")
        async with a.job("echo", payload={"secure": True}) as j:
            pass
        assert j.status is JobStatus.COMPLETED
        assert j.response == {"payload": {"secure": True}, "runner": "b"}


async def start_error(url: str) -> str:
    """The text of the RedisUnavailableError a bus on ``url`` raises when it starts."""
    bus = RedisBus(url)
    bus.attach(WorkerRunner("a", bus=bus))
    with pytest.raises(RedisUnavailableError) as caught:
        await bus.start()
    return str(caught.value)


# --------------------------------------------------------------------------- password


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-auth"), None, "--requirepass", PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_password_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


async def test_password_in_the_url(auth_server: RedisServer) -> None:
    url = namespaced(f"redis://:{PASSWORD}@127.0.0.1:{auth_server.port}/0")
    with anyio.fail_after(10):
        await job_across_two_runners(url)


async def test_no_password_fails_clearly(auth_server: RedisServer) -> None:
    with anyio.fail_after(15):
        text = await start_error(namespaced(auth_server.url))
    assert f"cannot reach Redis at redis://127.0.0.1:{auth_server.port}/0" in text
    assert "authenticat" in text.lower()
    assert "password" in text


async def test_wrong_password_fails_clearly_and_hides_it(auth_server: RedisServer) -> None:
    url = namespaced(f"redis://:wrong-one@127.0.0.1:{auth_server.port}/0")
    with anyio.fail_after(15):
        text = await start_error(url)
    assert f"redis://:***@127.0.0.1:{auth_server.port}/0" in text
    assert "wrong-one" not in text
    assert "invalid" in text.lower() or "WRONGPASS" in text


async def test_password_from_the_environment(
    auth_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    with anyio.fail_after(10):
        await job_across_two_runners(namespaced(auth_server.url))


async def test_the_publisher_uses_the_environment_password_too(
    auth_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``framework run --bus redis://host/0`` with FRAMEWORK_REDIS_PASSWORD set: the bus
    authenticates, and so must the publisher, whose URL defaults to the bus's."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    stream = f"events-{uuid.uuid4().hex[:8]}"
    publisher = RedisEventPublisher.from_config({"key": stream}, default_url=auth_server.url)
    runner = WorkerRunner("pub", plugins=[publisher])
    await runner.add_worker(Echo("echo"))
    with anyio.fail_after(10):
        async with runner, runner.job("echo"):
            pass
    (stats,) = runner.event_stats().values()
    assert stats.failed == 0 and stats.delivered > 0


# --------------------------------------------------------------------------- TLS


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, and a certificate it signed for 127.0.0.1 (in the subject and as an IP SAN)."""
    where = tmp_path_factory.mktemp("tls")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=framework test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=where,
    )  # fmt: skip
    openssl(
        "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1",
        cwd=where,
    )  # fmt: skip
    (where / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.cnf",
        cwd=where,
    )  # fmt: skip
    # A second CA that signed nothing here: trusting it only must fail.
    openssl(
        "req", "-x509", *ec, "-keyout", "other.key", "-out", "other-ca.pem", "-days", "2",
        "-subj", "/CN=some other CA",
        cwd=where,
    )  # fmt: skip
    return where


class TLSRedisServer(RedisServer):
    """A ``redis-server`` that listens with TLS only (``--port 0``)."""

    def __init__(self, directory: Path, certs: Path) -> None:
        super().__init__(directory)
        self.certs = certs

    @property
    def ca(self) -> Path:
        return self.certs / "ca.pem"

    def url(self, **params: str) -> str:  # type: ignore[override]
        query = "&".join(f"{k}={v}" for k, v in {"ssl_ca_certs": str(self.ca), **params}.items())
        return f"rediss://127.0.0.1:{self.port}/0?{query}"

    def listen_args(self) -> list[str]:
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.certs / "server.pem"),
            "--tls-key-file", str(self.certs / "server.key"),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def answers(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca))
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")

    def start(self) -> None:
        try:
            super().start()
        except RuntimeError as exc:
            if "TLS" in str(exc) and ("not" in str(exc) or "support" in str(exc)):
                pytest.fail(f"redis-server was built without TLS support: {exc}")
            raise


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, certificates: Path
) -> Iterator[TLSRedisServer]:
    server = TLSRedisServer(tmp_path_factory.mktemp("redis-tls"), certificates)
    server.start()
    yield server
    server.stop()


async def test_job_across_runners_over_tls(tls_server: TLSRedisServer) -> None:
    with anyio.fail_after(10):
        await job_across_two_runners(namespaced(tls_server.url()))


async def test_tls_with_a_ca_that_did_not_sign_the_server_fails_clearly(
    tls_server: TLSRedisServer,
) -> None:
    url = tls_server.url().replace("ca.pem", "other-ca.pem")
    with anyio.fail_after(15):
        text = await start_error(namespaced(url))
    assert f"cannot reach Redis at rediss://127.0.0.1:{tls_server.port}/0" in text
    assert "certificate verify failed" in text


async def test_publisher_over_tls(tls_server: TLSRedisServer) -> None:
    stream = f"events-{uuid.uuid4().hex[:8]}"
    publisher = RedisEventPublisher(tls_server.url(), to="stream", key=stream)
    runner = WorkerRunner("pub-tls", plugins=[publisher])
    await runner.add_worker(Echo("echo"))
    with anyio.fail_after(10):
        async with runner, runner.job("echo"):
            pass
        async with _client(tls_server.url()) as client:
            entries = await client.xrange(stream)
    events = [EventModel.model_validate_json(fields[b"event"]) for _, fields in entries]
    assert (str(events[0].event), str(events[0].event_type)) == ("graph_execution", "start")
    assert (str(events[-1].event), str(events[-1].event_type)) == ("graph_execution", "end")


@contextlib.asynccontextmanager
async def _client(url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    async with client:
        yield client
