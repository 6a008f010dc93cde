"""The generic channel path: any platform behind a plugin sidecar (Slack, Discord and others later).

The plugin declares ``channel.poll``, ``channel.ack`` and ``channel.send`` (see
:mod:`appliance.channels.registry` for the contract); this adapter applies the same rules as the
built-in channels:
- ``channel.poll {"timeoutMs"}`` returns a list of ``{chatId, senderId, text, messageId, senderName?,
  isGroup?, mentioned?}``; entries are gated (allowlist deny-by-default, mention in groups), handed to the
  handler, and only then acknowledged with ``channel.ack {"messageId"}``. Until acknowledged the plugin
  keeps offering them (at-least-once; the idempotency key ``plugin:<name>:<messageId>`` dedupes);
- a retryable handler or plugin error backs off and polls again, and so does any
  :class:`~appliance.errors.Unavailable` from the plugin (a JSON-RPC error answer, a protocol error
  that got it restarted): the process is supervised, so "not now" is never final. Only a refusal such
  as a capability the plugin never declared (``Forbidden``) ends :meth:`run`; a non-retryable refusal
  from the handler is final for that message and acknowledged;
- ``channel.send {"chatId", "text"}`` is called once per part (split at the declared limit) and answers
  ``{"messageId"}``.
This module talks to the plugin through :class:`PluginCaller` (structural), so it does not import the
plugins package: :class:`~appliance.plugins.PluginSupervisor` fits as is.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import trio

from appliance.channels.backoff import Backoff
from appliance.channels.base import (
    Allowlist,
    Capabilities,
    ChannelSendFailed,
    InboundHandler,
    InboundMessage,
    SentMessage,
    split_message,
)
from appliance.errors import ApplianceError, Unavailable
from appliance.log import get_logger

__all__ = ["PluginCaller", "PluginChannelAdapter"]

log = get_logger("appliance.channels.plugin")


class PluginCaller(Protocol):
    async def call(self, method: str, params: Any = None, *, timeout_s: float | None = None) -> Any: ...


class PluginChannelAdapter:
    def __init__(
        self,
        name: str,
        plugin: PluginCaller,
        *,
        capabilities: Capabilities,
        allowlist: Allowlist,
        jid_prefix: str,
        require_mention_in_groups: bool = True,
        poll_timeout_s: float = 25.0,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
        on_alive: Callable[[], None] | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.name = f"plugin:{name}"
        self.capabilities = capabilities
        self._plugin = plugin
        self._allow = allowlist
        self._prefix = jid_prefix
        self._mention_gate = require_mention_in_groups
        self._poll_timeout_s = poll_timeout_s
        self._backoff = Backoff(retry_base_s, retry_cap_s, 0.5, rand)
        self._on_alive = on_alive or (lambda: None)

    def _message(self, entry: Mapping[str, Any]) -> InboundMessage | None:
        chat, sender, text, mid = (entry.get(k) for k in ("chatId", "senderId", "text", "messageId"))
        if not all(isinstance(v, str) and v for v in (chat, sender, text, mid)):
            return None
        return InboundMessage(
            channel=self.name,
            chat_id=f"{self._prefix}{chat}",
            sender_id=f"{self._prefix}{sender}",
            text=str(text),
            message_id=str(mid),
            idempotency_key=f"{self.name}:{mid}",
            sender_name=str(entry.get("senderName", "")),
            is_group=bool(entry.get("isGroup", False)),
            mentioned=bool(entry.get("mentioned", False)),
        )

    async def run(self, handler: InboundHandler, *, max_messages: int | None = None) -> int:
        accepted = 0
        while max_messages is None or accepted < max_messages:
            try:
                batch = await self._plugin.call(
                    "channel.poll",
                    {"timeoutMs": int(self._poll_timeout_s * 1000)},
                    timeout_s=self._poll_timeout_s + 10.0,
                )
                self._on_alive()
                self._backoff.reset()
                for entry in batch if isinstance(batch, list) else []:
                    if max_messages is not None and accepted >= max_messages:
                        break
                    accepted += await self._deliver(entry, handler)
            except ApplianceError as exc:
                if not (exc.retryable or isinstance(exc, Unavailable)):
                    raise
                delay = self._backoff.next_delay()
                log.warning(
                    "plugin_channel_poll_failed",
                    channel=self.name,
                    error=exc.message,
                    retry_in_s=round(delay, 3),
                )
                await trio.sleep(delay)
        return accepted

    async def _deliver(self, entry: Any, handler: InboundHandler) -> int:
        msg = self._message(entry) if isinstance(entry, Mapping) else None
        mid = entry.get("messageId") if isinstance(entry, Mapping) else None
        admitted = 0
        if msg is None:
            log.warning("plugin_channel_entry_malformed", channel=self.name)
        elif not self._allow.admits(
            user_id=msg.sender_id.removeprefix(self._prefix), chat_id=msg.chat_id.removeprefix(self._prefix)
        ):
            log.info("plugin_channel_skipped", channel=self.name, reason="not_allowed")
        elif msg.is_group and self._mention_gate and not msg.mentioned:
            log.info("plugin_channel_skipped", channel=self.name, reason="no_mention")
        else:
            try:
                await handler(msg)
                admitted = 1
            except ApplianceError as exc:
                if exc.retryable:
                    raise
                log.warning("plugin_channel_refused", channel=self.name, code=str(exc.code))
        if isinstance(mid, str) and mid:
            await self._plugin.call("channel.ack", {"messageId": mid})
        return admitted

    async def send(self, chat_id: str, text: str) -> SentMessage:
        ids: list[str] = []
        for part in split_message(text, self.capabilities.max_message_chars):
            if not part.strip():
                continue
            try:
                result = await self._plugin.call(
                    "channel.send", {"chatId": chat_id.removeprefix(self._prefix), "text": part}
                )
            except ApplianceError as exc:
                raise ChannelSendFailed(
                    f"{self.name} send failed: {exc.message}", details={"chat_id": chat_id}
                ) from exc
            ids.append(str(result.get("messageId", "")) if isinstance(result, Mapping) else "")
        return SentMessage(chat_id, tuple(ids))

    async def aclose(self) -> None:
        return None
