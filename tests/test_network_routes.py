"""``Routes``: every request sent to another runner ends at its requester exactly once,
driven by hand on a real ``LocalBus`` inbox (no network)."""

from __future__ import annotations

import anyio
import pytest

from framework.bus.local import LocalBus
from framework.bus.messages import OUTCOME_UNKNOWN, JobResponseMessage
from framework.bus.network import Route, Routes
from framework.types import JobStatus

pytestmark = pytest.mark.anyio


async def _responses(inbox: object, count: int) -> list[JobResponseMessage]:
    got: list[JobResponseMessage] = []
    with anyio.fail_after(2):
        while len(got) < count:
            message = await inbox.receive()  # type: ignore[attr-defined]
            assert isinstance(message, JobResponseMessage)
            got.append(message)
    return got


async def test_a_lost_runner_ends_its_jobs_once_with_an_unknown_outcome() -> None:
    local = LocalBus()
    inbox = local.subscribe("requester")
    routes = Routes(local)
    routes.open(("j1", "echo"), Route("requester", "runner-a"))
    routes.open(("j2", "echo"), Route("requester", "runner-b"))
    routes.open(("j3", "slow"), Route("requester", "runner-a"))

    assert routes.fail_runner("runner-a", "runner runner-a lost") == 2
    ended = await _responses(inbox, 2)
    assert {(m.job_id, m.source) for m in ended} == {("j1", "echo"), ("j3", "slow")}
    for message in ended:
        assert message.status is JobStatus.ERROR
        assert message.response["outcome"] == OUTCOME_UNKNOWN
        assert message.response["error"].startswith("runner runner-a lost")
    # The real responses, late: dropped, so the requester never gets a second one.
    assert not routes.answered(("j1", "echo"))
    assert routes.answered(("j2", "echo"))  # still open: its runner was not lost
    assert len(routes) == 0
    assert routes.fail_runner("runner-a", "again") == 0


async def test_a_request_that_never_left_ends_error_without_an_unknown_outcome() -> None:
    local = LocalBus()
    inbox = local.subscribe("requester")
    routes = Routes(local)
    routes.end_here("requester", "echo", "j1", "the job request is too big")
    (message,) = await _responses(inbox, 1)
    assert message.response == {"error": "the job request is too big"}
    # A requester that ended meanwhile: nothing raises.
    routes.end_here("gone", "echo", "j2", "whatever")


async def test_fail_where_selects_and_durable_jobs_can_be_left_to_a_replica() -> None:
    local = LocalBus()
    inbox = local.subscribe("requester")
    routes = Routes(local)
    routes.open(("j1", "echo"), Route("requester", None, entry=b"1-0", durable=True))
    routes.open(("j2", "echo"), Route("requester", None, entry=b"2-0"))
    ended = routes.fail_where("no host left", lambda key, route: not route.durable)
    assert ended == 1
    (message,) = await _responses(inbox, 1)
    assert message.job_id == "j2"
    route = routes.get(("j1", "echo"))
    assert route is not None and route.entry == b"1-0"
    assert [key for key, _ in routes] == [("j1", "echo")]
    assert routes.fail(("j1", "echo"), "dropped", unknown=False)
    (message,) = await _responses(inbox, 1)
    assert message.response == {"error": "dropped"}
