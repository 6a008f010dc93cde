"""Channel settings: they live with all other settings in :mod:`appliance.config.settings`
(``[channels.telegram]``, ``[channels.whatsapp]``, ``[channels.webhook]``, ``[channels.watchdog]``).

Allowlists deny by default: empty lists admit nobody unless ``allow_all`` is true.
"""

from __future__ import annotations

from appliance.config.settings import (
    ChannelsSettings,
    TelegramSettings,
    WatchdogSettings,
    WebhookSettings,
    WhatsAppSettings,
)

__all__ = ["ChannelsSettings", "TelegramSettings", "WatchdogSettings", "WebhookSettings", "WhatsAppSettings"]
