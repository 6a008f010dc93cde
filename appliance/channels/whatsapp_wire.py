"""WhatsApp bridge frames, sans-IO: our own small JSON protocol (``nanoclaw-behaviour.md`` says nothing
about a bridge; NanoClaw links WhatsApp in-process with Baileys, which has no Python equivalent).

One JSON object per WebSocket text frame, ``type`` first. Protocol version 1:

=====================  ==========  ==========================================================================
frame                  direction   fields
=====================  ==========  ==========================================================================
``hello``              us->bridge  ``protocol`` (1), ``token``
``ready``              bridge->us  ``protocol``, ``self`` (our own JID)
``error``              bridge->us  ``code`` (``unauthorized`` | ``unsupported_protocol`` | ...), ``message``
``message``            bridge->us  ``id``, ``chatJid``, ``sender``, ``senderName``, ``text``, ``timestamp`` (s),
                                   ``fromMe``, ``isGroup``, ``mentions`` (JIDs)
``received``           us->bridge  ``id``: the message was durably accepted; until then the bridge keeps it and
                                   redelivers it on the next connection (at-least-once)
``send``               us->bridge  ``ref`` (ours, unique), ``chatJid``, ``text``
``sent``               bridge->us  ``ref``, ``id`` (platform message id)
``send_failed``        bridge->us  ``ref``, ``error``
=====================  ==========  ==========================================================================

Liveness uses WebSocket ping/pong. Unknown frame types are ignored (forward compatible); a frame that is
not a JSON object with a string ``type`` is a :class:`BridgeProtocolError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs

from appliance.channels.base import Allowlist, InboundMessage, mentions_bot

__all__ = [
    "PROTOCOL_VERSION",
    "BridgeProtocolError",
    "WaGate",
    "decode_frame",
    "encode_frame",
    "gate_message",
]

PROTOCOL_VERSION = 1


class BridgeProtocolError(Exception):
    """The bridge sent something that is not a frame of this protocol."""


def encode_frame(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"), ensure_ascii=False)


def decode_frame(raw: str | bytes, *, max_bytes: int) -> dict[str, Any]:
    """Parse one frame; raises BridgeProtocolError for oversize, non-JSON or untyped frames."""
    if len(raw) > max_bytes:
        raise BridgeProtocolError(f"frame of {len(raw)} bytes exceeds {max_bytes}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BridgeProtocolError("frame is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise BridgeProtocolError("frame is not an object with a string type")
    return data


@attrs.frozen
class WaGate:
    admit: bool
    reason: str
    message: InboundMessage | None = None


def gate_message(
    frame: Mapping[str, Any],
    *,
    self_jid: str,
    allowlist: Allowlist,
    assistant_name: str,
    has_own_number: bool,
    require_mention_in_groups: bool,
) -> WaGate:
    """Classify one ``message`` frame (same order as Telegram: bot, empty, allowlist, mention)."""
    text = frame.get("text")
    chat, sender = str(frame.get("chatJid", "")), str(frame.get("sender", ""))
    msg_id = str(frame.get("id", ""))
    if not msg_id or not chat:
        return WaGate(False, "malformed")
    from_bot = (
        bool(frame.get("fromMe"))
        if has_own_number
        else (isinstance(text, str) and text.startswith(f"{assistant_name}:"))
    )
    if from_bot:
        return WaGate(False, "from_bot")
    if not isinstance(text, str) or not text.strip():
        return WaGate(False, "empty")
    is_group = bool(frame.get("isGroup")) or chat.endswith("@g.us")
    mentions = frame.get("mentions") or []
    mentioned = (isinstance(mentions, list) and self_jid in mentions) or mentions_bot(text, [assistant_name])
    ts = frame.get("timestamp")
    msg = InboundMessage(
        channel="whatsapp",
        chat_id=chat,
        sender_id=sender,
        text=text,
        message_id=msg_id,
        idempotency_key=f"whatsapp:{chat}:{msg_id}",
        sender_name=str(frame.get("senderName", "")),
        is_group=is_group,
        mentioned=mentioned,
        timestamp_s=int(ts) if isinstance(ts, int) and not isinstance(ts, bool) else 0,
    )
    if not allowlist.admits(user_id=sender, chat_id=chat):
        return WaGate(False, "not_allowed", msg)
    if is_group and require_mention_in_groups and not mentioned:
        return WaGate(False, "no_mention", msg)
    return WaGate(True, "admit", msg)
