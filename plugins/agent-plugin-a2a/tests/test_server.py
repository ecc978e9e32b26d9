"""The runner as an A2A agent: the official a2a-sdk client against the endpoints a real
``framework run --http`` serves (with a token), plus raw HTTP for what a client library
would never send."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.client.card_resolver import parse_agent_card
from a2a.types import (
    AgentCard,
    CancelTaskRequest,
    GetExtendedAgentCardRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError
from agent_plugin_a2a._parts import data_part, part_value
from conftest import TOKEN, Runner
from google.protobuf.json_format import MessageToDict

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def public_card(served: Runner) -> tuple[httpx.Response, AgentCard]:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(served.url + "/.well-known/agent-card.json")
    return answer, parse_agent_card(answer.json())


@asynccontextmanager
async def a2a_client(
    served: Runner, *, streaming: bool = True, token: str = TOKEN
) -> AsyncIterator[Client]:
    """An a2a-sdk client made from the runner's public card, sending ``token``."""
    _, card = await public_card(served)
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=20)
    client = await create_client(
        card, client_config=ClientConfig(httpx_client=http, streaming=streaming)
    )
    try:
        yield client
    finally:
        await client.close()
        await http.aclose()


def message(*parts: Part, **metadata: Any) -> SendMessageRequest:
    return SendMessageRequest(
        message=Message(
            role=Role.ROLE_USER,
            message_id=uuid.uuid4().hex,
            parts=list(parts),
            metadata=metadata or None,
        )
    )


async def collect(client: Client, request: SendMessageRequest) -> list[StreamResponse]:
    return [event async for event in client.send_message(request)]


async def finished(client: Client, request: SendMessageRequest) -> Task:
    """The task as the server keeps it once the message's stream has ended."""
    events = await collect(client, request)
    return await client.get_task(GetTaskRequest(id=events[0].task.id))


def final_task(events: list[StreamResponse]) -> Task:
    (event,) = [e for e in events if e.HasField("task")][-1:]
    return event.task


def artifact(task: Task, name: str) -> list[Any]:
    (found,) = [a for a in task.artifacts if a.name == name]
    return [part_value(p) for p in found.parts]


# ----------------------------------------------------------------- the card


async def test_the_card_is_public_asks_for_the_token_and_keeps_the_skills_for_clients_with_it(
    served: Runner,
) -> None:
    with anyio.fail_after(20):
        answer, card = await public_card(served)
        async with httpx.AsyncClient(timeout=10) as http:
            posted = await http.post(served.url + "/.well-known/agent-card.json", headers=AUTH)
            unauthenticated = await http.post(served.url + "/a2a/jsonrpc", json={})
    assert answer.status_code == 200
    body = answer.json()
    assert card.name == "test-agent"
    assert card.description == "Workers for the A2A tests."
    scheme = card.security_schemes["bearer"].http_auth_security_scheme
    assert scheme.scheme == "Bearer"
    assert [list(r.schemes) for r in card.security_requirements] == [["bearer"]]
    assert card.capabilities.streaming and card.capabilities.extended_agent_card
    assert "tools.reverse" in [skill.id for skill in card.skills]
    assert list(card.capabilities.extensions) == []  # with a token: in the extended card
    interfaces = {
        (i.protocol_binding, i.protocol_version): i.url for i in card.supported_interfaces
    }
    assert interfaces[("JSONRPC", "1.0")] == served.url + "/a2a/jsonrpc"
    assert interfaces[("HTTP+JSON", "1.0")] == served.url + "/a2a/rest"
    assert body["url"] == served.url + "/a2a/jsonrpc"  # the 0.3 fields, for 0.3 clients
    assert body["protocolVersion"] == "0.3"
    assert TOKEN not in answer.text
    assert posted.status_code == 405
    assert unauthenticated.status_code == 401


async def test_the_extended_card_lists_every_described_job_as_a_skill_with_its_schemas(
    served: Runner,
) -> None:
    with anyio.fail_after(20):
        async with a2a_client(served) as client:
            card = await client.get_extended_agent_card(GetExtendedAgentCardRequest())
    skills = {skill.id: skill for skill in card.skills}
    assert {"tools.reverse", "tools.count", "tools.sleep", "assistant"} <= set(skills)
    assert skills["tools.reverse"].description == "Reverse a text."
    assert list(skills["tools.reverse"].input_modes) == ["application/json"]
    assert "text/plain" in skills["tools.count"].input_modes
    assert "streaming" in skills["tools.count"].tags
    (extension,) = card.capabilities.extensions
    schemas = MessageToDict(extension.params)["skills"]
    assert schemas["tools.reverse"]["input_schema"]["properties"]["text"]["type"] == "string"
    assert schemas["tools.reverse"]["output_schema"]["required"] == ["text"]
    assert "tools.count" not in schemas  # untyped: no schema
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"


# ----------------------------------------------------------------- send, stream, get


async def test_send_runs_the_job_of_the_skill_and_answers_the_finished_task(
    served: Runner,
) -> None:
    with anyio.fail_after(20):
        async with a2a_client(served, streaming=False) as client:
            text = final_task(
                await collect(client, message(Part(text="hello"), skill="tools.reverse"))
            )
            data = final_task(
                await collect(client, message(data_part({"text": "abc"}), skill="tools.reverse"))
            )
            by_worker = final_task(
                await collect(
                    client, message(data_part({"n": 3, "x": [1.5]}), worker="tools", job="headers")
                )
            )
    assert text.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact(text, "response") == ["olleh", {"text": "olleh"}]
    assert artifact(data, "response") == ["cba", {"text": "cba"}]
    (answer,) = artifact(by_worker, "response")
    assert answer["payload"] == {"n": 3, "x": [1.5]}  # whole numbers stay int
    assert answer["headers"]["a2a-task-id"] == by_worker.id
    assert answer["headers"]["a2a-context-id"] == by_worker.context_id


async def test_http_json_and_the_0_3_forms_serve_the_same_tasks(served: Runner) -> None:
    _, card = await public_card(served)
    answers = {}
    with anyio.fail_after(20):
        async with httpx.AsyncClient(headers=AUTH, timeout=20) as http:
            for binding, version in (
                ("HTTP+JSON", "1.0"),
                ("JSONRPC", "0.3"),
                ("HTTP+JSON", "0.3"),
            ):
                only = AgentCard()
                only.CopyFrom(card)
                del only.supported_interfaces[:]
                only.supported_interfaces.extend(
                    i
                    for i in card.supported_interfaces
                    if (i.protocol_binding, i.protocol_version) == (binding, version)
                )
                config = ClientConfig(httpx_client=http, supported_protocol_bindings=[binding])
                client = await create_client(only, client_config=config)
                events = await collect(client, message(Part(text="abc"), skill="tools.reverse"))
                task = await client.get_task(GetTaskRequest(id=events[0].task.id))
                answers[binding, version] = (type(client._transport).__name__, task)
    for (binding, version), (transport, task) in answers.items():
        assert ("Compat" in transport) == (version == "0.3"), transport
        assert task.status.state == TaskState.TASK_STATE_COMPLETED, (binding, version)
        assert artifact(task, "response") == ["cba", {"text": "cba"}]


async def test_stream_sends_updates_and_chunks_as_they_come_and_get_finds_the_task(
    served: Runner,
) -> None:
    with anyio.fail_after(20):
        async with a2a_client(served) as client:
            events = await collect(client, message(data_part({"n": 4}), skill="tools.count"))
            task_id = events[0].task.id
            fetched = await client.get_task(GetTaskRequest(id=task_id))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task"
    assert events[0].task.status.state == TaskState.TASK_STATE_SUBMITTED
    updates = [e.status_update for e in events if e.HasField("status_update")]
    assert updates[0].status.state == TaskState.TASK_STATE_WORKING
    (update,) = [u for u in updates if u.status.HasField("message")]
    assert [part_value(p) for p in update.status.message.parts] == [{"counting": 4}]
    assert updates[-1].status.state == TaskState.TASK_STATE_COMPLETED
    chunks = [e.artifact_update for e in events if e.HasField("artifact_update")]
    stream = [c for c in chunks if c.artifact.name == "stream"]
    assert [part_value(p) for c in stream for p in c.artifact.parts] == [
        "word 0",
        {"i": 1},
        "word 2",
        {"i": 3},
    ]
    assert [c.append for c in stream] == [False, True, True, True]
    assert kinds.index("artifact_update") < kinds.index("status_update", 3)  # streamed first
    assert fetched.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact(fetched, "stream") == ["word 0", {"i": 1}, "word 2", {"i": 3}]
    assert artifact(fetched, "response") == [{"chunks": 4}]


async def test_a_text_message_to_an_llm_worker_becomes_its_messages(served: Runner) -> None:
    with anyio.fail_after(20):
        async with a2a_client(served) as client:
            events = await collect(client, message(Part(text="hello agents"), skill="assistant"))
            task = await client.get_task(GetTaskRequest(id=events[0].task.id))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert "".join(artifact(task, "stream")) == "You said: hello agents"
    (response,) = artifact(task, "response")
    assert response["message"]["content"] == "You said: hello agents"


async def test_failed_and_error_jobs_end_the_task_failed_with_the_message(served: Runner) -> None:
    with anyio.fail_after(20):
        async with a2a_client(served, streaming=False) as client:
            failed = final_task(await collect(client, message(data_part({}), skill="tools.fail")))
            crashed = final_task(await collect(client, message(data_part({}), skill="tools.crash")))
    for task, status, text in (
        (failed, "failed", "it failed on purpose"),
        (crashed, "error", "ZeroDivisionError: boom"),
    ):
        assert task.status.state == TaskState.TASK_STATE_FAILED
        said = task.status.message
        assert part_value(said.parts[0]) == text
        assert MessageToDict(said.metadata) == {"status": status}
    assert part_value(failed.status.message.parts[1]) == {
        "code": 7,
        "error": "it failed on purpose",
    }


async def test_cancel_cancels_the_job(served: Runner) -> None:
    tag = uuid.uuid4().hex
    with anyio.fail_after(20):
        async with a2a_client(served) as client:
            stream = client.send_message(message(data_part({"tag": tag}), skill="tools.sleep"))
            task_id = None
            async for event in stream:
                if event.HasField("task"):
                    task_id = event.task.id
                if event.HasField("status_update") and event.status_update.status.HasField(
                    "message"
                ):
                    break  # {"sleeping": true}: the handler runs
            assert task_id is not None
            cancelled = await client.cancel_task(CancelTaskRequest(id=task_id))
            await stream.aclose()
            fetched = await client.get_task(GetTaskRequest(id=task_id))
            tags: list[str] = []
            while tag not in tags:
                seen = await finished(client, message(data_part({}), skill="tools.cancelled"))
                (answer,) = artifact(seen, "response")
                tags = answer["tags"]
                await anyio.sleep(0.05)
    assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
    assert fetched.status.state == TaskState.TASK_STATE_CANCELED
    assert tag in tags  # the worker's handler was cancelled


# ----------------------------------------------------------------- bad requests


async def test_a_message_for_an_unknown_skill_is_an_a2a_error_naming_the_skills(
    served: Runner,
) -> None:
    errors: list[str] = []
    with anyio.fail_after(20):
        async with a2a_client(served) as client:
            for request in (
                message(Part(text="hi"), skill="nope"),
                message(Part(text="hi")),
                message(Part(text="hi"), worker="tools", job="nope"),
                message(Part(text="hi"), skill=3),
                message(Part(url="https://example.com/a.png"), skill="tools.reverse"),
                message(data_part([1, 2]), skill="tools.reverse"),
            ):
                with pytest.raises(A2AError) as caught:
                    await collect(client, request)
                errors.append(str(caught.value))
    assert "unknown skill 'nope'; this agent's skills: assistant, tools.reverse, " in errors[0]
    assert "names no skill" in errors[1] and "tools.reverse" in errors[1]
    assert "worker 'tools' has no job 'nope'" in errors[2]
    assert 'metadata "skill" must be a string' in errors[3]
    assert "file parts are not supported" in errors[4]
    assert "must be a JSON object" in errors[5]


async def test_malformed_json_rpc_is_answered_with_json_rpc_errors(served: Runner) -> None:
    url = served.url + "/a2a/jsonrpc"
    headers = {**AUTH, "A2A-Version": "1.0"}
    with anyio.fail_after(20):
        async with httpx.AsyncClient(timeout=10, headers=headers) as http:
            garbage = await http.post(
                url, content=b"{not json", headers={"Content-Type": "application/json"}
            )
            method = await http.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "Nope", "params": {}}
            )
            params = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 2, "method": "SendMessage", "params": {"message": 5}},
            )
            task = await http.post(
                url, json={"jsonrpc": "2.0", "id": 3, "method": "GetTask", "params": {"id": "nope"}}
            )
    assert garbage.json()["error"]["code"] == -32700
    assert method.json()["error"]["code"] == -32601
    assert params.json()["error"]["code"] in (-32600, -32602)
    assert task.json()["error"]["code"] == -32001  # task not found


async def test_a_clients_bad_requests_leave_no_traceback_in_the_runners_console(
    served: Runner,
) -> None:
    jsonrpc, rest = served.url + "/a2a/jsonrpc", served.url + "/a2a/rest"
    v1 = {**AUTH, "A2A-Version": "1.0"}
    send = {"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "hi"}]}}
    with anyio.fail_after(20):
        async with httpx.AsyncClient(timeout=10) as http:
            for body, headers in (
                ({}, v1),  # not a JSON-RPC request
                ([], v1),
                ({"jsonrpc": "2.0", "id": 1, "method": "Nope"}, v1),
                ({"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": [1]}, v1),
                ({"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": send}, AUTH),
                ({"jsonrpc": "2.0", "id": 4, "method": "message/send", "params": {}}, AUTH),
                (
                    {"jsonrpc": "2.0", "id": 5, "method": "SendStreamingMessage", "params": send},
                    v1,
                ),
            ):
                answer = await http.post(jsonrpc, json=body, headers=headers)
                assert "error" in answer.json()
            assert (await http.get(rest + "/tasks/nope", headers=v1)).status_code == 404
            assert (await http.post(rest + "/message:send", json=send, headers=AUTH)).is_error
            bad = await http.post(rest + "/message:send", content=b"{", headers=v1)
            assert bad.status_code == 400
    output = served.output()
    assert "Traceback" not in output, output
    assert not re.findall(r"^framework: a2a\.", output, re.M), output


async def test_a_body_over_max_body_is_refused_before_the_sdk_reads_it(served: Runner) -> None:
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "x": "y" * 100_001})

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 10_000):
            yield big[start : start + 10_000].encode()

    with anyio.fail_after(20):
        async with httpx.AsyncClient(timeout=10, headers={**AUTH, "A2A-Version": "1.0"}) as http:
            declared = await http.post(served.url + "/a2a/jsonrpc", content=big.encode())
            streamed = await http.post(served.url + "/a2a/rest/message:send", content=chunked())
            small = await http.post(
                served.url + "/a2a/jsonrpc",
                json={"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": "nope"}},
            )
    for answer in (declared, streamed):
        assert answer.status_code == 413
        assert answer.json()["error"] == "the body is larger than 100000 bytes ([http] max_body)"
    assert small.json()["error"]["code"] == -32001


async def test_a_wrong_token_is_refused(served: Runner) -> None:
    with anyio.fail_after(20):
        async with a2a_client(served, token="wrong-token-0123456789") as client:
            with pytest.raises(A2AError) as caught:
                await collect(client, message(Part(text="hi"), skill="tools.reverse"))
    assert "401" in str(caught.value)


# ----------------------------------------------------------------- a2a-lint


def test_a2a_lint_passes_the_card(served: Runner) -> None:
    lint = Path(sys.executable).parent / "a2a-lint"
    binary = str(lint) if lint.exists() else shutil.which("a2a-lint")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("a2a-lint is not installed: pip install 'agent-plugin-a2a[test]'")
        pytest.skip("a2a-lint is not installed")
    found = subprocess.run(
        [binary, served.url, "--json"], capture_output=True, text=True, timeout=30
    )
    report = json.loads(found.stdout)
    assert found.returncode == 0, report
    errors = [f for f in report["findings"] if f["level"] == "error"]
    assert errors == [], report


# ----------------------------------------------------------------- the docs' example


def test_the_docs_client_example_runs(served: Runner) -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "a2a.md"
    (example,) = re.findall(r"```py\n(.*?)```", docs.read_text(), re.S)
    found = subprocess.run(
        [sys.executable, "-c", example],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "A2A_URL": served.url, "FRAMEWORK_HTTP_TOKEN": TOKEN},
    )
    assert found.returncode == 0, found.stderr
    assert "test-agent skills: assistant, tools.reverse" in found.stdout
    assert "You said: hello" in found.stdout
    assert found.stdout.strip().endswith("TASK_STATE_COMPLETED")


async def test_the_docs_curl_example_runs(served: Runner) -> None:
    docs = anyio.Path(__file__).parents[3] / "docs" / "a2a.md"
    section = (await docs.read_text()).split("## Example: curl", 1)[1]
    (command,) = re.findall(r"```console\n\$ (curl .*?)\n(?!    )", section, re.S)
    words = shlex.split(command.replace("$FRAMEWORK_HTTP_TOKEN", TOKEN))
    url = next(w for w in words if w.startswith("http://"))
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = json.loads(words[words.index("-d") + 1])
    body["params"]["message"]["metadata"]["skill"] = "tools.reverse"  # the echo plugin's
    with anyio.fail_after(20):
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(
                url.replace("http://127.0.0.1:8765", served.url), json=body, headers=headers
            )
    task = answer.json()["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["artifacts"][0]["parts"][0] == {"text": "olleh"}
