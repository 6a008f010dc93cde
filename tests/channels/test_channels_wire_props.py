"""Property tests: the sans-IO decoders, fed arbitrary input, fail only in their documented way."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.channels.base import Allowlist
from appliance.channels.telegram_wire import BotIdentity, parse_update
from appliance.channels.whatsapp_wire import BridgeProtocolError, decode_frame, gate_message
from appliance.plugins.rpc import LineBuffer, PluginProtocolError, parse_message

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "update_id",
        "message",
        "chat",
        "from",
        "text",
        "entities",
        "type",
        "id",
        "is_bot",
        "reply_to_message",
        "caption",
        "offset",
        "length",
        "user",
        "date",
        "message_id",
        "username",
    ]
)
telegramish = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=6),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, telegramish, max_size=6), st.integers(0, 10))
def test_parse_update_never_crashes(update: dict[str, Any], uid: int) -> None:
    bot = BotIdentity(1, "bot")
    update = {**update, "update_id": uid}
    parsed = parse_update(update, bot=bot, allowlist=Allowlist(allow_all=True))
    assert parsed.update_id == uid
    with pytest.raises(TypeError):
        parse_update({"message": update.get("message")}, bot=bot, allowlist=Allowlist())


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | json_values.map(lambda v: json.dumps(v).encode())
)
def test_bridge_decoder_raises_only_protocol_error(raw: bytes) -> None:
    try:
        frame = decode_frame(raw, max_bytes=150)
    except BridgeProtocolError:
        return
    gate_message(
        frame,
        self_jid="me@s.whatsapp.net",
        allowlist=Allowlist(allow_all=True),
        assistant_name="Andy",
        has_own_number=True,
        require_mention_in_groups=True,
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_rpc_parser_raises_only_protocol_error(raw: bytes) -> None:
    try:
        for line in LineBuffer(256).feed(raw + b"\n"):
            parse_message(line)
    except PluginProtocolError:
        pass
