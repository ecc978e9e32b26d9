"""Durable handlers as the core sees them: ``@job(durable=True, max_attempts=N)`` is checked,
recorded in ``describe()``, and changes nothing on the in-process bus; ``job.attempt`` is 1."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from framework import BaseWorker, Job, WorkerRunner, job
from framework.types import JobDescription


class Payments(BaseWorker):
    @job(name="charge", durable=True, max_attempts=5)
    async def charge(self, job: Job) -> dict[str, Any]:
        """Charge a card once."""
        return {"attempt": job.attempt, "key": job.headers.get("idempotency-key")}

    @job(name="refund", durable=True)
    async def refund(self, job: Job) -> dict[str, Any]:
        return {"attempt": job.attempt}

    @job
    async def plain(self, job: Job) -> dict[str, Any]:
        return {"attempt": job.attempt}


def test_describe_says_which_jobs_are_durable_and_how_many_attempts_they_get() -> None:
    described = {d.name: d for d in Payments("p").describe()}
    assert described["charge"].durable is True
    assert described["charge"].max_attempts == 5
    assert described["refund"].durable is True
    assert described["refund"].max_attempts == 3  # the default
    assert described[None].durable is False
    assert described[None].max_attempts is None
    # The description travels between runners: it survives a JSON round trip.
    again = JobDescription.model_validate_json(described["charge"].model_dump_json())
    assert again == described["charge"]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"max_attempts": 3}, TypeError, "durable=True, max_attempts=3"),
        ({"durable": "yes"}, TypeError, "True or False"),
        ({"durable": True, "max_attempts": 0}, ValueError, "at least 1, got 0"),
        ({"durable": True, "max_attempts": 2.5}, ValueError, "got 2.5"),
        ({"durable": True, "max_attempts": True}, ValueError, "got True"),
    ],
)
def test_bad_durable_arguments_are_refused_with_what_to_write(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=r"max_attempts|durable") as caught:
        job(name="x", **kwargs)
    assert words in str(caught.value)


def test_a_job_description_refuses_a_max_attempts_below_one() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        JobDescription(durable=True, max_attempts=0)


@pytest.mark.anyio
async def test_on_the_in_process_bus_durable_changes_nothing_and_attempt_is_1() -> None:
    with anyio.fail_after(5):
        async with WorkerRunner() as runner:
            await runner.add_worker(Payments("payments"))
            async with runner.job(
                "payments", name="charge", headers={"idempotency-key": "k1"}
            ) as first:
                pass
            async with runner.job(
                "payments", name="charge", headers={"idempotency-key": "k1"}
            ) as second:
                pass
            async with runner.job("payments") as plain:
                pass
    assert first.response == {"attempt": 1, "key": "k1"}
    # No store on the in-process bus: the same idempotency key runs the handler again.
    assert second.response == {"attempt": 1, "key": "k1"}
    assert plain.response == {"attempt": 1}
