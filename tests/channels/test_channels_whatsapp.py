"""WhatsApp adapter against the loopback bridge over a real WebSocket; backoff timing on an autojump
clock (virtual time, so the assertions are exact and nothing sleeps for real)."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from appliance.channels.base import ChannelBufferFull, ChannelSendFailed, InboundMessage
from appliance.channels.settings import WhatsAppSettings
from appliance.channels.telegram import ChannelNotLinked
from appliance.channels.whatsapp import WhatsAppAdapter
from appliance.errors import QueueFull
from appliance.testing.whatsapp_bridge import FakeWhatsAppBridge

ALICE = "4915100000001@s.whatsapp.net"
BOB = "4915100000002@s.whatsapp.net"
GROUP = "120363000000000001@g.us"


def _settings(port: int, **kw: object) -> WhatsAppSettings:
    base: dict[str, object] = {
        "bridge_url": f"ws://127.0.0.1:{port}/",
        "bridge_token": "bridge-token",
        "allow_sender_ids": (ALICE,),
        "reconnect_base_s": 1.0,
        "reconnect_cap_s": 8.0,
        "reconnect_jitter": 0.5,
        "send_timeout_s": 5.0,
    }
    base.update(kw)
    return WhatsAppSettings(**base)  # type: ignore[arg-type]


class Collector:
    def __init__(self) -> None:
        self.got: list[InboundMessage] = []

    async def __call__(self, msg: InboundMessage) -> None:
        self.got.append(msg)


async def test_inbound_acknowledged_after_handler_and_gated() -> None:
    bridge = FakeWhatsAppBridge()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            bridge.push_message("hi from a stranger", chat_jid=BOB, sender=BOB)
            bridge.push_message("group chatter", chat_jid=GROUP, sender=ALICE, is_group=True)
            bridge.push_message("@Andy in group", chat_jid=GROUP, sender=ALICE, is_group=True)
            bridge.push_message(
                "tagged", chat_jid=GROUP, sender=ALICE, is_group=True, mentions=[bridge.self_jid]
            )
            bridge.push_message("echo of me", from_me=True)
            bridge.push_message("direct")
            collect = Collector()
            adapter = WhatsAppAdapter(_settings(port))
            assert await adapter.run(collect, max_messages=3) == 3
            assert [m.text for m in collect.got] == ["@Andy in group", "tagged", "direct"]
            assert collect.got[0].is_group
            assert collect.got[0].mentioned
            await bridge.wait_for(lambda: not bridge.pending)  # skipped ones are acknowledged too
            assert len(bridge.received) == 6
            nursery.cancel_scope.cancel()


async def test_reconnect_backoff_with_jitter_after_rejections_and_drop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bridge = FakeWhatsAppBridge()
    bridge.reject_next = 4
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            collect = Collector()
            # rand() == 1.0 -> the low end of the jitter range: delay = ceiling * (1 - 0.5)
            adapter = WhatsAppAdapter(_settings(port), rand=lambda: 1.0)
            done = trio.Event()

            async def run() -> None:
                await adapter.run(collect, max_messages=2)
                done.set()

            nursery.start_soon(run)
            bridge.push_message("first")
            await bridge.wait_for(lambda: len(collect.got) == 1 and not bridge.pending)
            t = bridge.connect_times
            gaps = [round(b - a, 6) for a, b in itertools.pairwise(t)]
            assert gaps == [0.5, 1.0, 2.0, 4.0]  # 1, 2, 4, 8 s ceilings, halved by the jitter draw
            await bridge.drop()
            bridge.push_message("second")
            await done.wait()
            # a successful `ready` reset the backoff: the reconnect after the drop waited the base delay
            assert round(bridge.connect_times[-1] - bridge.connect_times[-2], 6) >= 0.5
            assert [m.text for m in collect.got] == ["first", "second"]
            assert len(bridge.connect_times) == 6
            nursery.cancel_scope.cancel()


async def test_backoff_caps(autojump_clock: trio.testing.MockClock) -> None:
    bridge = FakeWhatsAppBridge()
    bridge.reject_next = 7
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            adapter = WhatsAppAdapter(_settings(port, reconnect_jitter=0.0), rand=lambda: 0.5)
            bridge.push_message("x")
            assert await adapter.run(Collector(), max_messages=1) == 1
            t = bridge.connect_times
            assert [round(b - a, 6) for a, b in itertools.pairwise(t)] == [1, 2, 4, 8, 8, 8, 8]
            nursery.cancel_scope.cancel()


async def test_handler_refusal_reconnects_and_bridge_redelivers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bridge = FakeWhatsAppBridge()
    calls: list[str] = []

    async def handler(msg: InboundMessage) -> None:
        calls.append(msg.idempotency_key)
        if len(calls) == 1:
            raise QueueFull("busy", retry_after_ms=100)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            mid = bridge.push_message("please")
            assert await WhatsAppAdapter(_settings(port)).run(handler, max_messages=1) == 1
            assert calls == [f"whatsapp:{ALICE}:{mid}"] * 2
            await bridge.wait_for(lambda: bridge.received == [mid])
            assert len(bridge.connect_times) == 2
            nursery.cancel_scope.cancel()


async def test_outbound_buffer_flushes_on_reconnect_and_overflow_is_typed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bridge = FakeWhatsAppBridge()
    bridge.reject_next = 3
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            adapter = WhatsAppAdapter(
                _settings(port, outbound_buffer=3, send_timeout_s=60.0), rand=lambda: 0.0
            )
            results: list[object] = []
            both_confirmed = trio.Event()

            async def send(text: str) -> None:
                results.append(await adapter.send(ALICE, text))
                if len(results) == 2:
                    both_confirmed.set()

            nursery.start_soon(adapter.run, Collector())
            nursery.start_soon(send, "one")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(send, "two")
            await trio.testing.wait_all_tasks_blocked()
            assert adapter.buffered() == 2
            assert not adapter.connected
            with pytest.raises(ChannelBufferFull) as info:
                await adapter.send(ALICE, "a b c " * 2000)  # 2+ parts: does not fit
            assert info.value.retryable
            assert info.value.details == {"buffered": 2, "capacity": 3}
            await bridge.wait_for(lambda: len(bridge.sent) == 2)
            await both_confirmed.wait()
            assert [s.text for s in bridge.sent] == ["one", "two"]
            assert adapter.buffered() == 0
            nursery.cancel_scope.cancel()


async def test_send_failed_and_unconfirmed(autojump_clock: trio.testing.MockClock) -> None:
    bridge = FakeWhatsAppBridge()
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            adapter = WhatsAppAdapter(_settings(port, send_timeout_s=2.0))
            nursery.start_soon(adapter.run, Collector())
            bridge.fail_chats.add(BOB)
            with pytest.raises(ChannelSendFailed, match="not on whatsapp"):
                await adapter.send(BOB, "hello")
            bridge.ack_sends = False
            with pytest.raises(ChannelSendFailed, match="not confirmed"):
                await adapter.send(ALICE, "hello")
            nursery.cancel_scope.cancel()


async def test_shared_number_prefix_and_own_echo_skipped() -> None:
    bridge = FakeWhatsAppBridge()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            adapter = WhatsAppAdapter(_settings(port, has_own_number=False))
            bridge.push_message("Andy: an echo of my own reply")
            bridge.push_message("real")
            collect = Collector()
            nursery.start_soon(adapter.run, collect)
            await bridge.wait_for(lambda: not bridge.pending)
            await adapter.send(ALICE, "hello")
            assert bridge.sent[0].text == "Andy: hello"
            assert [m.text for m in collect.got] == ["real"]
            nursery.cancel_scope.cancel()


async def test_bad_token_is_not_linked() -> None:
    bridge = FakeWhatsAppBridge()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            with pytest.raises(ChannelNotLinked):
                await WhatsAppAdapter(_settings(port, bridge_token="wrong")).run(Collector(), max_messages=1)
            nursery.cancel_scope.cancel()


async def test_non_retryable_refusal_is_acknowledged() -> None:
    from appliance.errors import DefenderBlocked

    bridge = FakeWhatsAppBridge()
    calls: list[str] = []

    async def handler(msg: InboundMessage) -> None:
        calls.append(msg.text)
        if msg.text == "evil":
            raise DefenderBlocked("blocked")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            bad = bridge.push_message("evil")
            good = bridge.push_message("fine")
            assert await WhatsAppAdapter(_settings(port)).run(handler, max_messages=1) == 1
            await bridge.wait_for(lambda: set(bridge.received) == {bad, good})
            assert calls == ["evil", "fine"]
            assert len(bridge.connect_times) == 1  # no reconnect for a final refusal
            nursery.cancel_scope.cancel()
