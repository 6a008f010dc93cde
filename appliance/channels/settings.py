"""Channel settings (frozen attrs), to become ``[channels.telegram]`` / ``[channels.whatsapp]`` /
``[channels.webhook]`` / ``[channels.watchdog]`` sections of :mod:`appliance.config.settings`.

Same conventions as the main settings: ``metadata={"range": ...}`` / ``{"choices": ...}`` for the loader,
``{"secret": True}`` for credentials. Allowlists deny by default: empty lists admit nobody unless
``allow_all`` is true.
"""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["ChannelsSettings", "TelegramSettings", "WatchdogSettings", "WebhookSettings", "WhatsAppSettings"]


def _r(lo: float, hi: float) -> dict[str, Any]:
    return {"range": (lo, hi)}


def _ids(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen
class TelegramSettings:
    enabled: bool = False
    bot_token: str = attrs.field(default="", metadata={"secret": True})
    api_base: str = "https://api.telegram.org"
    #: Telegram numeric user ids admitted in any chat
    allow_user_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    #: Telegram chat ids (negative for groups) whose every member is admitted
    allow_chat_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    allow_all: bool = False
    require_mention_in_groups: bool = True
    poll_timeout_s: int = attrs.field(default=30, metadata=_r(0, 50))
    request_timeout_s: float = attrs.field(default=15.0, metadata=_r(1, 300))
    max_message_chars: int = attrs.field(default=4096, metadata=_r(16, 4096))
    send_attempts: int = attrs.field(default=3, metadata=_r(1, 10))
    retry_base_s: float = attrs.field(default=1.0, metadata=_r(0.01, 60))
    retry_cap_s: float = attrs.field(default=30.0, metadata=_r(0.1, 600))


@attrs.frozen
class WhatsAppSettings:
    enabled: bool = False
    bridge_url: str = "ws://127.0.0.1:3001/"
    bridge_token: str = attrs.field(default="", metadata={"secret": True})
    #: sender JIDs (``123@s.whatsapp.net``) admitted in any chat
    allow_sender_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    #: chat JIDs (``...@g.us`` groups) whose every member is admitted
    allow_chat_ids: tuple[str, ...] = attrs.field(default=(), converter=_ids)
    allow_all: bool = False
    require_mention_in_groups: bool = True
    assistant_name: str = "Andy"
    #: False = shared number: outbound gets an ``"<name>: "`` prefix and inbound with it is the bot's own
    has_own_number: bool = True
    reconnect_base_s: float = attrs.field(default=1.0, metadata=_r(0.01, 60))
    reconnect_cap_s: float = attrs.field(default=60.0, metadata=_r(0.1, 3600))
    reconnect_jitter: float = attrs.field(default=0.5, metadata=_r(0, 1))
    outbound_buffer: int = attrs.field(default=256, metadata=_r(1, 100_000))
    send_timeout_s: float = attrs.field(default=30.0, metadata=_r(0.1, 600))
    ping_interval_s: float = attrs.field(default=30.0, metadata=_r(1, 3600))
    max_message_chars: int = attrs.field(default=4096, metadata=_r(16, 65_536))
    max_frame_bytes: int = attrs.field(default=1_048_576, metadata=_r(1_024, 16_777_216))


@attrs.frozen
class WebhookSettings:
    enabled: bool = False
    bind: str = "127.0.0.1"
    port: int = attrs.field(default=18790, metadata=_r(0, 65535))
    path: str = "/hooks/inbound"
    secret: str = attrs.field(default="", metadata={"secret": True})
    callback_url: str = ""
    replay_window_s: int = attrs.field(default=300, metadata=_r(1, 3600))
    nonce_cache_size: int = attrs.field(default=4096, metadata=_r(16, 1_000_000))
    max_body_bytes: int = attrs.field(default=65_536, metadata=_r(256, 16_777_216))
    max_message_chars: int = attrs.field(default=65_536, metadata=_r(16, 1_048_576))
    request_timeout_s: float = attrs.field(default=10.0, metadata=_r(0.1, 300))


@attrs.frozen
class WatchdogSettings:
    #: a channel with no sign of life for this long is cancelled and reconnected
    stall_after_s: float = attrs.field(default=120.0, metadata=_r(1, 86_400))
    restart_base_s: float = attrs.field(default=1.0, metadata=_r(0.01, 600))
    restart_cap_s: float = attrs.field(default=300.0, metadata=_r(0.1, 86_400))


@attrs.frozen
class ChannelsSettings:
    telegram: TelegramSettings = attrs.Factory(TelegramSettings)
    whatsapp: WhatsAppSettings = attrs.Factory(WhatsAppSettings)
    webhook: WebhookSettings = attrs.Factory(WebhookSettings)
    watchdog: WatchdogSettings = attrs.Factory(WatchdogSettings)
