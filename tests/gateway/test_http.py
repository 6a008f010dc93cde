"""HTTP on the gateway port: the sans-IO responder, then real requests over loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from appliance.config.settings import GatewaySettings, Settings
from appliance.gateway.http import (
    HttpContext,
    HttpRequest,
    bearer_token,
    is_websocket_upgrade,
    render,
    respond,
)
from appliance.gateway.methods import system
from appliance.gateway.server import GatewayServer
from appliance.gateway.state import GatewayState

TOKEN = "s3cret-token"
CTX = HttpContext(
    auth_mode="token", token=TOKEN, uptime_ms=1234, event_loop={"degraded": False}, version="0.1.0"
)


def get(path: str, *headers: tuple[str, str], method: str = "GET") -> HttpRequest:
    return HttpRequest(method, path, tuple((k.lower(), v) for k, v in headers))


def body(resp: Any) -> Any:
    return json.loads(resp.body)


@pytest.mark.parametrize("path", ["/health", "/healthz", "/health?x=1"])
def test_health_needs_no_auth(path: str) -> None:
    resp = respond(get(path), CTX)
    assert resp.status == 200
    assert body(resp) == {"ok": True, "status": "live"}
    assert resp.content_type.startswith("application/json")


@pytest.mark.parametrize("path", ["/ready", "/readyz"])
def test_ready_needs_no_auth(path: str) -> None:
    resp = respond(get(path), CTX)
    assert resp.status == 200
    assert body(resp) == {"ready": True, "failing": [], "uptimeMs": 1234, "eventLoop": {"degraded": False}}


def test_ready_is_503_while_shutting_down() -> None:
    resp = respond(get("/ready"), attrs.evolve(CTX, ready=False, failing=("shutdown",)))
    assert resp.status == 503
    assert body(resp)["ready"] is False
    assert body(resp)["failing"] == ["shutdown"]


def test_health_rejects_other_methods() -> None:
    resp = respond(get("/health", method="POST"), CTX)
    assert resp.status == 405
    assert ("Allow", "GET, HEAD") in resp.headers


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (("Authorization", "Bearer wrong"),),
        (("Authorization", f"Basic {TOKEN}"),),
        (("Authorization", "Bearer"),),
        (("Authorization", f"Bearer {TOKEN}x"),),
    ],
)
@pytest.mark.parametrize("path", ["/", "/tools/invoke", "/v1/models", "/anything"])
def test_everything_else_needs_the_bearer_token(path: str, headers: tuple[tuple[str, str], ...]) -> None:
    resp = respond(get(path, *headers), CTX)
    assert resp.status == 401
    assert body(resp) == {"error": {"message": "Unauthorized", "type": "unauthorized"}}
    assert ("WWW-Authenticate", "Bearer") in resp.headers


def test_with_the_token_unknown_paths_are_404_and_root_is_a_text_page() -> None:
    auth = ("Authorization", f"Bearer {TOKEN}")
    resp = respond(get("/v1/chat/completions", auth, method="POST"), CTX)
    assert resp.status == 404
    assert body(resp) == {"error": {"message": "Not Found", "type": "not_found"}}
    root = respond(get("/", ("authorization", f"bearer  {TOKEN} ")), CTX)
    assert root.status == 200
    assert root.content_type.startswith("text/plain")
    assert b"appliance gateway 0.1.0" in root.body


def test_auth_none_lets_everything_through() -> None:
    resp = respond(get("/nope"), attrs.evolve(CTX, auth_mode="none", token=""))
    assert resp.status == 404


def test_empty_configured_token_never_matches() -> None:
    resp = respond(get("/", ("Authorization", "Bearer ")), attrs.evolve(CTX, token=""))
    assert resp.status == 401


def test_bearer_token_parsing() -> None:
    assert bearer_token(get("/", ("Authorization", "Bearer abc"))) == "abc"
    assert bearer_token(get("/", ("Authorization", "bearer   abc  "))) == "abc"
    assert bearer_token(get("/", ("Authorization", "Token abc"))) is None
    assert bearer_token(get("/")) is None


def test_upgrade_detection() -> None:
    assert is_websocket_upgrade(get("/", ("Upgrade", "websocket"), ("Connection", "Upgrade")))
    assert is_websocket_upgrade(get("/", ("Upgrade", "WebSocket")))
    assert not is_websocket_upgrade(get("/", ("Upgrade", "h2c")))
    assert not is_websocket_upgrade(get("/", ("Upgrade", "websocket"), method="POST"))


def test_render_writes_a_closing_http11_response() -> None:
    resp = respond(get("/health"), CTX)
    raw = render(resp)
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Connection: close" in lines
    assert f"Content-Length: {len(resp.body)}" in lines
    assert rest == resp.body
    assert render(resp, head_only=True) == head + b"\r\n\r\n"


def test_request_path_strips_query_and_fragment() -> None:
    assert get("/ready?x#y").path == "/ready"
    assert get("").path == "/"


# ------------------------------------------------------------------------------------------------ loopback


@asynccontextmanager
async def running_gateway(**gateway: Any) -> AsyncIterator[tuple[GatewayServer, int]]:
    settings = Settings(gateway=GatewaySettings(**{"port": 0, "token": TOKEN, **gateway}))
    state = GatewayState(settings=settings, db=None)  # type: ignore[arg-type]  # system methods tolerate no db
    server = GatewayServer(state, system.table)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        try:
            yield server, port
        finally:
            nursery.cancel_scope.cancel()


async def http_exchange(port: int, raw: bytes, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(raw)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, payload


def request_bytes(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_http_health_and_ready_over_loopback() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port):
            status, headers, payload = await http_exchange(port, request_bytes("GET", "/health"))
            assert status == 200
            assert json.loads(payload) == {"ok": True, "status": "live"}
            assert headers["connection"] == "close"
            status, _, payload = await http_exchange(port, request_bytes("GET", "/readyz"))
            ready = json.loads(payload)
            assert status == 200
            assert ready["ready"] is True
            assert ready["failing"] == []
            assert isinstance(ready["uptimeMs"], int)
            assert "eventLoop" in ready
            status, headers, payload = await http_exchange(port, request_bytes("HEAD", "/health"))
            assert status == 200
            assert payload == b""
            assert int(headers["content-length"]) > 0


async def test_http_protected_paths_over_loopback() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port):
            status, _, payload = await http_exchange(
                port, request_bytes("POST", "/tools/invoke", body=b'{"tool":"sessions_list","args":{}}')
            )
            assert status == 401
            assert json.loads(payload) == {"error": {"message": "Unauthorized", "type": "unauthorized"}}
            status, _, _ = await http_exchange(
                port, request_bytes("GET", "/v1/models", f"Authorization: Bearer {TOKEN}")
            )
            assert status == 404
            status, _, payload = await http_exchange(
                port, request_bytes("GET", "/", f"Authorization: Bearer {TOKEN}")
            )
            assert status == 200
            assert payload.startswith(b"appliance gateway")


async def test_http_garbage_and_oversized_heads_get_4xx_not_a_crash() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port):
            status, _, _ = await http_exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
            assert status == 400
            huge = request_bytes("GET", "/health", "X-Pad: " + "a" * 40_000)
            status, _, _ = await http_exchange(port, huge)
            assert status in (400, 431)
            # the server is still fine afterwards
            status, _, _ = await http_exchange(port, request_bytes("GET", "/health"))
            assert status == 200


async def test_http_websocket_upgrade_on_another_path_is_404() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port):
            raw = request_bytes(
                "GET",
                "/__openclaw__/worker",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            )
            status, _, _ = await http_exchange(port, raw)
            assert status == 404
            raw = request_bytes(
                "GET", "/", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"
            )
            status, _, _ = await http_exchange(port, raw)
            assert status == 400
            raw = request_bytes(
                "GET",
                "/",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Key: a2V5",
                "Sec-WebSocket-Version: 8",
            )
            status, headers, _ = await http_exchange(port, raw)
            assert status == 426
            assert headers["sec-websocket-version"] == "13"


async def test_http_ready_turns_503_during_shutdown() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (server, port):
            server.state.shutting_down = True
            status, _, payload = await http_exchange(port, request_bytes("GET", "/ready"))
            assert status == 503
            assert json.loads(payload)["failing"] == ["shutdown"]


async def test_http_connection_limit_answers_503() -> None:
    with trio.fail_after(10):
        async with running_gateway(max_connections=1) as (_, port):
            idle = await trio.open_tcp_stream("127.0.0.1", port)  # holds the only slot (no request yet)
            async with idle:
                await trio.sleep(0.05)
                status, _, _ = await http_exchange(port, request_bytes("GET", "/health"))
                assert status == 503


async def test_extra_http_routes_get_the_request_and_its_body() -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def echo(stream: trio.abc.Stream, request: HttpRequest, payload: bytes) -> int:
        seen.append((request.method, request.path, payload))
        await stream.send_all(render(attrs.evolve(respond(get("/health"), CTX), status=201, body=payload)))
        return 201

    with trio.fail_after(10):
        async with running_gateway() as (server, port):
            server.add_http_route("/v1/chat/completions", echo)
            status, _, payload = await http_exchange(
                port, request_bytes("POST", "/v1/chat/completions", body=b'{"model":"openclaw"}')
            )
            assert status == 201
            assert payload == b'{"model":"openclaw"}'
            assert seen == [("POST", "/v1/chat/completions", b'{"model":"openclaw"}')]
            status, _, _ = await http_exchange(port, request_bytes("POST", "/v1/other", body=b"{}"))
            assert status == 401
