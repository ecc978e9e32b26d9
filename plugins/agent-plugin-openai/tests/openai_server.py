"""A small OpenAI-compatible server for the tests: real HTTP on 127.0.0.1, in a thread.

Each test scripts the replies (``server.script(reply, ...)``: one per request, in order) and
reads what the client sent (``server.requests``). A reply is a status, headers and body
pieces, each written and flushed on its own (so an event, or a line, can arrive in several
reads); it ends complete, cut (the connection is closed mid-body), or stalled (nothing more
is sent until the server stops).
"""

from __future__ import annotations

import json
import select
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

End = Literal["complete", "cut", "stall"]


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    parts: list[bytes] = field(default_factory=list)
    end: End = "complete"
    silent: bool = False
    """Send nothing at all (not even the status line) until the server stops."""
    chunked: bool = True
    """Chunked transfer encoding (as real servers stream); else the body ends when the
    connection closes."""


@dataclass
class Received:
    """One request the server got."""

    path: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: dict[str, Any]


def event(data: dict[str, Any] | str) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data)
    return f"data: {text}\n\n".encode()


def delta(
    content: str | None = None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str | None = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` carrying one delta."""
    piece: dict[str, Any] = {}
    if content is not None:
        piece["content"] = content
    if tool_calls is not None:
        piece["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "model": "test-model",
        "choices": [{"index": 0, "delta": piece, "finish_reason": finish}],
    }


def usage(prompt: int, completion: int) -> dict[str, Any]:
    """The last chunk, with ``stream_options: {"include_usage": true}``."""
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def call(
    index: int, arguments: str, *, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """A tool-call delta (``id`` and ``name`` on a call's first piece)."""
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        piece["id"] = id
        piece["type"] = "function"
    if name is not None:
        piece["function"]["name"] = name
    return piece


def text_reply(*pieces: str, tokens: tuple[int, int] = (5, 3)) -> Reply:
    """A plain reply streamed as ``pieces``, as OpenAI sends it."""
    parts = [event({**delta(""), "choices": [{"index": 0, "delta": {"role": "assistant"}}]})]
    parts += [event(delta(piece)) for piece in pieces]
    parts += [event(delta(finish="stop")), event(usage(*tokens)), event("[DONE]")]
    return Reply(parts=parts)


def tool_reply(*calls: dict[str, Any], tokens: tuple[int, int] = (7, 2)) -> Reply:
    """A turn of tool calls, one delta per ``call(...)`` piece, in order."""
    parts = [event(delta(tool_calls=[piece])) for piece in calls]
    parts += [event(delta(finish="tool_calls")), event(usage(*tokens)), event("[DONE]")]
    return Reply(parts=parts)


def error_reply(status: int, message: str, *, headers: dict[str, str] | None = None) -> Reply:
    """An error as OpenAI answers it: ``{"error": {"message": ...}}``."""
    body = json.dumps({"error": {"message": message, "type": "test_error", "code": None}})
    return Reply(
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
        parts=[body.encode()],
        chunked=False,
    )


class OpenAIServer:
    """The server: ``start()``, ``script(...)``, then point ``base_url`` at it."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.hangups = 0
        """How many stalled replies ended because the client closed the connection."""
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()  # releases stalled replies
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if self._replies:
                return self._replies.popleft()
        return error_reply(500, "the test scripted no reply for this request")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-reply is what some tests do


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def do_POST(self) -> None:
        owner: OpenAIServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = owner._next(Received(self.path, headers, json.loads(raw or b"{}")))
        if not self.path.partition("?")[0].endswith(("/chat/completions", "/responses")):
            reply = error_reply(404, f"no route {self.path}")
        self._send(reply, owner)

    def _send(self, reply: Reply, owner: OpenAIServer) -> None:
        if reply.silent:
            self._stall(owner)
            self.close_connection = True
            return
        self.send_response(reply.status)
        headers = {"Content-Type": "text/event-stream", **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif reply.end == "complete" and reply.status != 200:
            self.send_header("Content-Length", str(sum(map(len, reply.parts))))
        else:
            self.send_header("Connection", "close")  # the body ends when the connection does
            self.close_connection = True
        self.end_headers()
        for part in reply.parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part) if reply.chunked else part)
            self.wfile.flush()
        if reply.end == "complete":
            if reply.chunked:
                self.wfile.write(b"0\r\n\r\n")
            return
        if reply.end == "stall":
            self._stall(owner)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _stall(self, owner: OpenAIServer) -> None:
        """Send nothing until the server stops or the client hangs up (counted)."""
        while not owner._stopping.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.02)
            if readable:
                try:
                    gone = not self.connection.recv(1, socket.MSG_PEEK)
                except OSError:  # a reset: the client closed with our data unread
                    gone = True
                if gone:
                    with owner._lock:
                        owner.hangups += 1
                    return


def closed_port() -> socket.socket:
    """A socket bound to a port on 127.0.0.1 and not listening: connecting is refused.
    Close it after the test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock
