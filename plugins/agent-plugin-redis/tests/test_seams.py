"""The seams for plugins across runners on one Redis: request headers reach a handler on
another runner unchanged, each worker's description reaches the other registries, and a
value that cannot travel ends its own job ERROR and nothing else."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from pydantic import BaseModel
from test_bus import Echo, Gate, bus_of, eventually, namespace_of, plain_url, run_job, runners

from framework import BaseWorker, Job, JobStatus, WorkerRunner, hookimpl, job
from framework.bus.messages import JobRequestMessage, JobResponseMessage
from framework.llm.assistant import Assistant
from framework.types import JobDescription

pytestmark = pytest.mark.anyio

HEADERS = {
    "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "tenant-id": "t-1",
    "note": 'é ✓ "quoted" \\ {json} \n',
}


class Keeper(BaseWorker):
    """Answers with the headers it was sent, and the runner it ran on."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.seen: list[dict[str, str]] = []
        self.got = anyio.Event()

    @job
    async def keep(self, j: Job) -> dict[str, Any]:
        self.seen.append(dict(j.headers))
        self.got.set()
        return {"headers": dict(j.headers), "runner": self.runner.name}


# --------------------------------------------------------------------------- headers


async def test_headers_reach_a_handler_on_another_runner_unchanged(redis_url: str) -> None:
    """A single job, a group across two runners, a replicated worker (its jobs go through
    its stream) and a fire-and-forget request: each handler sees the headers as sent."""
    with anyio.fail_after(15):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            single, member, quiet = Keeper("single"), Keeper("member"), Keeper("quiet")
            await b.add_worker(single)
            await c.add_worker(member)
            await b.add_worker(quiet)
            replicas = [Keeper("replica"), Keeper("replica")]
            await b.add_worker(replicas[0])
            await c.add_worker(replicas[1])
            for name in ("single", "member", "quiet", "replica"):
                await a.registry.wait_ready(name)
            await eventually(lambda: len(bus_of(a)._peers.hosts("replica")) == 2)

            async with a.job("single", headers=HEADERS) as one:
                pass
            assert one.response == {"headers": HEADERS, "runner": "b"}

            async with a.job_group("single", "member", headers=HEADERS) as group:
                pass
            assert group.responses["single"] == {"headers": HEADERS, "runner": "b"}
            assert group.responses["member"] == {"headers": HEADERS, "runner": "c"}

            ran_on = set()
            for _ in range(6):
                async with a.job("replica", headers=HEADERS) as replicated:
                    pass
                assert replicated.response is not None
                assert replicated.response["headers"] == HEADERS
                ran_on.add(replicated.response["runner"])
            assert ran_on <= {"b", "c"}

            await a.request_job("quiet", headers=HEADERS)
            await quiet.got.wait()
            assert quiet.seen == [HEADERS]

            async with a.job("single") as plain:
                pass
            assert plain.response == {"headers": {}, "runner": "b"}


async def test_headers_added_by_a_plugin_cross_runners(redis_url: str) -> None:
    """``add_request_headers`` runs on the requester's runner; what it adds arrives."""

    class Tenant:
        @hookimpl
        def add_request_headers(self, headers: dict[str, str], target: str) -> None:
            headers["tenant-id"] = f"for-{target}"

    with anyio.fail_after(10):
        async with runners(redis_url, "b") as (b,):
            await b.add_worker(Keeper("keeper"))
            async with WorkerRunner("a", bus=type(bus_of(b))(redis_url), plugins=[Tenant()]) as a:
                await a.registry.wait_ready("keeper")
                async with a.job("keeper", headers={"traceparent": "00-x"}) as j:
                    pass
    assert j.response == {
        "headers": {"traceparent": "00-x", "tenant-id": "for-keeper"},
        "runner": "b",
    }


async def test_a_job_request_a_reader_would_refuse_ends_error_unsent(redis_url: str) -> None:
    """A request built past the checks at the call (``JobRequestMessage.build`` by code of
    its own) with a header value that is not a str: the runner that hosts the worker would
    drop it, so the sender ends it ERROR at once, naming the header, and sends nothing."""
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            keeper = Keeper("keeper")
            await b.add_worker(keeper)
            await a.registry.wait_ready("keeper")
            inbox = bus_of(a).subscribe("asker")
            request = JobRequestMessage.build(
                source="asker", target="keeper", job_id="job-1", headers={"retries": 3}
            )
            await bus_of(a).send(request)
            reply = await inbox.receive()
            bus_of(a).unsubscribe("asker")
            assert isinstance(reply, JobResponseMessage)
            assert (reply.job_id, reply.source, reply.status) == (
                "job-1",
                "keeper",
                JobStatus.ERROR,
            )
            assert "headers.retries" in reply.response["error"], reply.response
            status, _ = await run_job(a, "keeper", headers={"retries": "3"})
            assert status is JobStatus.COMPLETED
            assert keeper.seen == [{"retries": "3"}]
            assert bus_of(b).dropped_messages == 0


@pytest.mark.parametrize("replicated", [False, True])
async def test_a_job_request_the_receiver_cannot_read_is_answered_error(
    redis_url: str, replicated: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A request whose headers (or anything else) the receiving runner refuses, from a
    runner whose checks differ (another version, say): the reader drops it with a logged
    reason and answers ERROR to its requester, who would otherwise wait for ever. On a
    worker's stream the entry is acknowledged and deleted too."""
    ns = namespace_of(redis_url)
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "b", "c") as (b, c):
            await b.add_worker(Keeper("keeper"))
            if replicated:
                await c.add_worker(Keeper("keeper"))
                await eventually(lambda: len(bus_of(b)._peers.hosts("keeper")) == 1)
            request = JobRequestMessage.build(
                source="asker", target="keeper", job_id="job-1", headers={"retries": 3}
            )
            envelope = {
                "kind": "msg",
                "origin": "spy",
                "message": json.loads(request.model_dump_json(warnings=False)),
            }
            async with client.pubsub() as spy:
                await spy.subscribe(f"{ns}:runner:spy")
                raw = json.dumps(envelope).encode()
                async with client.pipeline(transaction=False) as pipe:
                    for _ in range(2):  # sent twice: answered (at least) once, and no harm
                        if replicated:
                            pipe.xadd(f"{ns}:worker:keeper", {b"m": raw, b"j": b"job-1"})
                        else:
                            pipe.publish(f"{ns}:runner:b", raw)
                    await pipe.execute()
                while True:
                    item = await spy.get_message(ignore_subscribe_messages=True, timeout=5)
                    if item is not None:
                        break
            answer = json.loads(item["data"])
            message = answer["message"]
            assert message["type"] == "job_response"
            assert message["job_id"] == "job-1" and message["target"] == "asker"
            assert message["source"] == "keeper" and message["status"] == "error"
            assert "headers.retries" in message["response"]["error"]
            await eventually(lambda: bus_of(b).dropped_messages + bus_of(c).dropped_messages == 2)
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any("headers.retries" in text and "dropped" in text for text in warnings)
            if replicated:
                with anyio.fail_after(3):
                    while await client.xlen(f"{ns}:worker:keeper"):
                        await anyio.sleep(0.02)
            status, _ = await run_job(c, "keeper", headers=HEADERS)
            assert status is JobStatus.COMPLETED


# --------------------------------------------------------------------------- descriptions


class ReverseIn(BaseModel):
    text: str
    times: int = 1


class ReverseOut(BaseModel):
    text: str


class Typed(BaseWorker):
    """A worker with typed payloads: its description carries their schemas."""

    @job
    async def reverse(self, j: Job, data: ReverseIn) -> ReverseOut:
        """Reverse the text, ``times`` times over."""
        return ReverseOut(text=data.text[::-1] * data.times)

    @job(name="count")
    async def count(self, j: Job, data: ReverseIn) -> AsyncIterator[dict[str, int]]:
        """Count the characters of the text, one by one."""
        for i in range(len(data.text)):
            yield {"i": i}


def jobs_of(runner: WorkerRunner, name: str) -> tuple[JobDescription, ...] | None:
    data = runner.registry.get(name)
    return None if data is None else data.jobs


async def test_a_remote_workers_description_reaches_the_other_runners(redis_url: str) -> None:
    """A runner on the bus has the description when the worker is registered there; a
    runner that joins later gets it too; an assistant there offers the typed payload's
    schema to its model; and the typed job runs across runners."""
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b") as (a, b):
            typed = Typed("typed")
            described = tuple(typed.describe())
            assert described[0].input_schema == ReverseIn.model_json_schema()
            await b.add_worker(typed)
            await a.registry.wait_ready("typed")
            assert jobs_of(a, "typed") == described

            assistant = Assistant("assistant")
            await a.add_worker(assistant)
            tools = {tool.name: tool for tool in assistant.tools()}
            assert tools["typed"].parameters == ReverseIn.model_json_schema()
            assert "Reverse the text" in tools["typed"].description

            async with runners(redis_url, "c") as (c,):
                await c.registry.wait_ready("typed")
                await eventually(lambda: jobs_of(c, "typed") == described)
                await eventually(lambda: jobs_of(c, "assistant") == tuple(assistant.describe()))
            async with a.job("typed", payload={"text": "abc", "times": 2}) as j:
                pass
            assert j.response == {"text": "cbacba"}
            status, response = await run_job(a, "typed", payload={"times": 2})
            assert status is JobStatus.FAILED and response is not None
            assert "text" in response["error"]


async def test_descriptions_travel_once_not_in_every_heartbeat(redis_url: str) -> None:
    """One description per worker on the broadcast channel however many heartbeats go by,
    none in the heartbeats, and one on the channel of a runner that joins later."""
    ns = namespace_of(redis_url)
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, client.pubsub() as spy:
            await spy.subscribe(f"{ns}:all", f"{ns}:runner:c")
            async with runners(redis_url, "a", "b") as (a, b):
                await b.add_worker(Typed("typed"))
                await a.registry.wait_ready("typed")
                await anyio.sleep(1.0)  # five heartbeats of each runner
                async with runners(redis_url, "c") as (c,):
                    await eventually(lambda: bool(jobs_of(c, "typed")))
                    await anyio.sleep(0.6)
            seen: list[tuple[str, dict[str, Any]]] = []
            while (item := await spy.get_message(timeout=0.2)) is not None:
                if item["type"] == "message":
                    seen.append((item["channel"].decode(), json.loads(item["data"])))
    beats = [e for channel, e in seen if e["kind"] == "hb"]
    assert len([e for e in beats if e["runner"] == "b"]) >= 5
    assert all("jobs" not in e for e in beats)
    described = [(channel, e["worker"]) for channel, e in seen if e["kind"] == "desc"]
    assert described == [(f"{ns}:all", "typed"), (f"{ns}:runner:c", "typed")]


async def test_a_description_over_the_size_limit_is_sent_empty(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The other runners learn the worker, with an empty description, and the sender says
    why; nobody drops anything and the worker serves."""

    class Verbose(BaseWorker):
        @job
        async def talk(self, j: Job, data: ReverseIn) -> dict[str, Any]:
            return {"text": data.text}

        def describe(self) -> list[JobDescription]:
            return [JobDescription(description="words " * 400)]

    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    url = redis_url + "&max_message_size=2048"
    with anyio.fail_after(10):
        async with runners(url, "a", "b") as (a, b):
            await b.add_worker(Verbose("verbose"))
            await b.add_worker(Typed("typed"))
            await a.registry.wait_ready("verbose")
            await a.registry.wait_ready("typed")
            assert jobs_of(a, "verbose") == ()
            assert jobs_of(a, "typed") == tuple(Typed("typed").describe())
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert any(
                "worker 'verbose' is described to the other runners as answering no jobs" in text
                and "over the 2048-byte limit" in text
                for text in warnings
            ), warnings
            status, response = await run_job(a, "verbose", payload={"text": "hi"})
            assert (status, response) == (JobStatus.COMPLETED, {"text": "hi"})
            assert bus_of(a).dropped_messages == bus_of(b).dropped_messages == 0


async def test_a_malformed_description_is_dropped_and_the_reader_goes_on(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ns = namespace_of(redis_url)
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.bus")
    with anyio.fail_after(10):
        client = aioredis.Redis.from_url(plain_url(redis_url))
        async with client, runners(redis_url, "a", "b") as (a, b):
            typed = Typed("typed")
            await b.add_worker(typed)
            await a.registry.wait_ready("typed")
            envelope = {"kind": "desc", "runner": "b", "worker": "typed"}
            envelope["instance"] = bus_of(b)._instance
            cases = [
                ({"jobs": [{"input_schema": "anything"}]}, "desc.jobs.0.input_schema"),
                ({"jobs": [{"streaming": "maybe"}]}, "desc.jobs.0.streaming"),
                ({"jobs": {"name": "x"}}, "desc.jobs: Input should be a valid array"),
                ({"jobs": [], "exec": "rm -rf /"}, "desc.exec: Extra inputs"),
            ]
            for i, (fields, reason) in enumerate(cases, start=1):
                caplog.clear()
                await client.publish(f"{ns}:all", json.dumps({**envelope, **fields}))
                await eventually(lambda i=i: bus_of(a).dropped_messages == i, what=reason)
                warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
                assert any(reason in text and "dropped" in text for text in warnings), warnings
            assert jobs_of(a, "typed") == tuple(typed.describe())
            async with a.job("typed", payload={"text": "ab"}) as j:
                pass
            assert j.response == {"text": "ba"}


async def test_a_replica_taking_over_keeps_the_description(redis_url: str) -> None:
    with anyio.fail_after(10):
        async with runners(redis_url, "a", "b", "c") as (a, b, c):
            first, second = Typed("typed"), Typed("typed")
            await b.add_worker(first)
            await c.add_worker(second)
            await eventually(lambda: len(bus_of(a)._peers.hosts("typed")) == 2)
            assert jobs_of(a, "typed") == tuple(first.describe())
            await (first if a.registry.get("typed").runner == "b" else second).end()  # type: ignore[union-attr]
            await eventually(lambda: len(bus_of(a)._peers.hosts("typed")) == 1)
            assert jobs_of(a, "typed") == tuple(first.describe())


# --------------------------------------------------------------------------- values


class Hostile(BaseWorker):
    """Each job hands the bus something JSON cannot carry."""

    @job(name="object")
    async def returns_object(self, j: Job) -> dict[str, Any]:
        return {"ok": [1, {"x": object()}]}

    @job(name="circular")
    async def returns_circular(self, j: Job) -> dict[str, Any]:
        loop: dict[str, Any] = {}
        loop["self"] = loop
        return loop

    @job(name="bytes")
    async def returns_bytes(self, j: Job) -> dict[str, Any]:
        return {"raw": b"\xff\xfe"}

    @job(name="update")
    async def updates_bytes(self, j: Job) -> dict[str, Any]:
        await j.update({"raw": b"\xff\xfe"})
        return {}

    @job(name="stream")
    async def streams_object(self, j: Job) -> AsyncIterator[Any]:
        yield {"fine": 1}
        yield {"items": [object()]}


async def test_a_value_json_cannot_carry_ends_its_job_error_and_nothing_else(
    redis_url: str,
) -> None:
    """A handler on runner a answers a requester on runner b with values JSON cannot
    carry: each job ends ERROR naming where the value is; the jobs in flight on a
    meanwhile (from b and from a itself) complete, and a goes on serving."""
    cases = {
        "object": "$.ok[1].x is a builtins.object",
        "circular": "$.self.self",
        "bytes": "$.raw is a builtins.bytes",
        "update": "$.raw is a builtins.bytes",
        "stream": "$.items[0] is a builtins.object",
    }
    with anyio.fail_after(15):
        async with runners(redis_url, "a", "b") as (a, b):
            gate = Gate("gate")
            await a.add_worker(gate)
            await a.add_worker(Hostile("hostile"))
            await a.add_worker(Echo("echo"))
            await b.registry.wait_ready("hostile")
            await b.registry.wait_ready("gate")
            in_flight: list[tuple[JobStatus | None, dict[str, Any] | None]] = []

            async def wait_at_gate(requester: WorkerRunner, i: int) -> None:
                in_flight.append(await run_job(requester, "gate", payload={"i": i}))

            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(wait_at_gate, b if i % 3 else a, i)
                await gate.running.wait()
                for name, where in cases.items():
                    status, response = await run_job(b, "hostile", name=name)
                    assert status is JobStatus.ERROR and response is not None, name
                    assert where in response["error"], response
                assert in_flight == []
                gate.release.set()
            assert sorted(r["i"] for _, r in in_flight if r is not None) == list(range(6))
            assert {status for status, _ in in_flight} == {JobStatus.COMPLETED}
            for _ in range(3):
                status, response = await run_job(b, "echo", payload={"still": "here"})
                assert status is JobStatus.COMPLETED and response is not None
                assert response["runner"] == "a"
            status, _ = await run_job(b, "hostile", name="object")
            assert status is JobStatus.ERROR
            assert bus_of(a).dropped_messages == bus_of(b).dropped_messages == 0
