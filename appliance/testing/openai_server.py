"""A loopback OpenAI-compatible model server we own, for tests and benches (not a mock of httpx).

A real HTTP/1.1 server (h11 over trio) on ``127.0.0.1`` port 0 answering ``POST /v1/chat/completions``
and ``GET /v1/models``. What it answers comes from a script: each request pops the next
:class:`ModelReply` (or uses ``default``, which echoes the last user message). A reply can stream text in
chunks (SSE, ``[DONE]``, a usage chunk), call tools, answer an error status with ``Retry-After``, stream
slowly (``delay_s`` between chunks), or break the connection after some chunks. Every request body is
kept in ``requests`` so tests can check what the agent sent.

    server = FakeModelServer()
    port = await nursery.start(server.serve)
    server.script.append(ModelReply(status=429, retry_after="0"))
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from typing import Any

import attrs
import h11
import trio

__all__ = ["FakeModelServer", "ModelReply"]


@attrs.frozen
class ModelReply:
    text: str | None = None  # None: echo the last user message as "echo: <text>"
    chunks: int = 3
    tool_calls: tuple[tuple[str, str], ...] = ()  # (name, JSON arguments)
    prompt_tokens: int = 11
    completion_tokens: int = 7
    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    break_after: int | None = None  # close the connection after this many chunks, without [DONE]
    stream: bool | None = None  # None: as the request asks


class FakeModelServer:
    def __init__(self, *, default: ModelReply | None = None, model: str = "fake-model") -> None:
        self.script: deque[ModelReply] = deque()
        self.default = default or ModelReply()
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_request(stream, conn)
                if request is None:
                    return
                keep = await self._respond(stream, conn, request, body)
                if not keep or conn.our_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await stream.aclose()

    async def _respond(
        self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request, body: bytes
    ) -> bool:
        path = request.target.decode().split("?", 1)[0]
        if request.method == b"GET" and path.endswith("/models"):
            await _send_json(
                stream, conn, 200, {"object": "list", "data": [{"id": self.model, "object": "model"}]}
            )
            return True
        if request.method != b"POST" or not path.endswith("/chat/completions"):
            await _send_json(stream, conn, 404, {"error": {"message": "not found", "type": "not_found"}})
            return True
        try:
            doc = json.loads(body)
        except ValueError:
            await _send_json(stream, conn, 400, {"error": {"message": "bad json", "type": "invalid_request"}})
            return True
        self.requests.append(doc)
        reply = self.script.popleft() if self.script else self.default
        if reply.status != 200:
            headers = [("Retry-After", reply.retry_after)] if reply.retry_after is not None else []
            await _send_json(
                stream,
                conn,
                reply.status,
                {"error": {"message": f"scripted {reply.status}", "type": "error"}},
                headers,
            )
            return True
        text = reply.text if reply.text is not None else f"echo: {_last_user(doc.get('messages') or [])}"
        model = str(doc.get("model") or self.model)
        streaming = bool(doc.get("stream")) if reply.stream is None else reply.stream
        if not streaming:
            await _send_json(stream, conn, 200, _full_completion(model, text, reply))
            return True
        return await self._stream(stream, conn, model, text, reply)

    async def _stream(
        self, stream: trio.SocketStream, conn: h11.Connection, model: str, text: str, reply: ModelReply
    ) -> bool:
        await stream.send_all(
            conn.send(
                h11.Response(
                    status_code=200,
                    headers=[("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")],
                )
            )
            or b""
        )
        chunks = [_chunk(model, {"role": "assistant", "content": ""})]
        chunks.extend(_chunk(model, {"content": piece}) for piece in _split(text, reply.chunks))
        for index, (name, args) in enumerate(reply.tool_calls):
            half = len(args) // 2
            chunks.append(
                _chunk(
                    model,
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": f"call_{index}",
                                "type": "function",
                                "function": {"name": name, "arguments": args[:half]},
                            }
                        ]
                    },
                )
            )
            chunks.append(
                _chunk(model, {"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]})
            )
        finish = "tool_calls" if reply.tool_calls else "stop"
        chunks.append({**_chunk(model, {}), "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        chunks.append({**_chunk(model, {}), "choices": [], "usage": _usage(reply)})
        for sent, chunk in enumerate(chunks):
            if reply.break_after is not None and sent >= reply.break_after:
                return False  # the caller closes the socket mid-body
            if reply.delay_s:
                await trio.sleep(reply.delay_s)
            await _send_data(stream, conn, f"data: {json.dumps(chunk)}\n\n".encode())
        await _send_data(stream, conn, b"data: [DONE]\n\n")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        return True


def _last_user(messages: Sequence[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else json.dumps(content)
    return ""


def _split(text: str, parts: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // max(1, parts)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _chunk(model: str, delta: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }


def _usage(reply: ModelReply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _full_completion(model: str, text: str, reply: ModelReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(reply.tool_calls)
        ]
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
        ],
        "usage": _usage(reply),
    }


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None, b""
        else:
            return None, b""


async def _send_data(stream: trio.SocketStream, conn: h11.Connection, data: bytes) -> None:
    await stream.send_all(conn.send(h11.Data(data=data)) or b"")


async def _send_json(
    stream: trio.SocketStream,
    conn: h11.Connection,
    status: int,
    doc: Any,
    headers: list[tuple[str, str]] | None = None,
) -> None:
    body = json.dumps(doc).encode()
    head = [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(headers or [])]
    await stream.send_all(conn.send(h11.Response(status_code=status, headers=head)) or b"")
    await _send_data(stream, conn, body)
    await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
