"""What channels exist, what each can carry, and how to build the implemented ones.

Static on purpose (no discovery from strings, so PyInstaller sees every module).

Slack and Discord are *descriptors only*: their capabilities are recorded so routing and the agent can
plan for them, and :func:`build_adapter` refuses them with a clear ConfigError instead of faking them.
The generic path for adding them later (and for any other platform) is a plugin sidecar
(:mod:`appliance.plugins`): a process in any language that declares the capabilities ``channel.poll``,
``channel.ack`` and ``channel.send``, wrapped by
:class:`~appliance.channels.plugin_channel.PluginChannelAdapter` (implemented and tested with the
sample plugin): ``channel.poll {timeoutMs}`` returns ``[{chatId, senderId, text, messageId, senderName?,
isGroup?, mentioned?}]``, each entry is gated and handed to the inbound handler (channel
``plugin:<name>``), then acknowledged with ``channel.ack {messageId}``; replies go out with
``channel.send {chatId, text}`` per part. What remains for Slack (Socket Mode) and Discord (Gateway)
is the plugin process itself, whose connection libraries are heavy and JavaScript-first, plus flipping
``implemented`` here.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from appliance.channels.base import Capabilities, ChannelAdapter, ChannelKind, SentMessage
from appliance.errors import ConfigError, NotFound

__all__ = [
    "CHANNEL_DESCRIPTORS",
    "ChannelDescriptor",
    "ChannelRouter",
    "OutboundSender",
    "describe",
    "implemented_channels",
    "owner_kind",
    "require_implemented",
]


@attrs.frozen
class ChannelDescriptor:
    kind: ChannelKind
    capabilities: Capabilities
    implemented: bool
    jid_prefix: str
    notes: str = ""


CHANNEL_DESCRIPTORS: dict[ChannelKind, ChannelDescriptor] = {
    ChannelKind.TELEGRAM: ChannelDescriptor(
        ChannelKind.TELEGRAM,
        Capabilities(
            text=True,
            media=True,
            groups=True,
            mentions=True,
            reactions=True,
            edits=True,
            max_message_chars=4096,
        ),
        implemented=True,
        jid_prefix="tg:",
        notes="Bot API long polling; offset persisted; mention gating in groups",
    ),
    ChannelKind.WHATSAPP: ChannelDescriptor(
        ChannelKind.WHATSAPP,
        Capabilities(
            text=True,
            media=True,
            groups=True,
            mentions=True,
            reactions=True,
            edits=False,
            max_message_chars=4096,
        ),
        implemented=True,
        jid_prefix="",
        notes="WebSocket bridge (whatsapp_wire frames); JIDs end in @s.whatsapp.net / @g.us",
    ),
    ChannelKind.WEBHOOK: ChannelDescriptor(
        ChannelKind.WEBHOOK,
        Capabilities(text=True, groups=True, max_message_chars=65_536),
        implemented=True,
        jid_prefix="hook:",
        notes="HMAC-SHA256 signed inbound POST, signed outbound callback",
    ),
    ChannelKind.SLACK: ChannelDescriptor(
        ChannelKind.SLACK,
        Capabilities(
            text=True,
            media=True,
            groups=True,
            mentions=True,
            reactions=True,
            edits=True,
            max_message_chars=40_000,
        ),
        implemented=False,
        jid_prefix="slack:",
        notes="descriptor only; planned as a plugin sidecar (Socket Mode)",
    ),
    ChannelKind.DISCORD: ChannelDescriptor(
        ChannelKind.DISCORD,
        Capabilities(
            text=True,
            media=True,
            groups=True,
            mentions=True,
            reactions=True,
            edits=True,
            max_message_chars=2000,
        ),
        implemented=False,
        jid_prefix="dc:",
        notes="descriptor only; planned as a plugin sidecar (Gateway websocket)",
    ),
}


def describe(name: str) -> ChannelDescriptor:
    """Raises ConfigError for an unknown channel name."""
    try:
        return CHANNEL_DESCRIPTORS[ChannelKind(name)]
    except ValueError:
        raise ConfigError(f"unknown channel {name!r}", key="channels") from None


def implemented_channels() -> list[str]:
    return sorted(str(k) for k, d in CHANNEL_DESCRIPTORS.items() if d.implemented)


def require_implemented(name: str) -> ChannelDescriptor:
    """Raises ConfigError when the channel exists only as a descriptor (Slack, Discord)."""
    desc = describe(name)
    if not desc.implemented:
        raise ConfigError(f"channel {name!r} is not implemented yet ({desc.notes})", key=f"channels.{name}")
    return desc


def owner_kind(jid: str) -> ChannelKind | None:
    """Which channel a chat id belongs to, from its shape (NanoClaw's ``ownsJid``)."""
    if jid.startswith("tg:"):
        return ChannelKind.TELEGRAM
    if jid.endswith(("@g.us", "@s.whatsapp.net")):
        return ChannelKind.WHATSAPP
    if jid.startswith("hook:"):
        return ChannelKind.WEBHOOK
    if jid.startswith("slack:"):
        return ChannelKind.SLACK
    if jid.startswith("dc:"):
        return ChannelKind.DISCORD
    return None


class OutboundSender(Protocol):
    """What the agent side needs to answer: send text to a chat id of any channel."""

    async def send(self, chat_id: str, text: str) -> SentMessage: ...


class ChannelRouter:
    """The running adapters by kind; routes an outbound message to the adapter owning the chat id.

    This is the narrow outbound interface handed to the agent loop (an :class:`OutboundSender`)."""

    def __init__(self) -> None:
        self._adapters: dict[ChannelKind, ChannelAdapter] = {}

    def add(self, kind: ChannelKind, adapter: ChannelAdapter) -> None:
        self._adapters[kind] = adapter

    def owns(self, jid: str) -> bool:
        kind = owner_kind(jid)
        return kind is not None and kind in self._adapters

    async def send(self, chat_id: str, text: str) -> SentMessage:
        """Raises NotFound when no running channel owns ``chat_id`` (NanoClaw: "No channel for JID")."""
        kind = owner_kind(chat_id)
        adapter = self._adapters.get(kind) if kind is not None else None
        if adapter is None:
            raise NotFound(f"no channel for {chat_id}", details={"chat_id": chat_id})
        return await adapter.send(chat_id, text)
