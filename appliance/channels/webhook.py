"""Webhook channel: signed inbound HTTP (h11 on trio) and a signed outbound callback (httpx).

Rules:
- one route: ``POST <path>`` with a JSON object ``{"chatId", "senderId", "text", "messageId"?,
  "senderName"?, "isGroup"?}``; signatures and replay rules are in :mod:`~appliance.channels.webhook_signing`;
- answers: 202 accepted (after the handler durably accepted it), 400 bad JSON/fields, 401 malformed /
  bad signature / stale, 409 replayed nonce, 404/405 elsewhere, 413 body over ``max_body_bytes``,
  503 + ``Retry-After`` when the handler raises a retryable error (:class:`~appliance.errors.Unavailable`),
  403 when it raises FORBIDDEN (blocked), 422 for any other non-retryable refusal;
- a refused request never reaches the handler; every response closes the connection;
- outbound: each part (split at ``max_message_chars``) is one signed ``POST callback_url`` with
  ``{"chatId", "text", "part", "parts"}``; a non-2xx answer raises :class:`ChannelSendFailed`.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import attrs
import h11
import trio

from appliance.channels.base import (
    Capabilities,
    ChannelSendFailed,
    InboundHandler,
    InboundMessage,
    SentMessage,
    split_message,
)
from appliance.channels.settings import WebhookSettings
from appliance.channels.webhook_signing import ReplayGuard, Verdict, signed_headers, verify
from appliance.errors import ApplianceError, ErrorCode
from appliance.log import get_logger

__all__ = ["WEBHOOK_CAPABILITIES", "WebhookAdapter"]

log = get_logger("appliance.channels.webhook")

WEBHOOK_CAPABILITIES = Capabilities(
    text=True,
    media=False,
    groups=True,
    mentions=False,
    reactions=False,
    edits=False,
    max_message_chars=65_536,
)
_HEAD_TIMEOUT_S = 10.0
_VERDICT_STATUS = {
    Verdict.MALFORMED: 401,
    Verdict.BAD_SIGNATURE: 401,
    Verdict.STALE: 401,
    Verdict.REPLAYED: 409,
}


def _wall_s() -> int:
    return int(time.time())


class WebhookAdapter:
    name = "webhook"

    def __init__(self, settings: WebhookSettings, *, now_s: Callable[[], int] = _wall_s) -> None:
        self.settings = settings
        self.capabilities = attrs.evolve(WEBHOOK_CAPABILITIES, max_message_chars=settings.max_message_chars)
        self._secret = settings.secret.encode()
        self._now_s = now_s
        self.guard = ReplayGuard(settings.replay_window_s, settings.nonce_cache_size)
        self._client: Any = None
        self.port = 0

    # -- inbound -------------------------------------------------------------------------------------

    async def run(
        self,
        handler: InboundHandler,
        *,
        max_messages: int | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> int:
        """Serve until cancelled or ``max_messages`` accepted; ``task_status.started(port)``."""
        listeners = await trio.open_tcp_listeners(self.settings.port, host=self.settings.bind)
        self.port = int(listeners[0].socket.getsockname()[1])
        accepted = 0
        async with trio.open_nursery() as nursery:

            async def on_accept() -> None:
                nonlocal accepted
                accepted += 1
                if max_messages is not None and accepted >= max_messages:
                    nursery.cancel_scope.cancel()

            async def serve_one(stream: trio.SocketStream) -> None:
                try:
                    await self._handle(stream, handler, on_accept)
                finally:
                    await trio.aclose_forcefully(stream)

            await nursery.start(trio.serve_listeners, serve_one, listeners)
            log.info("webhook_listening", port=self.port, path=self.settings.path)
            task_status.started(self.port)
        return accepted

    async def _handle(
        self, stream: trio.SocketStream, handler: InboundHandler, on_accept: Callable[[], Any]
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=16_384)
        try:
            with trio.fail_after(_HEAD_TIMEOUT_S):
                request, body, too_big = await self._read(stream, conn)
        except (trio.TooSlowError, h11.RemoteProtocolError, trio.BrokenResourceError):
            return
        if request is None:
            return
        if too_big:
            await _respond(stream, conn, 413, {"error": "body too large"})
            return
        status, payload, retry_after = await self._decide(request, body, handler)
        await _respond(stream, conn, status, payload, retry_after=retry_after)
        if status == 202:
            await on_accept()

    async def _read(self, stream: trio.SocketStream, conn: h11.Connection) -> tuple[Any, bytes, bool]:
        request: Any = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65_536)
                if not data and request is None:
                    return None, b"", False
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
                length = dict(event.headers).get(b"content-length")
                if length is not None and length.isdigit() and int(length) > self.settings.max_body_bytes:
                    return request, b"", True
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.settings.max_body_bytes:
                    return request, b"", True
            elif isinstance(event, h11.EndOfMessage):
                return request, bytes(body), False
            else:
                return None, b"", False

    async def _decide(
        self, request: Any, body: bytes, handler: InboundHandler
    ) -> tuple[int, dict[str, Any], int | None]:
        path = request.target.decode("latin-1").split("?", 1)[0]
        if path != self.settings.path:
            return 404, {"error": "not found"}, None
        if request.method != b"POST":
            return 405, {"error": "method not allowed"}, None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        verdict = verify(self._secret, headers, body, now_s=self._now_s(), guard=self.guard)
        if verdict is not Verdict.OK:
            log.warning("webhook_rejected", reason=str(verdict))
            return _VERDICT_STATUS[verdict], {"error": str(verdict)}, None
        message = _parse_body(body, nonce=headers["x-appliance-nonce"])
        if message is None:
            return 400, {"error": "body must be a JSON object with string chatId, senderId and text"}, None
        try:
            await handler(message)
        except ApplianceError as exc:
            if exc.retryable:
                retry_s = max(1, math.ceil((exc.retry_after_ms or 1000) / 1000))
                log.warning("webhook_deferred", error=exc.message, retry_after_s=retry_s)
                return 503, {"error": "unavailable", "retryAfterMs": retry_s * 1000}, retry_s
            status = 403 if exc.code == ErrorCode.FORBIDDEN else 422
            log.warning("webhook_message_refused", code=str(exc.code), error=exc.message)
            return status, {"error": str(exc.code), "message": exc.message}, None
        log.info("webhook_message_accepted", chat_id=message.chat_id)
        return 202, {"accepted": True, "idempotencyKey": message.idempotency_key}, None

    # -- outbound ------------------------------------------------------------------------------------

    async def send(self, chat_id: str, text: str) -> SentMessage:
        """POST each part to ``callback_url``, signed. Raises ChannelSendFailed."""
        import httpx  # lazy: only needed when a callback is configured

        if not self.settings.callback_url:
            raise ChannelSendFailed("webhook has no callback_url", details={"chat_id": chat_id})
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.request_timeout_s)
        parts = split_message(text, self.capabilities.max_message_chars)
        ids: list[str] = []
        for index, part in enumerate(parts, 1):
            body = json.dumps(
                {"chatId": chat_id.removeprefix("hook:"), "text": part, "part": index, "parts": len(parts)},
                separators=(",", ":"),
            ).encode()
            nonce = secrets.token_urlsafe(18)
            headers = signed_headers(self._secret, self._now_s(), nonce, body)
            headers["content-type"] = "application/json"
            try:
                resp = await self._client.post(self.settings.callback_url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise ChannelSendFailed(
                    f"webhook callback failed: {type(exc).__name__}", details={"chat_id": chat_id}
                ) from exc
            if not 200 <= resp.status_code < 300:
                raise ChannelSendFailed(
                    f"webhook callback answered {resp.status_code}",
                    details={"chat_id": chat_id, "status": resp.status_code},
                )
            ids.append(nonce)
        return SentMessage(chat_id, tuple(ids))

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _parse_body(body: bytes, *, nonce: str) -> InboundMessage | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    chat, sender, text = data.get("chatId"), data.get("senderId"), data.get("text")
    if not all(isinstance(v, str) and v for v in (chat, sender, text)):
        return None
    mid = data.get("messageId")
    message_id = mid if isinstance(mid, str) and mid else nonce
    return InboundMessage(
        channel="webhook",
        chat_id=f"hook:{chat}",
        sender_id=f"hook:{sender}",
        text=str(text),
        message_id=message_id,
        idempotency_key=f"webhook:{chat}:{message_id}",
        sender_name=str(data.get("senderName", "")),
        is_group=bool(data.get("isGroup", False)),
        mentioned=True,
    )


async def _respond(
    stream: trio.SocketStream,
    conn: h11.Connection,
    status: int,
    payload: dict[str, Any],
    *,
    retry_after: int | None = None,
) -> None:
    data = json.dumps(payload, separators=(",", ":")).encode()
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(len(data))),
        ("connection", "close"),
    ]
    if retry_after is not None:
        headers.append(("retry-after", str(retry_after)))
    try:
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)) or b"")
        await stream.send_all(conn.send(h11.Data(data=data)) or b"")
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        return
