"""WhatsApp channel: a WebSocket client of a bridge process (frames in
:mod:`appliance.channels.whatsapp_wire`), on trio-websocket.

Rules:
- reconnect forever with capped exponential backoff plus jitter; a ``ready`` frame resets the backoff;
- inbound: each admitted message is handed to the handler, and only after it returns do we send
  ``received``; a handler that raises :class:`~appliance.errors.Unavailable` drops the connection
  instead, so the bridge redelivers after the backoff (at-least-once, deduped by idempotency key);
  the reader awaits the handler, so a slow handler back-pressures the socket instead of buffering
  (and therefore a handler must only *accept*: awaiting a confirmed ``send`` on this same adapter from
  inside the handler would wait for a ``sent`` frame the blocked reader cannot read);
- outbound: parts wait in one bounded buffer (``outbound_buffer`` parts, queued + unconfirmed) while the
  bridge is away and flush on reconnect; a send that does not fit raises :class:`ChannelBufferFull`
  (never silent loss); parts written but not confirmed when the link drops are resent first after the
  reconnect (the bridge dedupes on ``ref``);
- ``send`` waits up to ``send_timeout_s`` for confirmation; on timeout every unconfirmed part is
  withdrawn (not resent later) and :class:`ChannelSendFailed` is raised with ``details.confirmed``,
  so a caller's retry does not race a late resend;
- a handler raising a non-retryable :class:`~appliance.errors.ApplianceError` is a final outcome: the
  message is acknowledged and logged (``whatsapp_message_refused``).
"""

from __future__ import annotations

import itertools
import random
import ssl
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

import attrs
import trio
import trio_websocket

from appliance.channels.backoff import Backoff
from appliance.channels.base import (
    Allowlist,
    Capabilities,
    ChannelBufferFull,
    ChannelNotLinked,
    ChannelSendFailed,
    InboundHandler,
    SentMessage,
    split_message,
)
from appliance.channels.settings import WhatsAppSettings
from appliance.channels.whatsapp_wire import (
    PROTOCOL_VERSION,
    BridgeProtocolError,
    decode_frame,
    encode_frame,
    gate_message,
)
from appliance.errors import ApplianceError
from appliance.log import get_logger

__all__ = ["WHATSAPP_CAPABILITIES", "WhatsAppAdapter"]

log = get_logger("appliance.channels.whatsapp")

WHATSAPP_CAPABILITIES = Capabilities(
    text=True, media=True, groups=True, mentions=True, reactions=True, edits=False, max_message_chars=4096
)
_HANDSHAKE_TIMEOUT_S = 10.0


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The nursery wraps a reader/writer failure in a group; the first leaf says why the link ended."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


class _Deferred(Exception):
    """The handler could not accept a message now: reconnect later so the bridge redelivers it."""


_DISCONNECTS = (
    OSError,
    trio.BrokenResourceError,
    trio_websocket.HandshakeError,
    trio_websocket.ConnectionClosed,
    BridgeProtocolError,
    _Deferred,
    trio.TooSlowError,
)


@attrs.define(eq=False)
class _Part:
    ref: str
    chat_jid: str
    text: str
    done: trio.Event = attrs.Factory(trio.Event)
    written: bool = False
    platform_id: str | None = None
    error: str | None = None


class WhatsAppAdapter:
    name = "whatsapp"

    def __init__(
        self,
        settings: WhatsAppSettings,
        *,
        on_alive: Callable[[], None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.capabilities = attrs.evolve(WHATSAPP_CAPABILITIES, max_message_chars=settings.max_message_chars)
        self._on_alive = on_alive or (lambda: None)
        self._rand = rand
        self._allow = Allowlist.of(
            settings.allow_sender_ids, settings.allow_chat_ids, allow_all=settings.allow_all
        )
        self._outbox: deque[_Part] = deque()
        self._inflight: dict[str, _Part] = {}
        self._outbox_event = trio.Event()
        self._refs = itertools.count(1)
        self._ref_prefix = f"{random.getrandbits(32):08x}"
        self.connected = False

    # -- inbound / connection ------------------------------------------------------------------------

    async def run(self, handler: InboundHandler, *, max_messages: int | None = None) -> int:
        """Stay connected to the bridge; returns after ``max_messages`` accepted messages (if set)."""
        backoff = Backoff(
            self.settings.reconnect_base_s,
            self.settings.reconnect_cap_s,
            self.settings.reconnect_jitter,
            self._rand,
        )
        accepted = 0
        while max_messages is None or accepted < max_messages:
            remaining = None if max_messages is None else max_messages - accepted
            counter = [0]
            try:
                try:
                    await self._connect_and_serve(handler, remaining, counter, backoff)
                except BaseExceptionGroup as group:
                    raise _first_leaf(group) from group
            except ChannelNotLinked:
                raise
            except _DISCONNECTS as exc:
                log.warning("whatsapp_disconnected", error=f"{type(exc).__name__}: {exc}")
            finally:
                accepted += counter[0]
                self._disconnected()
            if max_messages is not None and accepted >= max_messages:
                break
            delay = backoff.next_delay()
            log.info("whatsapp_reconnect_scheduled", retry_in_s=round(delay, 3))
            await trio.sleep(delay)
        return accepted

    async def _connect_and_serve(
        self, handler: InboundHandler, remaining: int | None, counter: list[int], backoff: Backoff
    ) -> None:
        """One connection's life. We own the TCP stream and always close it ourselves: trio-websocket
        0.12 leaves the socket open when a handshake is rejected or times out."""
        url = urlsplit(self.settings.bridge_url)
        secure = url.scheme == "wss"
        host = url.hostname or "127.0.0.1"
        port = url.port or (443 if secure else 80)
        resource = (url.path or "/") + (f"?{url.query}" if url.query else "")
        stream: trio.abc.Stream
        with trio.fail_after(_HANDSHAKE_TIMEOUT_S):
            stream = await trio.open_tcp_stream(host, port)
        try:
            if secure:
                stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=host)
            async with trio.open_nursery() as ws_nursery:
                with trio.fail_after(_HANDSHAKE_TIMEOUT_S):
                    ws = await trio_websocket.wrap_client_stream(
                        ws_nursery, stream, host, resource, max_message_size=self.settings.max_frame_bytes
                    )
                try:
                    self_jid = await self._handshake(ws)
                    backoff.reset()
                    self.connected = True
                    log.info("whatsapp_connected", self_jid=self_jid)
                    await self._session(ws, self_jid, handler, remaining, counter)
                finally:
                    with trio.move_on_after(1.0) as cleanup:
                        cleanup.shield = True
                        await ws.aclose()
                    ws_nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)

    async def _handshake(self, ws: trio_websocket.WebSocketConnection) -> str:
        await ws.send_message(
            encode_frame("hello", protocol=PROTOCOL_VERSION, token=self.settings.bridge_token)
        )
        with trio.fail_after(_HANDSHAKE_TIMEOUT_S):
            while True:
                frame = decode_frame(await ws.get_message(), max_bytes=self.settings.max_frame_bytes)
                if frame["type"] == "ready":
                    self._on_alive()
                    return str(frame.get("self", ""))
                if frame["type"] == "error":
                    if frame.get("code") == "unauthorized":
                        raise ChannelNotLinked("whatsapp bridge rejected the token")
                    raise BridgeProtocolError(f"bridge error: {frame.get('code')}: {frame.get('message')}")

    async def _session(
        self,
        ws: trio_websocket.WebSocketConnection,
        self_jid: str,
        handler: InboundHandler,
        remaining: int | None,
        counter: list[int],
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws)
                nursery.start_soon(self._keepalive, ws)
                await self._reader(ws, self_jid, handler, remaining, counter)
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _first_leaf(group) from group

    async def _reader(
        self,
        ws: trio_websocket.WebSocketConnection,
        self_jid: str,
        handler: InboundHandler,
        remaining: int | None,
        counter: list[int],
    ) -> None:
        while remaining is None or counter[0] < remaining:
            frame = decode_frame(await ws.get_message(), max_bytes=self.settings.max_frame_bytes)
            self._on_alive()
            kind = frame["type"]
            if kind == "message":
                verdict = gate_message(
                    frame,
                    self_jid=self_jid,
                    allowlist=self._allow,
                    assistant_name=self.settings.assistant_name,
                    has_own_number=self.settings.has_own_number,
                    require_mention_in_groups=self.settings.require_mention_in_groups,
                )
                if verdict.admit and verdict.message is not None:
                    try:
                        await handler(verdict.message)
                    except ApplianceError as exc:
                        if exc.retryable:
                            raise _Deferred(str(exc)) from exc
                        log.warning("whatsapp_message_refused", id=frame.get("id"), code=str(exc.code))
                    else:
                        counter[0] += 1
                        log.info("whatsapp_message_accepted", chat_id=verdict.message.chat_id)
                else:
                    log.info("whatsapp_message_skipped", reason=verdict.reason, id=frame.get("id"))
                await ws.send_message(encode_frame("received", id=str(frame.get("id", ""))))
            elif kind in ("sent", "send_failed"):
                part = self._inflight.pop(str(frame.get("ref", "")), None)
                if part is not None:
                    part.platform_id = str(frame.get("id", "")) if kind == "sent" else None
                    part.error = None if kind == "sent" else str(frame.get("error", "send failed"))
                    part.done.set()

    async def _keepalive(self, ws: trio_websocket.WebSocketConnection) -> None:
        """A pong is a sign of life for the watchdog even when nobody writes; a lost link fails the ping
        (ConnectionClosed) and ends the session."""
        while True:
            await trio.sleep(self.settings.ping_interval_s)
            with trio.fail_after(self.settings.ping_interval_s):
                await ws.ping()
            self._on_alive()

    async def _writer(self, ws: trio_websocket.WebSocketConnection) -> None:
        while True:
            while not self._outbox:
                await self._outbox_event.wait()
                self._outbox_event = trio.Event()
            part = self._outbox.popleft()
            part.written = True
            self._inflight[part.ref] = part
            await ws.send_message(encode_frame("send", ref=part.ref, chatJid=part.chat_jid, text=part.text))

    def _disconnected(self) -> None:
        """Unconfirmed parts go back to the front of the buffer, in their original order."""
        self.connected = False
        for part in sorted(self._inflight.values(), key=lambda p: p.ref, reverse=True):
            part.written = False
            self._outbox.appendleft(part)
        self._inflight.clear()

    # -- outbound ------------------------------------------------------------------------------------

    def buffered(self) -> int:
        return len(self._outbox) + len(self._inflight)

    async def send(self, chat_id: str, text: str) -> SentMessage:
        """Queue ``text`` for ``chat_id`` and wait for the bridge's confirmation.

        Raises ChannelBufferFull when the bounded buffer cannot take every part, ChannelSendFailed when
        the bridge refuses a part or does not confirm within ``send_timeout_s``."""
        if not self.settings.has_own_number:
            text = f"{self.settings.assistant_name}: {text}"
        parts = [p for p in split_message(text, self.capabilities.max_message_chars) if p.strip()]
        if self.buffered() + len(parts) > self.settings.outbound_buffer:
            log.warning("whatsapp_buffer_full", chat_id=chat_id, buffered=self.buffered())
            raise ChannelBufferFull(
                "whatsapp outbound buffer is full",
                details={"buffered": self.buffered(), "capacity": self.settings.outbound_buffer},
                retry_after_ms=int(self.settings.reconnect_base_s * 1000),
            )
        items = [_Part(f"{self._ref_prefix}-{next(self._refs):012d}", chat_id, p) for p in parts]
        self._outbox.extend(items)
        self._outbox_event.set()
        with trio.move_on_after(self.settings.send_timeout_s):
            for item in items:
                await item.done.wait()
        pending = [i for i in items if not i.done.is_set()]
        for item in pending:
            if item.written:  # maybe delivered: never resend it behind the caller's back
                self._inflight.pop(item.ref, None)
            else:
                self._outbox.remove(item)
        failed = [i.error for i in items if i.error]
        if pending or failed:
            raise ChannelSendFailed(
                "whatsapp send not confirmed" if pending else f"whatsapp send failed: {failed[0]}",
                details={
                    "chat_id": chat_id,
                    "confirmed": sum(1 for i in items if i.platform_id),
                    "parts": len(items),
                },
            )
        return SentMessage(chat_id, tuple(i.platform_id or "" for i in items))

    async def aclose(self) -> None:
        self.connected = False
