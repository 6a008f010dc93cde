"""Telegram Bot API, sans-IO: parse ``getUpdates`` results, gate them, shape ``sendMessage`` calls.

Rules:
- only ``message`` updates with text (or a caption) become :class:`InboundMessage`; everything else is
  *skipped*, which still counts as processed (its update_id is acknowledged);
- the chat id is ``tg:<chat id>``; the idempotency key ``telegram:<bot id>:<update_id>`` is stable across
  redeliveries;
- gating order: bot's own / other bots' messages are skipped, then the allowlist (deny by default), then
  in groups the mention rule: an ``@username`` mention entity, a ``text_mention`` of the bot, a
  ``/command@username``, or a reply to one of the bot's messages.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from appliance.channels.base import Allowlist, InboundMessage, mentions_bot

__all__ = ["BotIdentity", "Gate", "ParsedUpdate", "TelegramApiError", "parse_update", "unwrap_result"]

_GROUP_TYPES = frozenset({"group", "supergroup"})


@attrs.frozen
class BotIdentity:
    bot_id: int
    username: str


class Gate(enum.StrEnum):
    ADMIT = "admit"
    NOT_A_MESSAGE = "not_a_message"
    EMPTY = "empty"
    FROM_BOT = "from_bot"
    NOT_ALLOWED = "not_allowed"
    NO_MENTION = "no_mention"


@attrs.frozen
class ParsedUpdate:
    update_id: int
    gate: Gate
    message: InboundMessage | None = None


@attrs.frozen
class TelegramApiError(Exception):
    """A Bot API answer with ``ok: false`` (``retry_after`` set on 429)."""

    error_code: int
    description: str
    retry_after: float | None = None


def unwrap_result(status: int, body: Any) -> Any:
    """Return ``result`` of a Bot API answer; raise :class:`TelegramApiError` for ``ok: false`` or junk."""
    if not isinstance(body, Mapping):
        raise TelegramApiError(status, "response is not a JSON object")
    if body.get("ok") is True and "result" in body:
        return body["result"]
    params = body.get("parameters")
    retry_after = None
    if isinstance(params, Mapping) and isinstance(params.get("retry_after"), int | float):
        retry_after = float(params["retry_after"])
    code = body.get("error_code")
    return _raise(
        int(code) if isinstance(code, int) else status, str(body.get("description", "")), retry_after
    )


def _raise(code: int, description: str, retry_after: float | None) -> Any:
    raise TelegramApiError(code, description, retry_after)


def _mentioned(msg: Mapping[str, Any], text: str, bot: BotIdentity) -> bool:
    uname = bot.username.lower()
    for ent in msg.get("entities") or msg.get("caption_entities") or ():
        if not isinstance(ent, Mapping):
            continue
        kind = ent.get("type")
        off, length = ent.get("offset", 0), ent.get("length", 0)
        if not isinstance(off, int) or not isinstance(length, int):
            continue
        # offsets count UTF-16 code units; compare on the UTF-16 encoding to stay exact
        frag = text.encode("utf-16-le")[2 * off : 2 * (off + length)].decode("utf-16-le", "replace")
        if kind == "mention" and frag.lower() == "@" + uname:
            return True
        if kind == "bot_command" and frag.lower().endswith("@" + uname):
            return True
        if kind == "text_mention":
            user = ent.get("user")
            if isinstance(user, Mapping) and user.get("id") == bot.bot_id:
                return True
    reply = msg.get("reply_to_message")
    if isinstance(reply, Mapping):
        author = reply.get("from")
        if isinstance(author, Mapping) and author.get("id") == bot.bot_id:
            return True
    return not msg.get("entities") and mentions_bot(text, [bot.username])


def parse_update(
    update: Mapping[str, Any],
    *,
    bot: BotIdentity,
    allowlist: Allowlist,
    require_mention_in_groups: bool = True,
) -> ParsedUpdate:
    """Classify one update. Raises ``TypeError`` only when ``update_id`` itself is missing."""
    uid = update.get("update_id")
    if not isinstance(uid, int) or isinstance(uid, bool):
        raise TypeError("update without an integer update_id")
    msg = update.get("message")
    if not isinstance(msg, Mapping) or not isinstance(msg.get("chat"), Mapping):
        return ParsedUpdate(uid, Gate.NOT_A_MESSAGE)
    chat = msg["chat"]
    raw_sender = msg.get("from")
    sender: Mapping[str, Any] = raw_sender if isinstance(raw_sender, Mapping) else {}
    text = msg.get("text") if isinstance(msg.get("text"), str) else msg.get("caption")
    if not isinstance(text, str) or not text.strip():
        return ParsedUpdate(uid, Gate.EMPTY)
    if sender.get("is_bot") or sender.get("id") == bot.bot_id:
        return ParsedUpdate(uid, Gate.FROM_BOT)
    chat_id, user_id = str(chat.get("id")), str(sender.get("id", ""))
    is_group = chat.get("type") in _GROUP_TYPES
    mentioned = _mentioned(msg, text, bot)
    name = " ".join(str(sender[k]) for k in ("first_name", "last_name") if sender.get(k))
    reply = msg.get("reply_to_message")
    inbound = InboundMessage(
        channel="telegram",
        chat_id=f"tg:{chat_id}",
        sender_id=f"tg:{user_id}",
        text=text,
        message_id=str(msg.get("message_id", "")),
        idempotency_key=f"telegram:{bot.bot_id}:{uid}",
        sender_name=name or str(sender.get("username", "")),
        is_group=is_group,
        mentioned=mentioned,
        timestamp_s=int(msg.get("date", 0)) if isinstance(msg.get("date"), int) else 0,
        reply_to_message_id=(
            str(reply.get("message_id")) if isinstance(reply, Mapping) and "message_id" in reply else None
        ),
    )
    if not allowlist.admits(user_id=user_id, chat_id=chat_id):
        return ParsedUpdate(uid, Gate.NOT_ALLOWED, inbound)
    if is_group and require_mention_in_groups and not mentioned:
        return ParsedUpdate(uid, Gate.NO_MENTION, inbound)
    return ParsedUpdate(uid, Gate.ADMIT, inbound)
