"""VirusTotal client against a loopback HTTP server that speaks the v3 API shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio

from appliance.defender.virustotal import VirusTotalClient, VtOutcome, classify_stats, url_id

KEY = "test-key"
MALICIOUS = "a" * 64
CLEAN = "b" * 64
MISSING = "c" * 64
QUOTA = "d" * 64
SLOW = "e" * 64


def _stats(malicious: int, suspicious: int = 0) -> bytes:
    body = {
        "data": {
            "id": "x",
            "type": "file",
            "attributes": {
                "last_analysis_stats": {
                    "malicious": malicious,
                    "suspicious": suspicious,
                    "undetected": 60,
                    "harmless": 0,
                    "timeout": 0,
                }
            },
        }
    }
    return json.dumps(body).encode()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def _handle(stream: trio.SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    request_line, *header_lines = head.split("\r\n")
    path = request_line.split(" ")[1]
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    status, body = 200, b""
    if headers.get("x-apikey") != KEY:
        status, body = 401, _error("WrongCredentialsError", "bad key")
    elif path == f"/api/v3/files/{MALICIOUS}":
        body = _stats(5)
    elif path == f"/api/v3/files/{CLEAN}":
        body = _stats(0)
    elif path == f"/api/v3/files/{MISSING}":
        status, body = 404, _error("NotFoundError", "not found")
    elif path == f"/api/v3/files/{QUOTA}":
        status, body = 429, _error("QuotaExceededError", "quota")
    elif path == f"/api/v3/files/{SLOW}":
        await trio.sleep(5)
        body = _stats(0)
    elif path.startswith("/api/v3/urls/"):
        body = _stats(1)
    else:
        status, body = 404, _error("NotFoundError", "no route")
    reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests"}[status]
    response = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body
    await stream.send_all(response)
    await stream.aclose()


@asynccontextmanager
async def _server() -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, _handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/api/v3"
        nursery.cancel_scope.cancel()


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_ok_404_and_url_lookups() -> None:
    with trio.fail_after(20):
        async with _server() as base, VirusTotalClient(KEY, base_url=base, per_minute=100) as vt:
            bad = await vt.lookup_file(MALICIOUS)
            assert bad.outcome is VtOutcome.MALICIOUS
            assert bad.stats["malicious"] == 5
            assert (await vt.lookup_file(CLEAN)).outcome is VtOutcome.CLEAN
            missing = await vt.lookup_file(MISSING)
            assert missing.outcome is VtOutcome.UNKNOWN
            assert (await vt.lookup_url("https://example.com/x")).outcome is VtOutcome.SUSPICIOUS
            again = await vt.lookup_file(MALICIOUS)
            assert again.cached


async def test_quota_429_gives_unavailable_and_a_cool_down() -> None:
    clock = _Clock()
    with trio.fail_after(20):
        async with _server() as base, VirusTotalClient(KEY, base_url=base, per_minute=100, clock=clock) as vt:
            first = await vt.lookup_file(QUOTA)
            assert first.outcome is VtOutcome.UNAVAILABLE
            assert first.reason == "quota exceeded"
            second = await vt.lookup_file(CLEAN)
            assert second.reason == "quota cool-down"
            clock.now += 61
            assert (await vt.lookup_file(CLEAN)).outcome is VtOutcome.CLEAN


async def test_timeout_gives_unavailable_quickly() -> None:
    with trio.fail_after(20):
        async with (
            _server() as base,
            VirusTotalClient(KEY, base_url=base, timeout_s=0.2, per_minute=100) as vt,
        ):
            with trio.fail_after(3):
                result = await vt.lookup_file(SLOW)
    assert result.outcome is VtOutcome.UNAVAILABLE
    assert result.reason == "timeout"


async def test_offline_gives_unavailable() -> None:
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with trio.fail_after(20):
        async with VirusTotalClient(KEY, base_url=f"http://127.0.0.1:{port}/api/v3", timeout_s=0.5) as vt:
            result = await vt.lookup_file(CLEAN)
    assert result.outcome is VtOutcome.UNAVAILABLE
    assert result.reason.startswith("offline")


async def test_wrong_key_is_unavailable_not_block() -> None:
    with trio.fail_after(20):
        async with _server() as base, VirusTotalClient("nope", base_url=base) as vt:
            result = await vt.lookup_file(MALICIOUS)
    assert result.outcome is VtOutcome.UNAVAILABLE
    assert "WrongCredentialsError" in result.reason


async def test_local_rate_limit_answers_at_once() -> None:
    clock = _Clock()
    with trio.fail_after(20):
        async with _server() as base, VirusTotalClient(KEY, base_url=base, per_minute=4, clock=clock) as vt:
            for _ in range(4):
                await vt.lookup_file(MISSING.replace("c", "f"))
                vt._cache.clear()
            limited = await vt.lookup_file(CLEAN)
    assert limited.reason == "local rate limit"


def test_helpers() -> None:
    assert url_id("http://example.com/") == "aHR0cDovL2V4YW1wbGUuY29tLw"
    assert classify_stats({"malicious": 3}) is VtOutcome.MALICIOUS
    assert classify_stats({"malicious": 1}) is VtOutcome.SUSPICIOUS
    assert classify_stats({"suspicious": 2}) is VtOutcome.SUSPICIOUS
    assert classify_stats({"harmless": 70}) is VtOutcome.CLEAN
