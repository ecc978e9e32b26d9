"""Durable jobs on the Redis bus (at-least-once): a replica runs again what a lost runner
had, up to ``max_attempts``, then the job is dead-lettered; the requester sees one terminal
response; ``framework jobs`` lists, retries and drops; an ``idempotency-key`` header is
answered from the response kept for it. In one process, on a real redis-server: a runner
is "lost" by stopping its bus (it falls silent without a bye, its handlers still run)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis import bus as bus_module
from agent_plugin_redis._settings import RedisBusSettings, SettingsError
from agent_plugin_redis.bus import RedisBus
from conftest import RedisServer
from test_bus import MAY_HAVE_RUN, Proxy, bus_of, eventually, namespace_of, plain_url, run_job
from test_bus import runners as _runners

from framework import BaseWorker, Job, JobFailed, JobStatus, WorkerRunner, job
from framework.bus.network.durable import DurableJobError, DurableStore

pytestmark = pytest.mark.anyio


class Payments(BaseWorker):
    """``charge`` (durable, 3 attempts) and ``once`` (durable, 1 attempt) wait on
    ``release`` when the payload says ``hold``; ``plain`` does not; each run is recorded."""

    runs: list[tuple[str, str, int]]  # (job id, runner, attempt), shared by the replicas

    def __init__(self, name: str, runs: list[tuple[str, str, int]]) -> None:
        super().__init__(name)
        self.runs = runs
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def _run(self, j: Job) -> dict[str, Any]:
        self.runs.append((j.job_id, self.runner.name, j.attempt))
        self.started.set()
        if j.payload.get("hold") and j.attempt == 1:
            await self.release.wait()
        if j.payload.get("fail"):
            raise JobFailed("declined", {"code": 7})
        if j.payload.get("crash"):
            raise RuntimeError("boom")
        result: dict[str, Any] = {"runner": self.runner.name, "attempt": j.attempt}
        if "blob" in j.payload:
            result["blob"] = j.payload["blob"]
        return result

    @job(name="charge", durable=True)
    async def charge(self, j: Job) -> dict[str, Any]:
        return await self._run(j)

    @job(name="once", durable=True, max_attempts=1)
    async def once(self, j: Job) -> dict[str, Any]:
        return await self._run(j)

    @job(name="plain")
    async def plain(self, j: Job) -> dict[str, Any]:
        return await self._run(j)


SECRET = "a-bus-secret-of-32-characters-00"


@contextlib.asynccontextmanager
async def runners(
    url: str, *names: str, secret: str | None = None
) -> AsyncIterator[list[WorkerRunner]]:
    if secret is None:
        async with _runners(url, *names, grace=0.2) as started:
            yield started
        return
    async with contextlib.AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                WorkerRunner(name, bus=RedisBus(url, secret=secret), grace_period=0.2)
            )
            for name in names
        ]


async def leftovers(url: str, worker: str) -> tuple[int, int]:
    """Entries in the worker's stream, and in its group's pending list."""
    async with aioredis.Redis.from_url(plain_url(url)) as client:
        stream = f"{namespace_of(url)}:worker:{worker}"
        pending: Any = await client.xpending(stream, "workers")
        return int(await client.xlen(stream)), int(pending["pending"])


async def settled(url: str, worker: str, timeout: float = 5.0) -> None:
    deadline = anyio.current_time() + timeout
    while (found := await leftovers(url, worker)) != (0, 0):
        assert anyio.current_time() < deadline, f"left in the stream of {worker}: {found}"
        await anyio.sleep(0.05)


async def two_replicas(
    a: WorkerRunner, b: WorkerRunner, c: WorkerRunner, runs: list[tuple[str, str, int]]
) -> tuple[Payments, Payments]:
    on_b, on_c = Payments("pay", runs), Payments("pay", runs)
    await b.add_worker(on_b)
    await c.add_worker(on_c)
    await eventually(lambda: bus_of(a)._peers.hosts("pay") == {"b", "c"}, 5.0, "replicas")
    await eventually(lambda: bool(bus_of(a)._peers.jobs("b", "pay")), 5.0, "description")
    return on_b, on_c


async def test_a_durable_job_whose_runner_is_lost_completes_on_a_replica_as_attempt_2(
    redis_url: str,
) -> None:
    runs: list[tuple[str, str, int]] = []
    with anyio.fail_after(20):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            on_b, on_c = await two_replicas(a, b, c, runs)
            results: list[Any] = []

            async def ask() -> None:
                results.append(await run_job(a, "pay", name="charge", payload={"hold": True}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask)
                await eventually(lambda: bool(runs), 5.0, "started")
                first = runs[0][1]
                lost, other = (b, on_c) if first == "b" else (c, on_b)
                assert bus_of(lost)._tg is not None
                bus_of(lost)._tg.cancel_scope.cancel()  # silent: no heartbeat, no bye
            assert results == [(JobStatus.COMPLETED, {"runner": other.runner.name, "attempt": 2})]
            assert [(r, n) for _, r, n in runs] == [(first, 1), (other.runner.name, 2)]
            # The lost runner's handler finishing later writes nothing: one response only.
            (on_b if first == "b" else on_c).release.set()
            await anyio.sleep(0.3)
            assert len(results) == 1
            await settled(redis_url, "pay")


async def test_a_durable_job_to_a_single_host_goes_through_its_stream_and_leaves_nothing(
    redis_url: str,
) -> None:
    runs: list[tuple[str, str, int]] = []
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Payments("pay", runs))
            await eventually(lambda: bool(bus_of(a)._peers.jobs("b", "pay")), 5.0)
            status, response = await run_job(a, "pay", name="charge")
            assert (status, response) == (JobStatus.COMPLETED, {"runner": "b", "attempt": 1})
            status, _ = await run_job(a, "pay", name="charge", payload={"fail": True})
            assert status is JobStatus.FAILED
            async with aioredis.Redis.from_url(plain_url(redis_url)) as client:
                info: Any = await client.xinfo_stream(f"{namespace_of(redis_url)}:worker:pay")
            assert info["entries-added"] == 2  # both durable requests went through it
            await settled(redis_url, "pay")


async def test_a_durable_job_completes_after_redis_forgot_its_scripts(redis_url: str) -> None:
    """Redis lost its scripts (``SCRIPT FLUSH``, as after a restart): a durable job's
    response, sent by a script, still goes out (the script is sent again) and the job
    completes, its entry gone."""
    runs: list[tuple[str, str, int]] = []
    with anyio.fail_after(15):
        async with runners(redis_url, "a", "b") as (a, b):
            await b.add_worker(Payments("pay", runs))
            await eventually(lambda: bool(bus_of(a)._peers.jobs("b", "pay")), 5.0)
            for _ in range(2):
                async with aioredis.Redis.from_url(plain_url(redis_url)) as client:
                    await client.script_flush()
                status, response = await run_job(a, "pay", name="charge", timeout=5)
                assert (status, response) == (JobStatus.COMPLETED, {"runner": "b", "attempt": 1})
            await settled(redis_url, "pay")


@pytest.mark.parametrize(
    "protocol", ["protocol=2", "protocol=3", "protocol=3&legacy_responses=false"]
)
async def test_durable_jobs_big_and_small_complete_on_either_protocol(
    redis_server: RedisServer, protocol: str
) -> None:
    """Durable jobs to a worker's stream, on RESP2 and RESP3 and with redis-py's newer
    reply shapes (stream replies are shaped otherwise on each), small ones (on the
    session's line) and big ones (over 64 KiB: on a pooled connection, request and
    response, sent again after Redis lost its scripts), complete and leave nothing."""
    url = f"{redis_server.url}?namespace=t{uuid.uuid4().hex[:12]}&heartbeat=0.2&{protocol}"
    runs: list[tuple[str, str, int]] = []
    with anyio.fail_after(15):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Payments("pay", runs))
            await eventually(lambda: bool(bus_of(a)._peers.jobs("b", "pay")), 5.0)
            for blob in ("", "x" * 100_000, "y" * 100_000):
                if blob.startswith("y"):
                    async with aioredis.Redis.from_url(plain_url(url)) as client:
                        await client.script_flush()
                status, response = await run_job(
                    a, "pay", name="charge", payload={"blob": blob}, timeout=5
                )
                expected = {"runner": "b", "attempt": 1, "blob": blob}
                assert (status, response) == (JobStatus.COMPLETED, expected)
            assert len(runs) == 3
            await settled(url, "pay")


def _documented_acl(user: str, password: str, namespace: str) -> list[str]:
    """The ``ACL SETUSER`` command docs/distributed.md gives for the namespace
    ``framework``, for ``user``, ``password`` and ``namespace`` instead."""
    docs = Path(__file__).resolve().parents[3] / "docs" / "distributed.md"
    line = next(
        text for text in docs.read_text().splitlines() if text.startswith("ACL SETUSER framework ")
    )
    words = line.split()[2:]  # after ACL SETUSER
    swap = {"framework": user, ">a-long-secret": f">{password}"}
    return [swap.get(w, w.replace("framework:", f"{namespace}:")) for w in words]


async def test_the_documented_acl_user_runs_plain_durable_and_keyed_jobs(
    redis_server: RedisServer,
) -> None:
    """A runner logged in as the Redis ACL user the docs give (limited to its namespace's
    keys, channels and the commands listed) runs plain jobs, durable jobs and jobs with an
    idempotency key, and ``framework jobs`` can read the dead-letter list: the list names
    every command the bus uses."""
    namespace = f"acl{uuid.uuid4().hex[:8]}"
    user = f"user-{namespace}"
    async with aioredis.Redis.from_url(redis_server.url) as admin:
        await admin.execute_command("ACL", "SETUSER", *_documented_acl(user, "pw-x", namespace))
    url = (
        f"redis://{user}:pw-x@127.0.0.1:{redis_server.port}/0?namespace={namespace}"
        "&heartbeat=0.2&idempotency_ttl=60"
    )
    runs: list[tuple[str, str, int]] = []
    try:
        with anyio.fail_after(15):
            async with runners(url, "a", "b") as (a, b):
                await b.add_worker(Payments("pay", runs))
                await eventually(lambda: bool(bus_of(a)._peers.jobs("b", "pay")), 5.0)
                done = (JobStatus.COMPLETED, {"runner": "b", "attempt": 1})
                assert await run_job(a, "pay", name="plain", timeout=5) == done
                assert await run_job(a, "pay", name="charge", timeout=5) == done
                keyed = {"idempotency-key": "k1"}
                for _ in range(2):
                    assert await run_job(a, "pay", name="charge", headers=keyed) == done
                assert len(runs) == 3  # the keyed job ran once
                async with aioredis.Redis.from_url(redis_server.url) as admin:
                    await admin.script_flush()  # sent again as EVAL, never SCRIPT LOAD
                big = {"blob": "z" * 100_000}  # a pooled connection's script
                status, response = await run_job(a, "pay", name="charge", payload=big)
                assert (status, response) == (JobStatus.COMPLETED, {**done[1], **big})
                assert await RedisBus(url).durable_jobs() == []
    finally:
        async with aioredis.Redis.from_url(redis_server.url) as admin:
            await admin.acl_deluser(user)


@pytest.mark.parametrize("secret", [None, SECRET], ids=["unsigned", "signed"])
async def test_past_max_attempts_the_job_is_dead_listed_retried_and_dropped(
    redis_url: str, secret: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a bus secret too: the retried request is signed again (its old signature is
    stale by then: here after 1 s), and the dropped job's ERROR is signed."""
    monkeypatch.setattr(bus_module, "MAX_AGE", 1.0)
    runs: list[tuple[str, str, int]] = []
    with anyio.fail_after(20):
        async with runners(redis_url, "a", "b", "c", secret=secret) as (a, b, c):
            on_b, on_c = await two_replicas(a, b, c, runs)
            store = RedisBus(redis_url, secret=secret)
            assert isinstance(store, DurableStore)
            results: list[Any] = []

            async def ask(name: str) -> None:
                results.append(await run_job(a, "pay", name=name, payload={"hold": True}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "once")
                await eventually(lambda: bool(runs), 5.0, "started")
                (job_id, first, _attempt) = runs[0]
                listed = await store.durable_jobs()
                assert [(j.job_id, j.state, j.attempts, j.name) for j in listed] == [
                    (job_id, "pending", 1, "once")
                ]
                lost, live = (b, c) if first == "b" else (c, b)
                assert bus_of(lost)._tg is not None
                bus_of(lost)._tg.cancel_scope.cancel()
            ((status, response),) = results
            assert status is JobStatus.ERROR
            assert response is not None and response["outcome"] == "unknown"
            assert "ran 1 time(s), its max_attempts" in response["error"]
            assert MAY_HAVE_RUN in response["error"]
            assert len(runs) == 1  # not run again
            (dead,) = await store.durable_jobs()
            assert (dead.job_id, dead.state, dead.attempts, dead.worker) == (
                job_id,
                "dead",
                1,
                "pay",
            )
            assert f"the last: {first}" in dead.error
            await settled(redis_url, "pay")

            with pytest.raises(DurableJobError, match="no dead durable job 'nope'"):
                await store.retry_durable_job("nope")
            on_b.release.set()
            on_c.release.set()
            await anyio.sleep(1.2)  # the request's signature is stale now
            assert (await store.retry_durable_job(job_id)).state == "dead"
            await eventually(lambda: len(runs) == 2, 5.0, "run again after retry")
            assert runs[1] == (job_id, live.name, 1)
            await settled(redis_url, "pay")
            assert await store.durable_jobs() == []
            on_b.release, on_c.release = anyio.Event(), anyio.Event()

            # Drop a pending job: its requester is answered at once; the handler's late
            # response is not written.
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, "charge")
                await eventually(lambda: len(runs) == 3, 5.0, "started")
                dropped = await store.drop_durable_job(runs[2][0])
                assert dropped.state == "pending"
            assert results[-1] == (
                JobStatus.ERROR,
                {"error": "the durable job was dropped (framework jobs drop)"},
            )
            on_b.release.set()
            on_c.release.set()
            await anyio.sleep(0.3)
            assert len(results) == 2
            await settled(redis_url, "pay")
            with pytest.raises(DurableJobError, match="no durable job"):
                await store.drop_durable_job(job_id)


async def test_the_store_says_plainly_when_redis_cannot_be_reached() -> None:
    store = RedisBus("redis://:secret@127.0.0.1:1/0")
    with pytest.raises(ConnectionError, match=r"cannot reach Redis at redis://:\*\*\*@127") as e:
        await store.durable_jobs()
    assert "secret" not in str(e.value)


async def test_an_idempotency_key_is_answered_from_the_first_response(redis_url: str) -> None:
    runs: list[tuple[str, str, int]] = []
    url = f"{redis_url}&idempotency_ttl=60"
    with anyio.fail_after(10):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Payments("pay", runs))
            await eventually(lambda: bool(bus_of(a)._peers.jobs("b", "pay")), 5.0)

            async def ask(name: str, key: str, **payload: Any) -> Any:
                headers = {"idempotency-key": key}
                return await run_job(a, "pay", name=name, payload=payload, headers=headers)

            first = await ask("charge", "k1")
            assert first == (JobStatus.COMPLETED, {"runner": "b", "attempt": 1})
            assert await ask("charge", "k1") == first
            assert await ask("plain", "k1") == (first[0], {"runner": "b", "attempt": 1})
            assert await ask("plain", "k1") == first
            assert len(runs) == 2  # one per (worker, job name, key)
            failed = await ask("charge", "k2", fail=True)
            assert failed[0] is JobStatus.FAILED
            assert await ask("charge", "k2", fail=True) == failed
            assert len(runs) == 3
            crashed = await ask("charge", "k3", crash=True)
            assert crashed[0] is JobStatus.ERROR
            assert (await ask("charge", "k3", crash=True))[0] is JobStatus.ERROR
            assert len(runs) == 5  # an ERROR is not kept: a retry runs again
            async with aioredis.Redis.from_url(plain_url(url)) as client:
                keys = [k async for k in client.scan_iter(f"{namespace_of(url)}:idem:*")]
                assert len(keys) == 3
                assert 50 < await client.ttl(keys[0]) <= 60
            await settled(url, "pay")


async def test_a_runner_cut_off_from_redis_leaves_the_live_replicas_jobs_alone(
    own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runner a loses its own link to Redis (its replicas' heartbeats stop reaching it): once
    back, it must not take the live replica b's consumer for a gone one, and sweep (answer
    ERROR, delete) or claim b's jobs in flight."""
    monkeypatch.setattr(bus_module, "_SWEEP_EVERY", 0.2)
    base = f"?namespace=t{uuid.uuid4().hex[:8]}&heartbeat=0.2"
    url = own_redis_server.url + base
    runs: list[tuple[str, str, int]] = []
    with anyio.fail_after(20):
        async with Proxy(own_redis_server.port).running() as proxy:
            cut_url = f"redis://127.0.0.1:{proxy.port}/0{base}"
            async with runners(url, "r", "b") as (r, b), runners(cut_url, "a") as (a,):
                on_a, on_b = Payments("pay", runs), Payments("pay", runs)
                await a.add_worker(on_a)
                await b.add_worker(on_b)
                await eventually(lambda: bus_of(r)._peers.hosts("pay") == {"a", "b"}, 5.0)
                results: list[Any] = []

                async def ask(name: str) -> None:
                    results.append(await run_job(r, "pay", name=name, payload={"hold": True}))

                async with anyio.create_task_group() as tg:
                    while not any(runner == "b" for _, runner, _ in runs):
                        tg.start_soon(ask, "plain")
                        tg.start_soon(ask, "charge")
                        await anyio.sleep(0.05)
                    proxy.cut()
                    await eventually(lambda: not bus_of(a)._connected, 5.0, "a cut off")
                    await eventually(lambda: bus_of(a)._connected, 5.0, "a back")
                    await eventually(lambda: "b" in bus_of(a)._peers, 5.0, "a hears b again")
                    await anyio.sleep(1.0)  # several sweeps of a
                    on_a.release.set()
                    on_b.release.set()
                ran_on_b = [job_id for job_id, runner, _n in runs if runner == "b"]
                answered_by_b = [
                    response
                    for status, response in results
                    if status is JobStatus.COMPLETED and response["runner"] == "b"
                ]
                assert ran_on_b
                assert len(answered_by_b) == len(ran_on_b), (results, runs)
                first_on_b = {job_id for job_id, runner, n in runs if runner == "b" and n == 1}
                assert not [job_id for job_id, _r, n in runs if n > 1 and job_id in first_on_b]


def test_idempotency_ttl_is_a_url_parameter_checked_like_the_others() -> None:
    assert RedisBusSettings.from_url("redis://h/0").idempotency_ttl == 24 * 3600
    assert RedisBusSettings.from_url("redis://h/0?idempotency_ttl=60").idempotency_ttl == 60
    for bad in ("0", "1.5", "abc", "99999999999"):
        with pytest.raises(SettingsError, match=f"idempotency_ttl='{bad}'"):
            RedisBusSettings.from_url(f"redis://h/0?idempotency_ttl={bad}")
