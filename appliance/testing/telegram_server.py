"""A loopback Telegram Bot API server we own, for tests, benches and operator dry runs.

It speaks the subset the channel uses, over real HTTP/1.1 (h11 on trio): ``getMe``, ``getUpdates``
(long polling, ``offset`` confirms and drops earlier updates, ``timeout`` in seconds) and
``sendMessage`` (400 "message is too long" above 4096 characters, as the real API does).
``/bot<token>/`` must carry the configured token, otherwise 401 as Telegram answers.

Start it with ``port = await nursery.start(server.serve)``; it binds 127.0.0.1 port 0 by default.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
import h11
import trio

__all__ = ["FakeTelegramServer", "SentRecord"]

MAX_TEXT = 4096


@attrs.frozen
class SentRecord:
    chat_id: int | str
    text: str
    message_id: int


class FakeTelegramServer:
    def __init__(self, token: str = "123:TEST", *, bot_id: int = 123, username: str = "test_bot") -> None:
        self.token = token
        self.bot_id = bot_id
        self.username = username
        self.updates: list[dict[str, Any]] = []
        self.sent: list[SentRecord] = []
        self.get_updates_calls: list[dict[str, Any]] = []
        #: (status, body) answers to give to the next requests of a method, in order (fault injection)
        self.faults: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        #: while True, getUpdates never answers (a stalled link, for watchdog tests)
        self.hang_get_updates = False
        self.port = 0
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._changed = trio.Event()
        self._sent_changed = trio.Event()

    # -- test controls ---------------------------------------------------------------------------------

    def push_message(
        self,
        text: str,
        *,
        chat_id: int = 42,
        user_id: int = 7,
        chat_type: str = "private",
        entities: list[dict[str, Any]] | None = None,
        reply_to_bot: bool = False,
        is_bot: bool = False,
    ) -> int:
        """Queue a ``message`` update; returns its update_id."""
        uid = next(self._update_ids)
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": 1_700_000_000 + uid,
            "chat": {"id": chat_id, "type": chat_type},
            "from": {"id": user_id, "is_bot": is_bot, "first_name": f"user{user_id}"},
            "text": text,
        }
        if entities:
            msg["entities"] = entities
        if reply_to_bot:
            msg["reply_to_message"] = {
                "message_id": 1,
                "from": {"id": self.bot_id, "is_bot": True, "first_name": "bot"},
                "chat": msg["chat"],
                "date": 1,
                "text": "earlier",
            }
        self.push_raw({"update_id": uid, "message": msg})
        return uid

    def push_raw(self, update: dict[str, Any]) -> None:
        self.updates.append(update)
        self._changed.set()
        self._changed = trio.Event()

    def fail_next(self, method: str, status: int, body: dict[str, Any]) -> None:
        self.faults.setdefault(method, []).append((status, body))

    async def wait_sent(self, count: int) -> list[SentRecord]:
        while len(self.sent) < count:
            await self._sent_changed.wait()
        return self.sent

    # -- server ----------------------------------------------------------------------------------------

    async def serve(
        self, *, host: str = "127.0.0.1", port: int = 0, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = int(listeners[0].socket.getsockname()[1])
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await _read_request(stream, conn)
                if request is None:
                    return
                status, payload = await self._route(request.target.decode(), body)
                data = json.dumps(payload).encode()
                headers = [("content-type", "application/json"), ("content-length", str(len(data)))]
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
                await stream.send_all(conn.send(h11.Data(data=data)) or b"")
                await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
            return
        finally:
            await stream.aclose()

    async def _route(self, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        path = target.split("?", 1)[0]
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        method = path[len(prefix) :]
        params = json.loads(body) if body else {}
        queued = self.faults.get(method)
        if queued:
            return queued.pop(0)
        if method == "getMe":
            return 200, _ok(
                {"id": self.bot_id, "is_bot": True, "first_name": "Test", "username": self.username}
            )
        if method == "getUpdates":
            return 200, _ok(await self._get_updates(params))
        if method == "sendMessage":
            return self._send_message(params)
        return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.get_updates_calls.append(params)
        if self.hang_get_updates:
            await trio.sleep_forever()
        offset = params.get("offset")
        if isinstance(offset, int):  # confirms every update below it: Telegram forgets them
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        timeout = float(params.get("timeout", 0))
        with trio.move_on_after(timeout):
            while not self.updates:
                await self._changed.wait()
        return list(self.updates[:100])

    def _send_message(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = params.get("text")
        if not isinstance(text, str) or not text:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
        if len(text) > MAX_TEXT:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        mid = next(self._message_ids)
        self.sent.append(SentRecord(params.get("chat_id", ""), text, mid))
        self._sent_changed.set()
        self._sent_changed = trio.Event()
        return 200, _ok({"message_id": mid, "chat": {"id": params.get("chat_id")}, "text": text})


def _ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


async def _read_request(stream: trio.SocketStream, conn: h11.Connection) -> tuple[Any, bytes]:
    request: Any = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            if not data and request is None:
                return None, b""
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None, b""
