"""The channel adapter interface and its sans-IO helpers (no trio, no httpx, no clocks).

Rules:
- A channel turns platform events into :class:`InboundMessage` and hands each one to an
  :data:`InboundHandler`. When the handler *returns*, the message is durably accepted (journalled by the
  queue); only then may the adapter acknowledge it upstream (advance an offset, ack a bridge frame). If the
  handler raises, the message is not acknowledged and will be delivered again.
- Delivery to the handler is therefore at-least-once across crashes; every message carries an
  ``idempotency_key`` that is stable across redeliveries, and the handler dedupes on it (the queue
  journal's ``idempotency_key`` is UNIQUE), so a reply is never sent twice.
- Outbound text longer than a channel's ``max_message_chars`` is split by :func:`split_message`, never
  truncated.
- Allowlists deny by default: an empty allowlist admits nobody unless ``allow_all`` is set on purpose.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import attrs

from appliance.errors import NotLinked, Unavailable

__all__ = [
    "Allowlist",
    "Capabilities",
    "ChannelAdapter",
    "ChannelBufferFull",
    "ChannelKind",
    "ChannelNotLinked",
    "ChannelSendFailed",
    "InboundHandler",
    "InboundMessage",
    "SentMessage",
    "mentions_bot",
    "split_message",
]


class ChannelKind(enum.StrEnum):
    TELEGRAM = "telegram"
    WHATSAPP = "whatsapp"
    WEBHOOK = "webhook"
    SLACK = "slack"
    DISCORD = "discord"
    PLUGIN = "plugin"


@attrs.frozen
class Capabilities:
    """What a channel can carry; the agent and the router read this instead of guessing per platform."""

    text: bool = True
    media: bool = False
    groups: bool = False
    mentions: bool = False
    reactions: bool = False
    edits: bool = False
    max_message_chars: int = 4096


@attrs.frozen
class InboundMessage:
    """One message from a chat, after parsing and gating; ``chat_id`` is channel-prefixed (``tg:42``)."""

    channel: str
    chat_id: str
    sender_id: str
    text: str
    message_id: str
    idempotency_key: str
    sender_name: str = ""
    is_group: bool = False
    mentioned: bool = False
    timestamp_s: int = 0
    reply_to_message_id: str | None = None


@attrs.frozen
class SentMessage:
    """The platform ids of the parts an outbound text was split into."""

    chat_id: str
    message_ids: tuple[str, ...]


#: Called once per admitted message; returning means "durably accepted". Raising means "not accepted".
InboundHandler = Callable[[InboundMessage], Awaitable[None]]


class ChannelAdapter(Protocol):
    """A running channel. ``run`` serves until cancelled or until ``max_messages`` were accepted."""

    name: str
    capabilities: Capabilities

    async def run(self, handler: InboundHandler, *, max_messages: int | None = None) -> int:
        """Deliver inbound messages to ``handler``; returns how many were accepted."""
        ...

    async def send(self, chat_id: str, text: str) -> SentMessage:
        """Send ``text`` (split at the channel limit). Raises ``Unavailable`` subclasses on failure."""
        ...

    async def aclose(self) -> None: ...


class ChannelNotLinked(NotLinked):
    """The platform rejected our credentials (bad bot token / bridge token): restarting cannot fix it."""


class ChannelSendFailed(Unavailable):
    """The platform refused or did not confirm an outbound message."""


class ChannelBufferFull(Unavailable):
    """The bounded outbound buffer is full (channel disconnected too long); the caller must retry later."""


@attrs.frozen
class Allowlist:
    """Who may talk to the bot: users by id, chats by id. Deny by default."""

    user_ids: frozenset[str] = frozenset()
    chat_ids: frozenset[str] = frozenset()
    allow_all: bool = False

    @classmethod
    def of(
        cls, users: Iterable[object] = (), chats: Iterable[object] = (), *, allow_all: bool = False
    ) -> Allowlist:
        return cls(frozenset(str(u) for u in users), frozenset(str(c) for c in chats), allow_all)

    def admits(self, *, user_id: str, chat_id: str) -> bool:
        """A message is admitted when its sender or its chat is listed (a listed group admits its members)."""
        return self.allow_all or user_id in self.user_ids or chat_id in self.chat_ids


def split_message(text: str, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, preferring paragraph, line, then word
    boundaries; nothing is dropped except the whitespace a cut lands on. Raises ``ValueError`` for limit<1."""
    if limit < 1:
        raise ValueError("limit must be >= 1")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = -1
        for sep in ("\n\n", "\n", " "):
            idx = window.rfind(sep)
            if idx > 0:
                cut = idx
                break
        if cut <= 0:
            parts.append(rest[:limit])
            rest = rest[limit:]
            continue
        head = rest[:cut].rstrip()
        if not head:  # only whitespace before the separator: hard cut instead
            parts.append(rest[:limit])
            rest = rest[limit:]
            continue
        parts.append(head)
        rest = rest[cut:].lstrip("\n ")
    if rest or not parts:
        parts.append(rest)
    return parts


def mentions_bot(text: str, names: Iterable[str]) -> bool:
    """True when ``@name`` appears as a whole word (case-insensitive) for any of ``names``.

    ``@Andy's`` counts, ``@Andyextra`` does not (NanoClaw's trigger boundary rule); unlike NanoClaw's
    trigger the mention may appear anywhere, because platforms put mentions mid-sentence."""
    for name in names:
        bare = name.lstrip("@").strip()
        if not bare:
            continue
        if re.search(r"(?<![\w@])@" + re.escape(bare) + r"(?![\w])", text, re.IGNORECASE):
            return True
    return False
