"""The HTTP API that ``framework run`` serves: a real uvicorn server on a free port on
127.0.0.1, and real HTTP clients (httpx)."""

from __future__ import annotations

import json
import socket
from typing import Any

import anyio
import httpx
import pytest
from http_server import Tools, serving, sse_events
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from framework import WorkerRunner, hookimpl
from framework.registrars import RouteRegistrar

pytestmark = pytest.mark.anyio


# ----------------------------------------------------------------- reading the runner


async def test_health_and_workers_with_their_described_jobs() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            health = (await client.get("/v1/health")).json()
            assert health == {"status": "ok", "runner": "http-test"}
            body = (await client.get("/v1/workers")).json()
    (tools,) = body["workers"]
    assert tools["name"] == "tools"
    assert tools["runner"] == "http-test"
    assert tools["local"] is True
    jobs = {j["name"]: j for j in tools["jobs"]}
    assert jobs["reverse"]["description"] == "Reverse a text."
    assert jobs["reverse"]["input_schema"]["properties"]["text"]["type"] == "string"
    assert jobs["fail"]["input_schema"] is None
    assert body["failed"] == []


async def test_plugins_lists_what_the_host_found() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            answer = await client.get("/v1/plugins")
    assert answer.json() == [{"name": "test-plugin"}]


# ----------------------------------------------------------------- submitting jobs


async def test_a_job_waited_for_answers_its_response_whatever_its_status() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            done = await client.post(
                "/v1/jobs", json={"worker": "tools", "name": "reverse", "payload": {"text": "ab"}}
            )
            failed = await client.post("/v1/jobs", json={"worker": "tools", "name": "fail"})
            invalid = await client.post(
                "/v1/jobs", json={"worker": "tools", "name": "reverse", "payload": {"txt": 1}}
            )
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "completed"
    assert body["response"] == {"text": "ba"}
    assert body["worker"] == "tools"
    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"
    assert "on purpose" in failed.json()["response"]["error"]
    assert invalid.json()["status"] == "failed"
    assert "text" in invalid.json()["response"]["error"]


async def test_sse_submission_sends_the_job_id_each_event_then_the_response() -> None:
    with anyio.fail_after(20):
        async with (
            serving() as served,
            served.client() as client,
            client.stream(
                "POST",
                "/v1/jobs",
                json={"worker": "tools", "name": "count", "payload": {"n": 3}},
                headers={"Accept": "text/event-stream"},
            ) as answer,
        ):
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("text/event-stream")
            events = [item async for item in sse_events(answer)]
    kinds = [event for event, _, _ in events]
    assert kinds == [
        "job",
        "stream_start",
        "update",
        "stream_data",
        "stream_data",
        "stream_data",
        "stream_end",
        "response",
    ]
    job_id = events[0][1]["job_id"]
    assert events[0][2] is None
    assert [int(i) for _, _, i in events[1:]] == list(range(1, 8))
    assert [data for event, data, _ in events if event == "stream_data"] == [0, 1, 2]
    assert events[2][1] == {"counting": 3}
    assert events[-1][1] == {
        "job_id": job_id,
        "worker": "tools",
        "status": "completed",
        "response": {"chunks": 3},
    }


async def test_fire_and_forget_then_follow_and_resume_with_last_event_id() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            sent = await client.post(
                "/v1/jobs?wait=false",
                json={"worker": "tools", "name": "count", "payload": {"n": 5}},
            )
            assert sent.status_code == 202
            job_id = sent.json()["job_id"]
            assert sent.headers["location"] == f"/v1/jobs/{job_id}"
            async with client.stream("GET", f"/v1/jobs/{job_id}/events") as answer:
                everything = [item async for item in sse_events(answer)]
            async with client.stream(
                "GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "4"}
            ) as answer:
                rest = [item async for item in sse_events(answer)]
            summary = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert [event for event, _, _ in everything][-1] == "response"
    assert len(everything) == 1 + 1 + 5 + 1 + 1  # update, start, 5 items, end, response
    assert rest == everything[4:]
    assert summary["status"] == "completed"
    assert summary["response"] == {"chunks": 5}
    assert summary["duration"] >= 0


async def test_cancelling_a_running_job_ends_it_cancelled_and_an_ended_one_is_409() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            sent = await client.post(
                "/v1/jobs?wait=false", json={"worker": "tools", "name": "sleep"}
            )
            job_id = sent.json()["job_id"]
            assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "running"
            cancelled = await client.delete(f"/v1/jobs/{job_id}")
            assert cancelled.status_code == 202
            async with client.stream("GET", f"/v1/jobs/{job_id}/events") as answer:
                events = [item async for item in sse_events(answer)]
            again = await client.delete(f"/v1/jobs/{job_id}")
            missing = await client.delete("/v1/jobs/nope")
    assert events[-1][0] == "response"
    assert events[-1][1]["status"] == "cancelled"
    assert again.status_code == 409
    assert again.json()["detail"] == {"status": "cancelled"}
    assert missing.status_code == 404


async def test_a_timeout_ends_the_job_cancelled() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            answer = await client.post(
                "/v1/jobs", json={"worker": "tools", "name": "sleep", "timeout": 0.2}
            )
    assert answer.json()["status"] == "cancelled"
    assert "timed out" in answer.json()["response"]["error"]


async def test_headers_reach_the_handler() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            answer = await client.post(
                "/v1/jobs",
                json={"worker": "tools", "name": "headers", "headers": {"tenant-id": "t1"}},
            )
    assert answer.json()["response"] == {"headers": {"tenant-id": "t1"}}


async def test_job_groups_answer_every_member() -> None:
    with anyio.fail_after(20):
        async with serving(Tools("a"), Tools("b")) as served, served.client() as client:
            answer = await client.post(
                "/v1/job-groups", json={"workers": ["a", "b"], "payload": {"x": 1}}
            )
            failing = await client.post(
                "/v1/job-groups", json={"workers": ["a", "b"], "name": "fail"}
            )
            twice = await client.post("/v1/job-groups", json={"workers": ["a", "a"]})
            unknown = await client.post("/v1/job-groups", json={"workers": ["a", "zz"]})
    body = answer.json()
    assert body["statuses"] == {"a": "completed", "b": "completed"}
    assert body["responses"]["a"] == {"echo": {"x": 1}}
    assert set(failing.json()["statuses"].values()) <= {"failed", "cancelled"}
    assert "failed" in failing.json()["statuses"].values()
    assert twice.status_code == 422
    assert unknown.status_code == 404
    assert "'zz'" in unknown.json()["error"]


# ----------------------------------------------------------------- bad input


async def test_bad_requests_get_clear_errors_naming_what_was_wrong() -> None:
    with anyio.fail_after(20):
        async with serving(max_body=1000) as served, served.client() as client:
            bad_json = await client.post("/v1/jobs", content=b'{"worker"')
            not_utf8 = await client.post("/v1/jobs", content=b"\xff\xfe")
            too_big = await client.post(
                "/v1/jobs", json={"worker": "tools", "payload": {"x": "y" * 2000}}
            )

            async def chunks() -> Any:
                for _ in range(20):
                    yield b" " * 100

            too_big_chunked = await client.post("/v1/jobs", content=chunks())
            missing = await client.post("/v1/jobs", json={"payload": {}})
            wrong_type = await client.post("/v1/jobs", json={"worker": "tools", "payload": [1]})
            extra = await client.post("/v1/jobs", json={"worker": "tools", "wokrer": 1})
            bad_timeout = await client.post("/v1/jobs", json={"worker": "tools", "timeout": -1})
            bad_headers = await client.post(
                "/v1/jobs", json={"worker": "tools", "headers": {"Tenant": "x"}}
            )
            reserved = await client.post(
                "/v1/jobs", json={"worker": "tools", "headers": {"framework-x": "x"}}
            )
            unknown = await client.post("/v1/jobs", json={"worker": "tool"})
            unknown_sse = await client.post(
                "/v1/jobs", json={"worker": "tool"}, headers={"Accept": "text/event-stream"}
            )
            unknown_nowait = await client.post("/v1/jobs?wait=false", json={"worker": "tool"})
            bad_wait = await client.post("/v1/jobs?wait=maybe", json={"worker": "tools"})
            no_path = await client.get("/v2/nothing")
            wrong_method = await client.put("/v1/jobs")
            no_job = await client.get("/v1/jobs/unknown-id")
    assert bad_json.status_code == 400
    assert "not JSON" in bad_json.json()["error"]
    assert not_utf8.status_code == 400
    assert too_big.status_code == 413
    assert "1000 bytes" in too_big.json()["error"]
    assert too_big_chunked.status_code == 413
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["field"] == "worker"
    assert wrong_type.status_code == 422
    assert wrong_type.json()["detail"][0]["field"] == "payload"
    assert extra.status_code == 422
    assert extra.json()["detail"][0]["field"] == "wokrer"
    assert bad_timeout.status_code == 422
    assert bad_timeout.json()["detail"][0]["field"] == "timeout"
    assert bad_headers.status_code == 422
    assert bad_headers.json()["detail"][0]["field"] == "headers"
    assert "lower-case" in bad_headers.json()["error"]
    assert reserved.status_code == 422
    assert "reserved" in reserved.json()["error"]
    for answer in (unknown, unknown_sse, unknown_nowait):
        assert answer.status_code == 404
        assert "did you mean 'tools'" in answer.json()["error"]
        assert answer.json()["detail"] == {"workers": ["tools"]}
    assert bad_wait.status_code == 422
    assert no_path.status_code == 404
    assert no_path.json()["error"].startswith("no such path")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()
    assert no_job.status_code == 404


# ----------------------------------------------------------------- runtime events


async def test_events_stream_live_with_sequence_ids_and_filters() -> None:
    with anyio.fail_after(20):
        async with serving(Tools("a"), Tools("b")) as served, served.client() as client:
            seen: list[dict[str, Any]] = []
            filtered: list[dict[str, Any]] = []

            async def read(path: str, into: list[dict[str, Any]], ready: anyio.Event) -> None:
                async with client.stream("GET", path) as answer:
                    ready.set()
                    async for event, data, event_id in sse_events(answer):
                        assert event == "message"
                        assert int(event_id or 0) == data["sequence_id"]
                        into.append(data)
                        if data["data"].get("status") == "completed" and data["node_name"] == "b":
                            return

            async with anyio.create_task_group() as tg:
                ready_all, ready_b = anyio.Event(), anyio.Event()
                tg.start_soon(read, "/v1/events", seen, ready_all)
                tg.start_soon(read, "/v1/events?worker=b", filtered, ready_b)
                await ready_all.wait()
                await ready_b.wait()
                await client.post("/v1/jobs", json={"worker": "a", "name": "count"})
                await client.post("/v1/jobs", json={"worker": "b", "name": "count"})
    workers = {event["node_name"] for event in seen}
    assert {"a", "b"} <= workers
    assert {event["node_name"] for event in filtered} == {"b"}
    sequence = [event["sequence_id"] for event in seen]
    assert sequence == sorted(sequence)
    chunks = [e for e in filtered if e["event"] == "streaming"]
    assert [e["chunk_index"] for e in chunks] == [0, 1, 2]


async def test_a_reconnecting_events_client_resumes_after_its_last_event_id() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            first: list[int] = []
            async with client.stream("GET", "/v1/events") as answer:
                await client.post("/v1/jobs", json={"worker": "tools", "name": "count"})
                async for _, data, _ in sse_events(answer):
                    first.append(data["sequence_id"])
                    if len(first) == 2:
                        break
            # Gone after two events; what happened meanwhile is replayed after the second.
            await client.post("/v1/jobs", json={"worker": "tools", "name": "count"})
            rest: list[int] = []
            async with client.stream(
                "GET", "/v1/events", headers={"Last-Event-ID": str(first[-1])}
            ) as answer:
                async for _, data, _ in sse_events(answer):
                    rest.append(data["sequence_id"])
                    if data["data"].get("status") == "completed" and len(rest) > 8:
                        break
    assert rest[0] == first[-1] + 1
    assert rest == list(range(rest[0], rest[-1] + 1))


async def test_metrics_count_jobs_by_worker_and_status() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            for _ in range(3):
                await client.post("/v1/jobs", json={"worker": "tools", "name": "count"})
            await client.post("/v1/jobs", json={"worker": "tools", "name": "fail"})
            text = (await client.get("/metrics")).text
    assert 'framework_jobs_total{status="completed",worker="tools"} 3.0' in text
    assert 'framework_jobs_total{status="failed",worker="tools"} 1.0' in text
    assert 'framework_job_duration_seconds_count{worker="tools"} 4.0' in text
    assert "framework_jobs_in_flight 0.0" in text
    assert "framework_events_dropped_total 0.0" in text


# ----------------------------------------------------------------- the OpenAPI document


async def test_openapi_document_is_valid_3_1_with_typed_job_inputs() -> None:
    from openapi_spec_validator import validate

    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            document = (await client.get("/openapi.json")).json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    schemas = document["components"]["schemas"]
    variants = schemas["JobRequest"]["anyOf"]
    typed = [v for v in variants if v.get("properties", {}).get("name") == {"const": "reverse"}]
    assert typed
    payload = typed[0]["properties"]["payload"]["$ref"].rsplit("/", 1)[1]
    assert schemas[payload]["properties"]["text"]["type"] == "string"
    assert typed[0]["description"] == "Reverse a text."


# ----------------------------------------------------------------- the token


async def test_a_token_guards_everything_but_health_compared_in_full() -> None:
    with anyio.fail_after(20):
        async with serving(token="s3cret-token-0123456") as served, served.client() as client:
            health = await client.get("/v1/health")
            none = await client.get("/v1/workers")
            wrong = await client.get("/v1/workers", headers={"Authorization": "Bearer nope"})
            prefix = await client.get("/v1/workers", headers={"Authorization": "Bearer s3cret"})
            right = await client.get(
                "/v1/workers", headers={"Authorization": "Bearer s3cret-token-0123456"}
            )
            page = await client.get("/")
            login_wrong = await client.get("/?token=nope")
            login = await client.get("/?token=s3cret-token-0123456")
            cookie = login.headers["set-cookie"]
            with_cookie = await client.get("/v1/workers", headers={"Cookie": cookie.split(";")[0]})
            document = await client.get(
                "/openapi.json", headers={"Authorization": "Bearer s3cret-token-0123456"}
            )
    assert health.status_code == 200
    assert none.status_code == 401
    assert none.headers["www-authenticate"] == "Bearer"
    assert "needs a token" in none.json()["error"]
    assert wrong.status_code == 401
    assert "wrong" in wrong.json()["error"]
    assert prefix.status_code == 401
    assert right.status_code == 200
    assert page.status_code == 401
    assert login_wrong.status_code == 401
    assert login.status_code == 303
    assert login.headers["location"] == "/"
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert with_cookie.status_code == 200
    assert document.json()["security"] == [{"bearer": []}]
    for answer in (none, wrong, login_wrong, right, with_cookie):
        assert "s3cret-token-0123456" not in answer.text


async def test_mounted_plugin_apps_are_served_and_guarded_by_the_token() -> None:
    async def hello(request: Any) -> JSONResponse:
        return JSONResponse({"hello": request.url.path})

    class Plugin:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/hello", Starlette(routes=[Route("/there", hello)]))

    with anyio.fail_after(20):
        async with (
            serving(plugins=[Plugin()], token="t0ken-t0ken-t0ken-t0ken") as served,
            served.client() as client,
        ):
            guarded = await client.get("/hello/there")
            answer = await client.get(
                "/hello/there", headers={"Authorization": "Bearer t0ken-t0ken-t0ken-t0ken"}
            )
    assert guarded.status_code == 401
    assert answer.json() == {"hello": "/hello/there"}


async def test_a_mounted_app_answers_at_its_prefix_itself_and_a_public_one_needs_no_token() -> None:
    async def root(request: Any) -> JSONResponse:
        return JSONResponse({"method": request.method, "path": request.url.path})

    app = Starlette(routes=[Route("/", root, methods=["GET", "POST"])])

    class Plugin:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/.well-known/card.json", app, public=True)
            register("/rpc", app)

    token = "t0ken-t0ken-t0ken-t0ken"
    auth = {"Authorization": f"Bearer {token}"}
    with anyio.fail_after(20):
        async with (
            serving(plugins=[Plugin()], token=token) as served,
            served.client() as client,
        ):
            card = await client.get("/.well-known/card.json")
            posted = await client.post("/rpc", headers=auth)
            guarded = await client.post("/rpc")
            inner_guarded = await client.get("/rpc/")
            lookalike = await client.get("/.well-known/card.jsonx")
    # The prefix itself reaches the app (as its root), not a redirect to "prefix/".
    assert card.status_code == 200, card.text
    assert card.json()["method"] == "GET"
    assert posted.status_code == 200, posted.text
    assert posted.json()["method"] == "POST"
    assert guarded.status_code == 401
    assert inner_guarded.status_code == 401
    assert lookalike.status_code == 401  # public is the prefix and what is under it only


async def test_a_mounted_app_gets_no_body_over_max_body() -> None:
    read: list[int] = []

    async def size(request: Any) -> JSONResponse:
        body = await request.body()
        read.append(len(body))
        return JSONResponse({"size": len(body)})

    class Plugin:
        @hookimpl
        def register_routes(self, register: RouteRegistrar) -> None:
            register("/upload", Starlette(routes=[Route("/", size, methods=["POST"])]))

    async def chunks(count: int) -> Any:
        for _ in range(count):
            yield b"x" * 100

    with anyio.fail_after(20):
        async with (
            serving(plugins=[Plugin()], max_body=1000) as served,
            served.client() as client,
        ):
            declared = await client.post("/upload", content=b"x" * 1001)
            chunked = await client.post("/upload", content=chunks(20))
            within = await client.post("/upload", content=b"x" * 1000)
            within_chunked = await client.post("/upload", content=chunks(10))
            after = await client.get("/v1/health")
    for answer in (declared, chunked):
        assert answer.status_code == 413, answer.text
        assert answer.json() == {
            "error": "the body is larger than 1000 bytes ([http] max_body)",
            "detail": None,
        }
    assert within.json() == {"size": 1000}
    assert within_chunked.json() == {"size": 1000}
    assert read == [1000, 1000]  # the app never had the larger bodies
    assert after.status_code == 200


# ----------------------------------------------------------------- ending


async def test_ending_the_runner_closes_open_streams_and_running_jobs_end() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            sent = await client.post(
                "/v1/jobs?wait=false", json={"worker": "tools", "name": "sleep"}
            )
            job_id = sent.json()["job_id"]
            events: list[str] = []

            async def follow() -> None:
                async with client.stream("GET", f"/v1/jobs/{job_id}/events") as answer:
                    async for event, _, _ in sse_events(answer):
                        events.append(event)

            async def watch() -> None:
                async with client.stream("GET", "/v1/events") as answer:
                    async for _ in sse_events(answer):
                        pass

            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                tg.start_soon(watch)
                await anyio.sleep(0.2)
                await served.runner.end("test over")
    assert events[-1] == "response"
    record = served.service.tracker.get(job_id)
    assert record is not None and record.status == "cancelled"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_sse_parser_joins_data_lines_and_skips_comments() -> None:
    from framework.http._sse import encode, parse

    text = (
        encode("update", json.dumps({"a": 1}), 3).decode() + ": keepalive\n\ndata: x\ndata: y\n\n"
    )
    assert list(parse(text.split("\n"))) == [
        ("update", '{"a": 1}', "3"),
        ("message", "x\ny", None),
    ]


def test_listen_addresses_are_checked() -> None:
    from framework.http._settings import HttpConfig, ListenError, parse_listen, resolve

    assert parse_listen("127.0.0.1:80") == ("127.0.0.1", 80)
    assert parse_listen("[::1]:8765") == ("::1", 8765)
    for bad in ("8765", "host:", "host:99999", "::1:80", ":80"):
        with pytest.raises(ListenError):
            parse_listen(bad)
    with pytest.raises(ListenError, match="not loopback"):
        resolve(HttpConfig(), "0.0.0.0:8765")
    assert resolve(HttpConfig(token="x" * 20), "0.0.0.0:8765").url == "http://127.0.0.1:8765"
    port = _free_port()
    assert httpx.URL(resolve(HttpConfig(), f"[::1]:{port}").url).host == "::1"


async def test_events_are_built_only_while_a_client_watches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import framework.http._hub as hub

    monkeypatch.setattr(hub, "LINGER", 0.0)
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            await client.post("/v1/jobs", json={"worker": "tools", "name": "count"})
            assert served.runner.events_enabled is False
            async with client.stream("GET", "/v1/events") as answer:
                assert served.runner.events_enabled is True
                await client.post("/v1/jobs", json={"worker": "tools"})
                async for _ in sse_events(answer):
                    break
            while served.service.hub.subscriptions:
                await anyio.sleep(0.01)
            await client.post("/v1/jobs", json={"worker": "tools"})  # the first event stops it
            assert served.runner.events_enabled is False


async def test_a_client_that_falls_behind_skips_ahead_and_is_told_what_it_lost() -> None:
    from framework.events import Event, EventModel, EventType
    from framework.http._hub import RING, EventFilter, EventHub

    stopped: list[bool] = []
    hub = EventHub(lambda listener: lambda: stopped.append(True))
    slow = hub.subscribe(EventFilter(None, None))
    fast = hub.subscribe(EventFilter("w", None))

    def publish(first: int, last: int) -> None:
        for i in range(first, last + 1):
            hub.publish(
                EventModel(
                    event=Event.NODE_EXECUTION,
                    event_type=EventType.UPDATE,
                    node_name="w" if i % 2 else "v",
                    sequence_id=i,
                )
            )

    def ids(chunk: bytes) -> list[int]:
        return [int(line[4:]) for line in chunk.decode().splitlines() if line.startswith("id: ")]

    with anyio.fail_after(5):
        fast_batches = fast.batches()
        slow_batches = slow.batches()
        publish(1, 10)
        received = ids(await anext(fast_batches))
        publish(11, RING + 10)
        while not received or received[-1] < RING + 9:  # one write carries 16 KiB at most
            received += ids(await anext(fast_batches))
        publish(RING + 11, RING + 54)  # the slow client has read nothing: 54 fell out
        received += ids(await anext(fast_batches))
        behind = await anext(slow_batches)
        caught_up = ids(behind)
        while caught_up[-1] < RING + 54:
            caught_up += ids(await anext(slow_batches))
    assert received == [i for i in range(1, RING + 55) if i % 2]
    assert behind.decode().startswith('event: dropped\ndata: {"dropped":54}\n\n')
    assert len(behind) < 20 * 1024
    assert caught_up == list(range(55, RING + 55))
    assert hub.dropped == 54
    hub.close()
    assert stopped == [True]
    assert [chunk async for chunk in slow_batches] == []


# ----------------------------------------------------------------- web pages and abuse


async def test_pages_of_other_origins_and_rebinding_hosts_are_refused() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            body = {"worker": "tools", "payload": {"x": 1}}
            foreign = await client.post(
                "/v1/jobs", json=body, headers={"Origin": "https://evil.example"}
            )
            other_port = await client.post(
                "/v1/jobs", json=body, headers={"Origin": "http://127.0.0.1:19999"}
            )
            own = await client.post("/v1/jobs", json=body, headers={"Origin": served.url})
            program = await client.post("/v1/jobs", json=body)
            rebound = await client.get("/v1/workers", headers={"Host": "attacker.example:8765"})
            localhost = await client.get("/v1/health", headers={"Host": "localhost:8765"})
            reading = await client.get("/v1/workers", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == other_port.status_code == 403
    assert "cors_origins" in foreign.json()["error"]
    assert own.status_code == program.status_code == 200
    assert rebound.status_code == 403
    assert "not this machine" in rebound.json()["error"]
    assert localhost.status_code == 200
    assert reading.status_code == 200  # the browser keeps the answer from the page (no CORS)


async def test_listed_origins_may_call_with_cors() -> None:
    with anyio.fail_after(20):
        async with (
            serving(cors_origins=["http://localhost:3000"]) as served,
            served.client() as client,
        ):
            preflight = await client.options(
                "/v1/jobs",
                headers={
                    "Origin": "http://localhost:3000",
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            sent = await client.post(
                "/v1/jobs?wait=false",
                json={"worker": "tools"},
                headers={"Origin": "http://localhost:3000"},
            )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert sent.status_code == 202
    assert "location" in sent.headers["access-control-expose-headers"].lower()


async def test_payloads_no_bus_can_carry_are_refused_naming_where() -> None:
    deep = '{"worker": "tools", "payload": {"a": ' + "[" * 900 + "]" * 900 + "}}"
    deeper = '{"worker": "tools", "payload": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    with anyio.fail_after(20):
        async with serving(max_body=10_000_000) as served, served.client() as client:
            nan = await client.post(
                "/v1/jobs", content=b'{"worker": "tools", "payload": {"x": NaN}}'
            )
            surrogate = await client.post(
                "/v1/jobs", content=b'{"worker": "tools", "payload": {"a": ["\\ud800"]}}'
            )
            nested = await client.post("/v1/jobs", content=deep.encode())
            too_deep = await client.post("/v1/jobs", content=deeper.encode())
    assert nan.status_code == 400
    assert "NaN" in nan.json()["error"]
    assert surrogate.status_code == 422
    assert surrogate.json()["detail"][0]["field"] == "payload.a[0]"
    assert nested.status_code == 422
    assert nested.json()["detail"][0]["field"].startswith("payload.a")
    assert too_deep.status_code in (400, 422)


async def test_the_submitter_s_stream_gets_every_chunk_however_slowly_it_reads() -> None:
    n = 6000  # more than a job's kept events: without holding the job back, some are lost
    with anyio.fail_after(60):
        async with serving() as served, served.client() as client:
            async with client.stream(
                "POST",
                "/v1/jobs",
                json={"worker": "tools", "name": "count", "payload": {"n": n}},
                headers={"Accept": "text/event-stream"},
            ) as answer:
                events = sse_events(answer)
                first = await anext(events)
                await anyio.sleep(1.0)  # the job runs on meanwhile
                rest = [item async for item in events]
            job_id = first[1]["job_id"]
            async with client.stream("GET", f"/v1/jobs/{job_id}/events") as answer:
                late = [item async for item in sse_events(answer)]
    items = [data for event, data, _ in rest if event == "stream_data"]
    assert items == list(range(n))
    assert not [e for e, _, _ in rest if e == "skipped"]
    assert late[0][0] == "skipped"
    assert late[0][1]["skipped"] > 0
    assert late[-1][0] == "response"


async def test_a_last_event_id_beyond_the_end_still_gets_the_response() -> None:
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            sent = await client.post(
                "/v1/jobs?wait=false",
                json={"worker": "tools", "name": "sleep", "payload": {"seconds": 0.3}},
            )
            job_id = sent.json()["job_id"]
            async with client.stream(
                "GET", f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "99999"}
            ) as answer:
                events = [item async for item in sse_events(answer)]
    assert [e for e, _, _ in events] == ["response"]
    assert events[0][1]["status"] == "completed"


async def test_finished_jobs_are_kept_within_a_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    import framework.http._tracker as tracker

    monkeypatch.setattr(tracker, "HISTORY_BYTES", 300_000)
    big = {"blob": "x" * 100_000}
    with anyio.fail_after(20):
        async with serving() as served, served.client() as client:
            ids = []
            for _ in range(5):
                answer = await client.post("/v1/jobs", json={"worker": "tools", "payload": big})
                ids.append(answer.json()["job_id"])
            kept = [(await client.get(f"/v1/jobs/{i}")).status_code for i in ids]
    assert kept[-1] == 200
    assert kept[0] == 404
    assert kept.count(200) <= 3


async def test_metrics_follow_each_member_of_a_group() -> None:
    with anyio.fail_after(20):
        async with serving(Tools("a"), Tools("b")) as served, served.client() as client:
            async with anyio.create_task_group() as tg:

                async def group() -> None:
                    await client.post(
                        "/v1/job-groups",
                        json={"workers": ["a", "b"], "name": "sleep", "payload": {"seconds": 0.5}},
                    )

                tg.start_soon(group)
                await anyio.sleep(0.25)
                during = (await client.get("/metrics")).text
            after = (await client.get("/metrics")).text
    assert "framework_jobs_in_flight 2.0" in during
    assert 'framework_job_duration_seconds_count{worker="a"} 1.0' in after
    assert 'framework_job_duration_seconds_count{worker="b"} 1.0' in after


async def test_the_browser_cookie_is_not_the_token_and_pages_say_how_to_sign_in() -> None:
    token = "s3cret-token-0123456"
    with anyio.fail_after(20):
        async with serving(token=token) as served:
            async with served.client() as client:
                page = await client.get("/", headers={"Accept": "text/html"})
                login = await client.get(f"/?token={token}")
                with_cookie = await client.get("/v1/workers")  # the client keeps cookies
            async with served.client() as client:
                token_as_cookie = await client.get(
                    "/v1/workers", headers={"Cookie": f"framework_token={token}"}
                )
    assert token not in login.headers["set-cookie"]
    assert with_cookie.status_code == 200
    assert token_as_cookie.status_code == 401
    assert page.status_code == 401
    assert page.headers["content-type"].startswith("text/html")
    assert "/?token=TOKEN" in page.text


def test_tokens_and_origins_are_checked_when_read() -> None:
    from pydantic import ValidationError

    from framework.http._settings import HttpConfig

    for bad, reason in (
        ("short", "shorter than 16"),
        ("has a space in it ok", "visible ASCII"),
        ("line\nbreak-0123456789", "visible ASCII"),
    ):
        with pytest.raises(ValidationError, match=reason):
            HttpConfig(token=bad)
    for origin in ("*", "not a url", "http://localhost:3000/"):
        with pytest.raises(ValidationError, match="is not an origin"):
            HttpConfig(cors_origins=[origin])


def test_finding_a_serving_runner_sends_no_token(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from framework.http._client import serving_runner

    monkeypatch.setenv("FRAMEWORK_HTTP_TOKEN", "super-secret-prod-token")
    received: list[bytes] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer() -> None:
            while not received:  # the first connection only probes the port
                connection, _ = server.accept()
                with connection:
                    request = connection.recv(65536)
                    if not request:
                        continue
                    received.append(request)
                    body = b'{"status": "ok", "runner": "r"}'
                    connection.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        + b"Content-Length: "
                        + str(len(body)).encode()
                        + b"\r\n\r\n"
                        + body
                    )

        thread = threading.Thread(target=answer)
        thread.start()
        assert serving_runner(f"http://127.0.0.1:{port}") == "r"
        thread.join(5)
    assert b"super-secret" not in received[0]
    assert b"authorization" not in received[0].lower()


async def test_an_event_too_large_for_the_live_view_goes_out_truncated() -> None:
    big = {"blob": "x" * 200_000}
    with anyio.fail_after(20):
        async with (
            serving() as served,
            served.client() as client,
            client.stream("GET", "/v1/events") as answer,
        ):
            done = await client.post("/v1/jobs", json={"worker": "tools", "payload": big})
            async for _, data, _ in sse_events(answer):
                if data["event_type"] in ("result", "end") and data["node_name"] == "tools":
                    break
    assert data["data"] == {"status": "completed", "truncated": data["data"]["truncated"]}
    assert data["data"]["truncated"] > 200_000
    assert done.json()["response"] == {"echo": big}


async def test_a_runner_ended_while_the_server_starts_ends_promptly() -> None:
    from framework.http._service import HttpService, bind
    from framework.http._settings import HttpConfig, resolve

    for _ in range(3):
        settings = resolve(HttpConfig(), "127.0.0.1:0")
        sock, settings = bind(settings)
        service = HttpService(settings, sock, lambda: [])
        runner = WorkerRunner("ending-early")
        await runner.add_worker(Tools("tools"))
        runner.add_plugin(service, name="http")
        with anyio.fail_after(10):
            async with runner:
                await runner.end("ended at once")  # uvicorn has not started yet
        assert sock.fileno() == -1  # the service closed its socket
