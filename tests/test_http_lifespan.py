"""The lifespan of the apps plugins mount in the HTTP API (``register_routes``): run around
serving, with the runner in their state, on a real uvicorn server and a real client."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from http_server import serving
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from framework import hookimpl
from framework.http import _lifespan
from framework.registrars import RouteRegistrar

pytestmark = pytest.mark.anyio


class LifespanApp:
    """A Starlette app whose lifespan runs a task group (as the MCP SDK's session manager
    does): its requests are answered by a task in that group, which only exists between
    startup and shutdown."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.app = Starlette(routes=[Route("/", self.answer)], lifespan=self.lifespan)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[dict[str, Any]]:
        self.events.append("startup")
        async with anyio.create_task_group() as tg:
            self.tg = tg
            try:
                yield {"greeting": "hi"}
            finally:
                self.events.append("shutdown")
                tg.cancel_scope.cancel()

    async def answer(self, request: Request) -> JSONResponse:
        result: dict[str, Any] = {}

        async def in_group() -> None:  # fails when the lifespan did not run
            result["runner"] = request.scope["state"]["framework.runner"].name
            result["greeting"] = request.state.greeting

        self.tg.start_soon(in_group)
        while not result:
            await anyio.sleep(0.01)
        return JSONResponse(result)


async def test_a_mounted_apps_lifespan_runs_around_serving_with_the_runner_in_its_state() -> None:
    mounted = LifespanApp()

    class Plugin:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/life", mounted.app)

    with anyio.fail_after(20):
        async with serving(plugins=[Plugin()]) as served, served.client() as client:
            assert mounted.events == ["startup"]
            answer = await client.get("/life")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"runner": "http-test", "greeting": "hi"}
    assert mounted.events == ["startup", "shutdown"]


async def test_one_app_mounted_for_two_runners_sees_each_its_own() -> None:
    async def whose(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # speaks the protocol: startup, then shutdown
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        runner = scope["state"]["framework.runner"]
        await JSONResponse({"runner": runner.name})(scope, receive, send)

    class Plugin:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/whose", whose)

    with anyio.fail_after(20):
        async with serving(plugins=[Plugin()]) as one, one.client() as first:
            one.runner.name = "first-runner"  # the state holds the runner itself
            async with serving(plugins=[Plugin()]) as two, two.client() as second:
                assert (await first.get("/whose")).json() == {"runner": "first-runner"}
                assert (await second.get("/whose")).json() == {"runner": "http-test"}


async def test_an_app_without_a_lifespan_is_served_as_before() -> None:
    seen: list[str] = []

    async def plain(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])  # answers every scope as HTTP, lifespan included
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    class Plugin:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/plain", plain)

    with anyio.fail_after(20):
        async with serving(plugins=[Plugin()]) as served, served.client() as client:
            answer = await client.get("/plain")
    assert answer.text == "plain"
    assert seen == ["lifespan", "http"]


async def test_a_failed_startup_answers_503_naming_plugin_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    @contextlib.asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    class Plugin:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/broken", Starlette(routes=[], lifespan=broken))

    with anyio.fail_after(20), caplog.at_level(logging.ERROR, logger="framework.http"):
        async with serving(plugins=[Plugin()]) as served, served.client() as client:
            answer = await client.get("/broken/anything")
            health = await client.get("/v1/health")
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert "plugin 'Plugin'" in error and "/broken" in error and "no database" in error
    assert health.status_code == 200
    assert "no database" in caplog.text


async def test_a_startup_that_hangs_fails_in_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_lifespan, "STARTUP_SECONDS", 0.2)

    async def hangs(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await anyio.sleep_forever()

    class Plugin:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/hangs", hangs)

    with anyio.fail_after(20):
        async with serving(plugins=[Plugin()]) as served, served.client() as client:
            answer = await client.get("/hangs")
    assert answer.status_code == 503
    assert "did not finish within 0.2 s" in answer.json()["error"]
