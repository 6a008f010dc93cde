"""A loopback WhatsApp bridge we own: speaks the frames of :mod:`appliance.channels.whatsapp_wire` over a
real WebSocket (trio-websocket), on 127.0.0.1 port 0, started with ``nursery.start(bridge.serve)``.

Behaviour a real bridge must have, kept here so tests exercise it:
- ``hello`` with the wrong token gets ``error/unauthorized`` and a close;
- pushed messages stay pending until the client answers ``received``; a new connection gets every
  pending message again (at-least-once);
- ``send`` is answered ``sent`` (or ``send_failed`` when ``fail_chats`` has the chat); a repeated ``ref``
  is confirmed again but recorded once (dedupe on ref);
- test controls: :meth:`drop` closes live connections, ``reject_next`` refuses that many handshakes (an
  ``error/not_ready`` frame and a close), ``connect_times`` records ``trio.current_time()`` of every connection attempt (autojump-friendly).
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import trio
import trio_websocket

__all__ = ["BridgeSent", "FakeWhatsAppBridge"]


@attrs.frozen
class BridgeSent:
    ref: str
    chat_jid: str
    text: str


class FakeWhatsAppBridge:
    def __init__(self, token: str = "bridge-token", *, self_jid: str = "15550000000@s.whatsapp.net") -> None:
        self.token = token
        self.self_jid = self_jid
        self.pending: dict[str, dict[str, Any]] = {}
        self.received: list[str] = []
        self.sent: list[BridgeSent] = []
        self.fail_chats: set[str] = set()
        self.reject_next = 0
        self.ack_sends = True
        self.connect_times: list[float] = []
        self.port = 0
        self._refs: set[str] = set()
        self._live: set[trio_websocket.WebSocketConnection] = set()
        self._changed = trio.Event()
        self._next_id = 0

    # -- controls --------------------------------------------------------------------------------------

    def push_message(
        self,
        text: str,
        *,
        chat_jid: str = "4915100000001@s.whatsapp.net",
        sender: str = "4915100000001@s.whatsapp.net",
        is_group: bool = False,
        mentions: list[str] | None = None,
        from_me: bool = False,
    ) -> str:
        self._next_id += 1
        mid = f"WA{self._next_id:06d}"
        frame = {
            "type": "message",
            "id": mid,
            "chatJid": chat_jid,
            "sender": sender,
            "senderName": "Tester",
            "text": text,
            "timestamp": 1_700_000_000 + self._next_id,
            "fromMe": from_me,
            "isGroup": is_group,
            "mentions": mentions or [],
        }
        self.pending[mid] = frame
        self._notify()
        return mid

    async def drop(self) -> None:
        """Close every live connection (the bridge restarting, the phone losing network)."""
        for ws in list(self._live):
            await ws.aclose(code=1012, reason="bridge restarting")

    async def wait_for(self, predicate: Any) -> None:
        while not predicate():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- server ----------------------------------------------------------------------------------------

    async def serve(
        self, *, host: str = "127.0.0.1", port: int = 0, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: trio_websocket.serve_websocket(
                    self._handle, host, port, None, handler_nursery=nursery, task_status=task_status
                )
            )
            self.port = int(server.port)
            task_status.started(self.port)

    async def _handle(self, request: trio_websocket.WebSocketRequest) -> None:
        self.connect_times.append(trio.current_time())
        self._notify()
        ws = await request.accept()
        self._live.add(ws)
        try:
            hello = json.loads(await ws.get_message())
            if self.reject_next > 0:
                # an error frame, not an HTTP 503: trio-websocket 0.12 leaks the client socket on rejection
                self.reject_next -= 1
                await ws.send_message(
                    json.dumps({"type": "error", "code": "not_ready", "message": "linking"})
                )
                await ws.aclose(code=1013)
                return
            if hello.get("type") != "hello" or hello.get("token") != self.token:
                await ws.send_message(
                    json.dumps({"type": "error", "code": "unauthorized", "message": "bad token"})
                )
                await ws.aclose(code=4001)
                return
            await ws.send_message(json.dumps({"type": "ready", "protocol": 1, "self": self.self_jid}))
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._push_pending, ws)
                    while True:
                        frame = json.loads(await ws.get_message())
                        await self._on_frame(ws, frame)
            except* trio_websocket.ConnectionClosed:
                pass
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            self._live.discard(ws)
            self._notify()

    async def _push_pending(self, ws: trio_websocket.WebSocketConnection) -> None:
        delivered: set[str] = set()
        while True:
            for mid, frame in list(self.pending.items()):
                if mid not in delivered:
                    delivered.add(mid)
                    await ws.send_message(json.dumps(frame))
            await self._changed.wait()

    async def _on_frame(self, ws: trio_websocket.WebSocketConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "received":
            mid = str(frame.get("id"))
            if self.pending.pop(mid, None) is not None:
                self.received.append(mid)
            self._notify()
        elif kind == "send":
            ref, chat = str(frame.get("ref")), str(frame.get("chatJid"))
            if chat in self.fail_chats:
                await ws.send_message(
                    json.dumps({"type": "send_failed", "ref": ref, "error": "not on whatsapp"})
                )
                return
            if ref not in self._refs:
                self._refs.add(ref)
                self.sent.append(BridgeSent(ref, chat, str(frame.get("text"))))
                self._notify()
            if self.ack_sends:
                await ws.send_message(json.dumps({"type": "sent", "ref": ref, "id": f"OUT-{ref}"}))
