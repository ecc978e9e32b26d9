"""A plugin module used by the tests (loaded with ``-p sample_plugin`` or registered
directly): it implements every registration hook."""

from __future__ import annotations

from typing import Any

import anyio
import click
from pydantic import BaseModel, SecretStr

from framework import BaseWorker, Job, JobFailed, hookimpl, job
from framework.bus.local import LocalBus

configured: list[str] = []
"""Names of the runners configure_runner saw (the tests read it)."""


class GreeterWorker(BaseWorker):
    """Registered without a name: its registered name is ``greeter-worker``."""

    @job
    async def greet(self, job: Job) -> dict[str, Any]:
        return {"greeting": f"hello {job.payload.get('who', 'world')}"}


class Counter(BaseWorker):
    """Streams ``payload["n"]`` items with an update before each; n < 0 fails the job."""

    worker_name = "counter"

    @job
    async def count(self, job: Job):  # type: ignore[no-untyped-def]
        n = job.payload.get("n", 3)
        if n < 0:
            raise JobFailed(f"n must be >= 0, got {n}")
        for i in range(n):
            await job.update({"done": i})
            yield {"i": i}


class Sleepy(BaseWorker):
    """Says it started, then sleeps ``payload["seconds"]`` (default: an hour)."""

    worker_name = "sleepy"

    @job
    async def sleep(self, job: Job) -> dict[str, Any]:
        await job.update({"started": True})
        await anyio.sleep(job.payload.get("seconds", 3600))
        return {"slept": True}


class SecretSettings(BaseModel):
    api_key: SecretStr
    greeting: str = "hi"


class Secretive(BaseWorker):
    """Has settings with a secret; answers with its greeting (never the key)."""

    worker_name = "secretive"
    config_model = SecretSettings

    @job
    async def answer(self, job: Job) -> dict[str, Any]:
        return {
            "greeting": self.config.greeting,
            "key_length": len(self.config.api_key.get_secret_value()),
        }


class AddedLater(BaseWorker):
    @job
    async def handle(self, job: Job) -> dict[str, Any]:
        return {"added_by": "configure_runner"}


class SampleBus(LocalBus):
    """A local bus that remembers the URL it was made for."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


@hookimpl
def register_workers(register: Any) -> None:
    register(GreeterWorker)
    register(Counter)
    register(Secretive)
    register(Sleepy)


@hookimpl
def register_buses(register: Any) -> None:
    register("sample", SampleBus)


@hookimpl
def register_llm_backends(register: Any) -> None:
    register(object(), name="sample-llm")


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("sample-hello")
    @click.argument("who", default="world")
    def sample_hello(who: str) -> None:
        """Say hello (added by the sample plugin)."""
        click.echo(f"hello {who} from sample_plugin")


@hookimpl
async def configure_runner(runner: Any, config: Any) -> None:
    configured.append(runner.name)
    await runner.add_worker(AddedLater("added-later"))
