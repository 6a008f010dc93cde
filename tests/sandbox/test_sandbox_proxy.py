"""Egress proxy: request parsing (sans-IO) and the audited unix-socket proxy against loopback peers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import trio

from appliance import log as applog
from appliance.sandbox.egress import BadProxyRequest, ProxyTarget, parse_proxy_head
from appliance.sandbox.policy import EgressAllowlist, parse_egress_allowlist
from appliance.sandbox.proxy import _resolve, serve_egress_proxy


def test_parse_connect() -> None:
    assert parse_proxy_head(b"CONNECT api.example.com:8443 HTTP/1.1\r\nHost: x\r\n\r\n") == ProxyTarget(
        "api.example.com", 8443, tunnel=True
    )


def test_parse_absolute_form_rewrites_to_origin_form_and_drops_proxy_headers() -> None:
    head = b"GET http://Example.com/a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: x\r\n\r\n"
    target = parse_proxy_head(head)
    assert (target.host, target.port, target.tunnel) == ("example.com", 80, False)
    assert target.forward_head == b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"


@pytest.mark.parametrize(
    "head",
    [
        b"GET /relative HTTP/1.1\r\n\r\n",
        b"GET https://x.example/ HTTP/1.1\r\n\r\n",
        b"CONNECT user@x.example:443 HTTP/1.1\r\n\r\n",
        b"CONNECT x.example:0 HTTP/1.1\r\n\r\n",
        b"CONNECT x.example:http HTTP/1.1\r\n\r\n",
        b"CONNECT x.example:443 SPDY/3\r\n\r\n",
        b"garbage\r\n\r\n",
        b"CONNECT x.example:443 HTTP/1.1\r\n",
        b"CONNECT x.example:443 HTTP/1.1\r\n" + b"a: b\r\n" * 3000 + b"\r\n",
    ],
)
def test_parse_rejects(head: bytes) -> None:
    with pytest.raises(BadProxyRequest):
        parse_proxy_head(head)


async def _echo_server(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(4096):
                await stream.send_all(b"echo:" + data)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def _ask(path: str, request: bytes, then: bytes = b"") -> bytes:
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(request)
        reply = await stream.receive_some(4096)
        if then:
            await stream.send_all(then)
            reply += await stream.receive_some(4096)
        return reply


async def test_proxy_allows_listed_and_audits_denied(tmp_path: Path) -> None:
    sink = io.StringIO()
    applog.configure(level="info", stream=sink, human=False)
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                port = await nursery.start(_echo_server)
                allow = parse_egress_allowlist(f"127.0.0.1:{port}\n", "t")
                path = str(tmp_path / "egress.sock")
                await nursery.start(
                    lambda task_status: serve_egress_proxy(path, allow, group="fam", task_status=task_status)
                )
                ok = await _ask(path, f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode(), then=b"ping")
                assert ok == b"HTTP/1.1 200 Connection established\r\n\r\necho:ping"
                fwd = await _ask(path, f"GET http://127.0.0.1:{port}/x HTTP/1.1\r\nHost: h\r\n\r\n".encode())
                assert fwd.startswith(b"echo:GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
                denied = await _ask(
                    path, f"CONNECT 127.0.0.1:{port + 1 if port < 65535 else 1} HTTP/1.1\r\n\r\n".encode()
                )
                assert denied.startswith(b"HTTP/1.1 403")
                bad = await _ask(path, b"BREW /pot HTCPCP/1.0\r\n\r\n")
                assert bad.startswith(b"HTTP/1.1 400")
                nursery.cancel_scope.cancel()
    finally:
        applog.configure()
    events = [json.loads(line) for line in sink.getvalue().splitlines()]
    kinds = [(e["event"], e.get("group")) for e in events if e["event"].startswith("egress_")]
    assert kinds == [
        ("egress_allowed", "fam"),
        ("egress_allowed", "fam"),
        ("egress_denied", "fam"),
        ("egress_denied", "fam"),
    ]
    assert not (tmp_path / "egress.sock").exists()


async def test_names_resolving_to_local_addresses_are_refused() -> None:
    with trio.fail_after(10), pytest.raises(PermissionError, match="local address"):
        await _resolve(ProxyTarget("localhost", 80, tunnel=True))


async def test_empty_allowlist_denies_everything(tmp_path: Path) -> None:
    path = str(tmp_path / "e.sock")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_egress_proxy(
                    path, EgressAllowlist(), group="g", task_status=task_status
                )
            )
            reply = await _ask(path, b"CONNECT api.example.com:443 HTTP/1.1\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 403")
            nursery.cancel_scope.cancel()
