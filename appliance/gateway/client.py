"""A small gateway client: handshake, calls, events. Used by ``appliance`` tooling, tests and benchmarks.

It speaks the same frames as the ``openclaw`` CLI (``connect`` with a shared token, ``req``/``res``/``event``),
so what works through it also works for the real client. Calls may run concurrently on one connection;
responses are matched by id.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

from appliance import __version__
from appliance.errors import ApplianceError, ErrorCode, ExitCode

__all__ = ["GatewayCallError", "GatewayClient", "open_gateway_client"]


class GatewayCallError(ApplianceError):
    """A ``res`` frame with ``ok:false``; keeps the peer's code, message and details."""

    exit_code = ExitCode.FAILURE

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(str(error.get("message", "")), details=error.get("details"))
        self.wire_code = str(error.get("code", ""))
        self.error = error

    @property
    def code(self) -> ErrorCode:  # type: ignore[override]
        try:
            return ErrorCode(self.wire_code)
        except ValueError:
            return ErrorCode.UNAVAILABLE


class GatewayClient:
    def __init__(self, ws: WebSocketConnection, nursery: trio.Nursery) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[str, trio.MemorySendChannel[dict[str, Any]]] = {}
        #: the most recent events (bounded: a long-lived client must not grow without limit)
        self.events: deque[dict[str, Any]] = deque(maxlen=256)
        self.hello: dict[str, Any] = {}
        self._event_send, self.event_stream = trio.open_memory_channel[dict[str, Any]](1024)
        self._nursery = nursery

    async def _reader(self) -> None:
        try:
            while True:
                text = await self._ws.get_message()
                frame = json.loads(text)
                if frame.get("type") == "res":
                    waiter = self._pending.get(frame.get("id", ""))
                    if waiter is not None:
                        waiter.send_nowait(frame)
                elif frame.get("type") == "event":
                    self.events.append(frame)
                    with contextlib.suppress(trio.WouldBlock):  # nobody reading events: keep the list only
                        self._event_send.send_nowait(frame)
        except ConnectionClosed:
            pass
        finally:
            for waiter in self._pending.values():
                waiter.close()

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request; return the raw first ``res`` frame."""
        req_id = f"{next(self._ids)}:{uuid.uuid4()}"
        send, recv = trio.open_memory_channel[dict[str, Any]](2)
        self._pending[req_id] = send
        frame: dict[str, Any] = {"type": "req", "id": req_id, "method": method}
        if params is not None:
            frame["params"] = params
        try:
            await self._ws.send_message(json.dumps(frame))
            try:
                return await recv.receive()
            except trio.EndOfChannel:
                raise GatewayCallError({"code": "UNAVAILABLE", "message": "connection closed"}) from None
        finally:
            del self._pending[req_id]

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request; return its payload or raise :class:`GatewayCallError`."""
        res = await self.request(method, params)
        if not res.get("ok"):
            raise GatewayCallError(res.get("error") or {"code": "UNAVAILABLE", "message": "no error"})
        return res.get("payload")

    async def aclose(self) -> None:
        await self._ws.aclose()


@asynccontextmanager
async def open_gateway_client(
    url: str,
    token: str | None,
    *,
    scopes: list[str] | None = None,
    client_id: str = "cli",
    mode: str = "cli",
) -> AsyncIterator[GatewayClient]:
    """Connect, answer the challenge with ``connect`` and yield a ready client.

    Raises GatewayCallError when the gateway refuses ``connect`` (bad token, protocol mismatch).
    """
    parsed = urlsplit(url)
    if parsed.scheme != "ws" or not parsed.hostname:
        raise GatewayCallError({"code": "INVALID_REQUEST", "message": f"expected a ws:// URL, got {url!r}"})
    resource = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    # We own the TCP stream: trio-websocket leaves it open when the peer vanishes mid-connection.
    stream = await trio.open_tcp_stream(parsed.hostname, parsed.port or 80)
    try:
        async with stream, trio.open_nursery() as nursery:
            ws = await wrap_client_stream(nursery, stream, parsed.hostname, resource)
            challenge = json.loads(await ws.get_message())
            if challenge.get("event") != "connect.challenge":
                raise GatewayCallError({"code": "INVALID_REQUEST", "message": "no connect.challenge"})
            client = GatewayClient(ws, nursery)
            nursery.start_soon(client._reader)
            params: dict[str, Any] = {
                "minProtocol": 4,
                "maxProtocol": 4,
                "client": {"id": client_id, "version": __version__, "platform": "linux", "mode": mode},
                "caps": [],
                "role": "operator",
                "scopes": scopes if scopes is not None else ["operator.admin"],
            }
            if token is not None:
                params["auth"] = {"token": token}
            client.hello = await client.call("connect", params)
            try:
                yield client
            finally:
                await ws.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the reader's nursery wraps errors; callers want the one error
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise
