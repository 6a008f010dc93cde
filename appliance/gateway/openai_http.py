"""OpenAI-compatible ``POST /v1/chat/completions`` on the gateway port (off by default).

Rules (``shared/specs/openclaw-gateway.md`` §3, OpenClaw's ``openai-http-api``):
- disabled (the default) it answers 404 like any unknown path; enabled it needs ``Authorization: Bearer
  <gateway token>`` (constant-time compare) and acts as a full operator;
- ``model`` names the agent target: ``openclaw``, ``openclaw/<agentId>`` (anything else means the
  default agent; the backend model is the appliance's own);
- the last ``user`` message is the turn's message; the session is ``agent:<agentId>:openai:<user>``
  when the request names a ``user``, else ``agent:<agentId>:openai``;
- ``stream:false`` answers one ``chat.completion`` object; ``stream:true`` answers SSE
  ``chat.completion.chunk`` objects (role first, then content deltas, then ``finish_reason``, a usage
  chunk and ``data: [DONE]``), the body ending when the connection closes;
- a turn that fails answers 502 (model unavailable), 504 (timeout) or 400 (tool errors) with OpenAI's
  error shape ``{"error":{"message","type","code"}}``; mid-stream it sends an error chunk, then ``[DONE]``.
Parsing and response bodies are pure functions; :func:`respond_chat_completions` is the trio shell the
gateway server calls with the request head and body it has read; :func:`serve_openai_http` serves it
standalone (tests, benches, and the template for the server hook).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

import attrs
import trio

from appliance.agent import AgentRuntime, TurnOutcome, TurnPath, TurnRequest, TurnStatus
from appliance.gateway.http import HttpRequest, HttpResponse, bearer_token, render
from appliance.gateway.protocol import tokens_match
from appliance.log import get_logger
from appliance.models.session_keys import DEFAULT_AGENT_ID

if TYPE_CHECKING:
    from collections.abc import Callable

    import h11

__all__ = [
    "CHAT_COMPLETIONS_PATH",
    "ChatCompletionRequest",
    "HttpProblem",
    "OpenAIHttpConfig",
    "parse_chat_request",
    "read_request_body",
    "respond_chat_completions",
    "serve_openai_http",
]

log = get_logger("appliance.gateway.openai_http")

CHAT_COMPLETIONS_PATH = "/v1/chat/completions"
MAX_BODY_BYTES = 4 * 1024 * 1024
_JSON = "application/json; charset=utf-8"


@attrs.frozen
class OpenAIHttpConfig:
    """Settings seam: ``gateway.http.chat_completions_enabled`` (default False) and the gateway token."""

    enabled: bool = False
    token: str = attrs.field(default="", repr=False)
    auth_mode: str = "token"


class HttpProblem(Exception):
    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.code = code

    def response(self) -> HttpResponse:
        return _json(self.status, {"error": {"message": self.message, "type": self.kind, "code": self.code}})


@attrs.frozen
class ChatCompletionRequest:
    model: str
    message: str
    stream: bool
    agent_id: str
    session_key: str


def _json(status: int, doc: Any, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, json.dumps(doc, separators=(",", ":")).encode(), _JSON, headers)


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Validate a request body. Raises HttpProblem(400)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise HttpProblem(400, "request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise HttpProblem(400, "request body must be a JSON object")
    model = doc.get("model", "openclaw")
    if not isinstance(model, str):
        raise HttpProblem(400, "'model' must be a string", code="invalid_model")
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise HttpProblem(400, "'messages' must be a non-empty array")
    text = _last_user_text(messages)
    if not text.strip():
        raise HttpProblem(400, "no user message with text content")
    stream = doc.get("stream", False)
    if not isinstance(stream, bool):
        raise HttpProblem(400, "'stream' must be a boolean")
    agent_id = DEFAULT_AGENT_ID
    if model.startswith("openclaw/") and model[len("openclaw/") :] not in ("", "default"):
        agent_id = model[len("openclaw/") :].lower()
    user = doc.get("user")
    suffix = f":{str(user).lower()[:64]}" if isinstance(user, str) and user.strip() else ""
    return ChatCompletionRequest(model, text, stream, agent_id, f"agent:{agent_id}:openai{suffix}")


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
            )
        return ""
    return ""


def _completion(req: ChatCompletionRequest, cid: str, created: int, outcome: TurnOutcome) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": req.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": outcome.reply}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": outcome.tokens},
    }


def _chunk(
    req: ChatCompletionRequest, cid: str, created: int, delta: dict[str, Any], finish: str | None = None
) -> bytes:
    doc = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": req.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"


def _problem_of(outcome: TurnOutcome) -> HttpProblem:
    message = outcome.error or str(outcome.status)
    if outcome.status is TurnStatus.TIMEOUT:
        return HttpProblem(504, message, "timeout", "agent_timeout")
    if outcome.path is TurnPath.TOOL:
        return HttpProblem(400, message, "invalid_request_error", "tool_error")
    return HttpProblem(502, message, "api_error", "unavailable")


def _authorized(request: HttpRequest, config: OpenAIHttpConfig) -> bool:
    if config.auth_mode == "none":
        return True
    presented = bearer_token(request)
    return presented is not None and bool(config.token) and tokens_match(presented, config.token)


async def respond_chat_completions(
    stream: trio.abc.SendStream,
    request: HttpRequest,
    body: bytes,
    runtime: AgentRuntime,
    config: OpenAIHttpConfig,
    *,
    wall_s: Callable[[], float] = time.time,
) -> int:
    """Answer one ``/v1/chat/completions`` request on ``stream``; returns the HTTP status sent."""
    if not config.enabled:
        response = _json(404, {"error": {"message": "Not Found", "type": "not_found"}})
    elif request.method != "POST":
        response = HttpResponse(405, b"", _JSON, (("Allow", "POST"),))
    elif not _authorized(request, config):
        response = _json(
            401,
            {"error": {"message": "Unauthorized", "type": "unauthorized"}},
            (("WWW-Authenticate", "Bearer"),),
        )
    else:
        try:
            parsed = parse_chat_request(body)
        except HttpProblem as problem:
            response = problem.response()
        else:
            return await _run(stream, parsed, runtime, int(wall_s()))
    await stream.send_all(render(response))
    return response.status


async def _run(
    stream: trio.abc.SendStream, req: ChatCompletionRequest, runtime: AgentRuntime, created: int
) -> int:
    cid = f"chatcmpl-{uuid.uuid4().hex}"
    turn = TurnRequest(session_key=req.session_key, message=req.message, agent_id=req.agent_id, run_id=cid)
    if not req.stream:
        outcome = await runtime.run_turn(turn)
        response = (
            _json(200, _completion(req, cid, created, outcome))
            if outcome.ok
            else _problem_of(outcome).response()
        )
        await stream.send_all(render(response))
        return response.status
    send, receive = trio.open_memory_channel[str](math.inf)

    def sink(event: str, payload: dict[str, Any], droppable: bool) -> None:
        if event == "chat" and payload.get("state") == "delta" and payload.get("deltaText"):
            send.send_nowait(str(payload["deltaText"]))

    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
        "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n"
    )
    await stream.send_all(head.encode() + _chunk(req, cid, created, {"role": "assistant", "content": ""}))
    run = runtime.submit(turn, sink)
    async with trio.open_nursery() as nursery:

        async def close_when_done() -> None:
            await run.done.wait()
            send.close()

        nursery.start_soon(close_when_done)
        async for text in receive:
            await stream.send_all(_chunk(req, cid, created, {"content": text}))
    final = run.outcome
    if final is not None and final.ok:
        tail = _chunk(req, cid, created, {}, "stop")
        usage = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": [],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": final.tokens},
        }
        tail += b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n"
    else:
        problem = _problem_of(final) if final is not None else HttpProblem(500, "internal error", "api_error")
        error = {"error": {"message": problem.message, "type": problem.kind, "code": problem.code}}
        tail = b"data: " + json.dumps(error, separators=(",", ":")).encode() + b"\n\n"
    await stream.send_all(tail + b"data: [DONE]\n\n")
    return 200


async def read_request_body(
    stream: trio.abc.ReceiveStream, parser: h11.Connection, *, limit: int = MAX_BODY_BYTES
) -> bytes | None:
    """The rest of the request's body after its head was read with ``parser``; None when it passes
    ``limit`` (answer 413). Raises h11.RemoteProtocolError for a malformed body."""
    import h11

    body = bytearray()
    while True:
        event = parser.next_event()
        if event is h11.NEED_DATA:
            parser.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limit:
                return None
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed) or event is h11.PAUSED:
            return bytes(body)


async def serve_openai_http(
    runtime: AgentRuntime,
    config: OpenAIHttpConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/v1/chat/completions`` alone on ``host:port`` (one request per connection); ``nursery.start``
    returns the bound port. The gateway server does the same in its HTTP branch (see the report)."""
    import h11

    async def handle(stream: trio.SocketStream) -> None:
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            head: h11.Request | None = None
            body: bytes | None = None
            with trio.move_on_after(30):
                while head is None:
                    event = parser.next_event()
                    if event is h11.NEED_DATA:
                        parser.receive_data(await stream.receive_some(65536))
                    elif isinstance(event, h11.Request):
                        head = event
                    else:
                        return
                body = await read_request_body(stream, parser)
            if head is None:
                return
            if body is None:
                await stream.send_all(render(HttpProblem(413, "request body too large").response()))
                return
            request = HttpRequest.from_h11(head.method, head.target, head.headers, body)
            if request.path != CHAT_COMPLETIONS_PATH:
                await stream.send_all(
                    render(_json(404, {"error": {"message": "Not Found", "type": "not_found"}}))
                )
                return
            started = time.perf_counter()
            status = await respond_chat_completions(stream, request, body, runtime, config)
            log.info(
                "http_handled",
                http_method=request.method,
                path=request.path,
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)
