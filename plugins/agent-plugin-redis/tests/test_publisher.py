"""The ``redis`` event publisher: every runtime event as JSON to a Redis Stream or channel."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import agent_plugin_redis
import anyio
import pytest
import redis.asyncio as aioredis
from agent_plugin_redis.publisher import DEFAULT_URL, RedisEventPublisher
from conftest import RedisServer, free_port

from framework import BaseWorker, Job, WorkerRunner, job
from framework.config import ConfigError, RunConfig
from framework.events import Event, EventModel, EventType

pytestmark = pytest.mark.anyio


class Chatty(BaseWorker):
    @job
    async def talk(self, j: Job) -> dict[str, Any]:
        await j.update({"step": 1})
        for i in range(j.payload.get("chunks", 0)):
            await j.stream(f"tok{i}")
        return {"said": j.payload.get("text", "")}


@contextlib.asynccontextmanager
async def client_for(server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(server.url)
    async with client:
        yield client


def key() -> str:
    return f"events-{uuid.uuid4().hex[:12]}"


def kinds(events: list[EventModel]) -> list[tuple[str, str, str]]:
    return [(str(e.event), str(e.event_type), e.node_name) for e in events]


async def run_one_job(publisher: RedisEventPublisher, name: str, **payload: Any) -> WorkerRunner:
    runner = WorkerRunner(name, plugins=[publisher])
    await runner.add_worker(Chatty("chatty"))
    async with runner, runner.job("chatty", payload=payload) as j:
        pass
    assert j.response == {"said": payload.get("text", "")}
    return runner


async def test_events_to_a_stream(redis_server: RedisServer) -> None:
    stream = key()
    publisher = RedisEventPublisher(redis_server.url, to="stream", key=stream, maxlen=1000)
    with anyio.fail_after(10):
        runner = await run_one_job(publisher, "pub-a", text="hello")
        async with client_for(redis_server) as client:
            entries = await client.xrange(stream)
    assert entries, "no event reached the stream"
    events = []
    for _entry_id, fields in entries:
        assert set(fields) == {b"event"}
        events.append(EventModel.model_validate_json(fields[b"event"]))
    seen = kinds(events)
    assert seen[0] == ("graph_execution", "start", "pub-a")
    assert seen[-1] == ("graph_execution", "end", "pub-a")
    assert ("node_execution", "start", "chatty") in seen
    assert ("node_execution", "update", "chatty") in seen
    result = next(
        e for e in events if e.event is Event.NODE_EXECUTION and e.event_type is EventType.RESULT
    )
    assert result.data["response"] == {"said": "hello"}
    assert {e.run_id for e in events} == {runner.run_id}
    sequence = [e.sequence_id for e in events]
    assert sequence == sorted(sequence) and len(set(sequence)) == len(sequence)
    stats = runner.event_stats()
    assert [(s.delivered, s.dropped, s.failed) for s in stats.values()] == [(len(events), 0, 0)]


async def test_a_stream_is_trimmed_near_maxlen(redis_server: RedisServer) -> None:
    """XADD ... MAXLEN ~ maxlen: Redis trims in whole blocks, so the stream stays near
    maxlen (within one block of 100 entries), far below what was published."""
    stream = key()
    publisher = RedisEventPublisher(redis_server.url, to="stream", key=stream, maxlen=10)
    with anyio.fail_after(10):
        runner = await run_one_job(publisher, "pub-trim", chunks=600)
        async with client_for(redis_server) as client:
            length = await client.xlen(stream)
            (_, last), *_ = await client.xrevrange(stream, count=1)
    (stats,) = runner.event_stats().values()
    assert stats.delivered > 600 and stats.failed == 0
    assert 10 <= length <= 10 + 100
    end = EventModel.model_validate_json(last[b"event"])
    assert (end.event, end.event_type) == (Event.GRAPH_EXECUTION, EventType.END)


async def test_events_to_a_channel(redis_server: RedisServer) -> None:
    channel = key()
    publisher = RedisEventPublisher(redis_server.url, to="channel", key=channel)
    with anyio.fail_after(10):
        async with client_for(redis_server) as client:
            pubsub = client.pubsub()
            await pubsub.subscribe(channel)
            await run_one_job(publisher, "pub-c", text="over the air")
            events: list[EventModel] = []
            with anyio.fail_after(3):  # until the runner's END
                while not events or kinds(events)[-1] != ("graph_execution", "end", "pub-c"):
                    item = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if item is not None and item["type"] == "message":
                        events.append(EventModel.model_validate_json(item["data"]))
            await pubsub.aclose()
            # A channel keeps nothing: no key was written.
            assert await client.exists(channel) == 0
    seen = kinds(events)
    assert seen[0] == ("graph_execution", "start", "pub-c")
    assert seen[-1] == ("graph_execution", "end", "pub-c")
    result = next(e for e in events if e.event_type is EventType.RESULT)
    assert result.data["response"] == {"said": "over the air"}


async def test_redis_down_loses_events_not_jobs(caplog: pytest.LogCaptureFixture) -> None:
    """Events that cannot be sent are counted as failed, one warning (password hidden)
    says so, and the job's outcome is untouched."""
    caplog.set_level(logging.WARNING, logger="agent_plugin_redis.publisher")
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    publisher = RedisEventPublisher(url, to="stream", key=key())
    with anyio.fail_after(15):
        runner = await run_one_job(publisher, "pub-down", text="still fine")
    (stats,) = runner.event_stats().values()
    assert stats.delivered == 0 and stats.failed > 0
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent_plugin_redis.publisher"]
    assert len(warnings) == 1
    assert "redis://:***@127.0.0.1" in warnings[0] and "hunter2" not in warnings[0]


@pytest.mark.parametrize(
    ("settings", "where"),
    [
        ({"to": "stream", "colour": "blue"}, "plugins.redis.publisher.colour"),
        ({"streem": "x"}, "plugins.redis.publisher.streem"),
        ({"to": "file"}, "plugins.redis.publisher.to"),
        ({"maxlen": 0}, "plugins.redis.publisher.maxlen"),
        ({"key": ""}, "plugins.redis.publisher.key"),
    ],
)
def test_from_config_names_the_bad_key(settings: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as caught:
        RedisEventPublisher.from_config(settings, default_url="redis://h:6379/0")
    assert caught.value.key == where
    assert where in str(caught.value)


def test_from_config_refuses_a_url_that_is_not_redis() -> None:
    with pytest.raises(ConfigError) as caught:
        RedisEventPublisher.from_config({"url": "http://h:80/"}, default_url="local://")
    assert caught.value.key == "plugins.redis.publisher.url"
    assert "redis://" in str(caught.value)


def test_from_config_defaults_to_the_bus_url() -> None:
    publisher = RedisEventPublisher.from_config({}, default_url="rediss://bus.example:6380/1")
    assert (publisher.url, publisher.to, publisher.key, publisher.maxlen) == (
        "rediss://bus.example:6380/1",
        "stream",
        "framework:events",
        10_000,
    )
    local = RedisEventPublisher.from_config({"to": "channel"}, default_url="local://")
    assert (local.url, local.to) == (DEFAULT_URL, "channel")
    own = RedisEventPublisher.from_config(
        {"url": "redis://events:6379/2", "key": "k", "maxlen": 5}, default_url="redis://bus/0"
    )
    assert (own.url, own.key, own.maxlen) == ("redis://events:6379/2", "k", 5)


def test_configure_runner_adds_the_publisher_only_when_configured() -> None:
    runner = WorkerRunner("cfg")
    agent_plugin_redis.configure_runner(runner, RunConfig())
    assert runner.plugin_manager.get_plugin("redis-publisher") is None
    config = RunConfig(
        bus="redis://bus.example:6379/0",
        plugins={"redis": {"publisher": {"to": "channel", "key": "ev"}}},
    )
    agent_plugin_redis.configure_runner(runner, config)
    publisher = runner.plugin_manager.get_plugin("redis-publisher")
    assert isinstance(publisher, RedisEventPublisher)
    assert (publisher.url, publisher.to, publisher.key) == (
        "redis://bus.example:6379/0",
        "channel",
        "ev",
    )
