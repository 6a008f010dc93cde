"""The generic channel path: a channel implemented by a plugin process (the route Slack and Discord
will take), driven through the real supervisor and sample plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio

from appliance.channels import Allowlist, Capabilities, InboundMessage
from appliance.channels.plugin_channel import PluginChannelAdapter
from appliance.errors import DefenderBlocked
from appliance.plugins import (
    PluginCallFailed,
    PluginSpec,
    PluginSupervisor,
    python_plugin_argv,
)

SAMPLE = str(Path(__file__).with_name("sample_plugin.py"))
CAPS = ["channel.ack", "channel.poll", "channel.send", "sample.outbox"]
BASE = ["sample.crash", "sample.echo", "sample.flood", "sample.sleep", "webhook.post"]


async def test_plugin_channel_gates_acks_and_sends() -> None:
    inbox = [
        {"chatId": "C1", "senderId": "U1", "text": "hello", "messageId": "1"},
        {"chatId": "C1", "senderId": "U9", "text": "stranger", "messageId": "2"},
        {"chatId": "G1", "senderId": "U1", "text": "group chatter", "messageId": "3", "isGroup": True},
        {
            "chatId": "G1",
            "senderId": "U1",
            "text": "@bot hi",
            "messageId": "4",
            "isGroup": True,
            "mentioned": True,
        },
        {"chatId": "C1", "senderId": "U1", "text": "evil", "messageId": "5"},
        {"chatId": "C1", "senderId": "U1", "text": "last", "messageId": "6"},
        {"broken": True},
    ]
    spec = PluginSpec(
        "slackish",
        python_plugin_argv(SAMPLE, "--mode", "channel", "--inbox", json.dumps(inbox)),
        granted=frozenset([*BASE, *CAPS]),
    )
    supervisor = PluginSupervisor(spec, restart_base_s=0.01)
    got: list[InboundMessage] = []

    async def handler(msg: InboundMessage) -> None:
        if msg.text == "evil":
            raise DefenderBlocked("blocked")
        got.append(msg)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            adapter = PluginChannelAdapter(
                "slackish",
                supervisor,
                capabilities=Capabilities(groups=True, mentions=True, max_message_chars=10),
                allowlist=Allowlist.of(["U1"]),
                jid_prefix="slack:",
            )
            assert await adapter.run(handler, max_messages=3) == 3
            assert [m.text for m in got] == ["hello", "@bot hi", "last"]
            assert got[0].chat_id == "slack:C1"
            assert got[0].idempotency_key == "plugin:slackish:1"
            sent = await adapter.send("slack:C1", "a reply that splits")
            assert sent.message_ids == ("out-1", "out-2", "out-3")
            state = await supervisor.call("sample.outbox")
            assert [o["text"] for o in state["outbox"]] == ["a reply", "that", "splits"]
            assert all(o["chatId"] == "C1" for o in state["outbox"])
            assert state["inbox"] == [{"broken": True}]  # everything with an id was acknowledged
            nursery.cancel_scope.cancel()


class FlakyPlugin:
    """A PluginCaller whose first poll is answered with a JSON-RPC error, then one message."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def call(self, method: str, params: Any = None, *, timeout_s: float | None = None) -> Any:
        self.calls.append(method)
        await trio.lowlevel.checkpoint()
        if method == "channel.poll" and self.calls.count("channel.poll") == 1:
            raise PluginCallFailed("plugin chat channel.poll failed: upstream down")
        if method == "channel.poll":
            return [{"chatId": "C1", "senderId": "U1", "text": "hi", "messageId": "1"}]
        return {}


async def test_an_error_answer_from_the_plugin_is_retried_not_final(autojump_clock: trio.abc.Clock) -> None:
    plugin = FlakyPlugin()
    adapter = PluginChannelAdapter(
        "chat", plugin, capabilities=Capabilities(), allowlist=Allowlist.of(["U1"]), jid_prefix="plugin:chat:"
    )
    got: list[InboundMessage] = []

    async def handler(msg: InboundMessage) -> None:
        got.append(msg)

    with trio.fail_after(120):
        assert await adapter.run(handler, max_messages=1) == 1
    assert plugin.calls == ["channel.poll", "channel.poll", "channel.ack"]
    assert got[0].chat_id == "plugin:chat:C1"
