"""Channels: chat platforms behind one adapter interface, plus cross-group authorisation.

Layers (one way): ``base``/``backoff``/``telegram_wire``/``whatsapp_wire``/``webhook_signing``/``authz``
(sans-IO) <- ``offsets`` (store) <- ``telegram``/``whatsapp``/``webhook``/``plugin_channel`` (trio
shells) <- ``watchdog``
<- ``registry`` (descriptors, router) <- ``cli``.

Interface to the agent side: inbound is an :data:`InboundHandler` (returning = durably accepted;
dedupe on ``InboundMessage.idempotency_key``), outbound is an :class:`OutboundSender`
(:class:`ChannelRouter`). This ``__init__`` imports only the light modules; the adapters (httpx,
trio-websocket) are imported from their modules by whoever starts them.
"""

from __future__ import annotations

from appliance.channels.authz import Action, Decision, GroupRecord, authorize, decide, is_valid_group_folder
from appliance.channels.backoff import Backoff, backoff_delay
from appliance.channels.base import (
    Allowlist,
    Capabilities,
    ChannelAdapter,
    ChannelBufferFull,
    ChannelKind,
    ChannelNotLinked,
    ChannelSendFailed,
    InboundHandler,
    InboundMessage,
    SentMessage,
    mentions_bot,
    split_message,
)
from appliance.channels.offsets import CHANNELS_SCHEMA_SQL, MemoryOffsetStore, OffsetStore, SqliteOffsetStore
from appliance.channels.registry import (
    CHANNEL_DESCRIPTORS,
    ChannelDescriptor,
    ChannelRouter,
    OutboundSender,
    describe,
    implemented_channels,
    owner_kind,
    require_implemented,
)
from appliance.channels.settings import (
    ChannelsSettings,
    TelegramSettings,
    WatchdogSettings,
    WebhookSettings,
    WhatsAppSettings,
)

__all__ = [
    "CHANNELS_SCHEMA_SQL",
    "CHANNEL_DESCRIPTORS",
    "Action",
    "Allowlist",
    "Backoff",
    "Capabilities",
    "ChannelAdapter",
    "ChannelBufferFull",
    "ChannelDescriptor",
    "ChannelKind",
    "ChannelNotLinked",
    "ChannelRouter",
    "ChannelSendFailed",
    "ChannelsSettings",
    "Decision",
    "GroupRecord",
    "InboundHandler",
    "InboundMessage",
    "MemoryOffsetStore",
    "OffsetStore",
    "OutboundSender",
    "SentMessage",
    "SqliteOffsetStore",
    "TelegramSettings",
    "WatchdogSettings",
    "WebhookSettings",
    "WhatsAppSettings",
    "authorize",
    "backoff_delay",
    "decide",
    "describe",
    "implemented_channels",
    "is_valid_group_folder",
    "mentions_bot",
    "owner_kind",
    "require_implemented",
    "split_message",
]
