"""Telegram adapter against the loopback Bot API server, over real sockets."""

from __future__ import annotations

import contextlib

import pytest
import trio

from appliance.channels.base import InboundMessage
from appliance.channels.offsets import MemoryOffsetStore
from appliance.channels.settings import TelegramSettings
from appliance.channels.telegram import ChannelNotLinked, TelegramAdapter
from appliance.errors import QueueFull
from appliance.testing.telegram_server import FakeTelegramServer

TOKEN = "123:TEST"


def _settings(port: int, **kw: object) -> TelegramSettings:
    base = {
        "bot_token": TOKEN,
        "api_base": f"http://127.0.0.1:{port}",
        "allow_user_ids": ("7",),
        "poll_timeout_s": 1,
        "retry_base_s": 0.01,
        "retry_cap_s": 0.05,
    }
    base.update(kw)
    return TelegramSettings(**base)  # type: ignore[arg-type]


async def _run(
    server: FakeTelegramServer, settings: TelegramSettings, store: MemoryOffsetStore, n: int
) -> list[InboundMessage]:
    got: list[InboundMessage] = []

    async def handler(msg: InboundMessage) -> None:
        got.append(msg)

    adapter = TelegramAdapter(settings, offsets=store)
    try:
        assert await adapter.run(handler, max_messages=n) == n
    finally:
        await adapter.aclose()
    return got


async def test_long_polling_offsets_persist_and_never_redeliver() -> None:
    server = FakeTelegramServer(TOKEN)
    store = MemoryOffsetStore()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            first = server.push_message("one")
            server.push_message("two")
            got = await _run(server, _settings(port), store, 2)
            assert [m.text for m in got] == ["one", "two"]
            assert got[0].idempotency_key == f"telegram:123:{first}"
            assert store.offsets["telegram:123"] == first + 2
            # a fresh adapter with the same store asks from the stored offset and sees only the new one
            server.push_message("three")
            got = await _run(server, _settings(port), store, 1)
            assert [m.text for m in got] == ["three"]
            assert server.get_updates_calls[-1]["offset"] == first + 2
            nursery.cancel_scope.cancel()


async def test_handler_refusal_leaves_update_unacknowledged_then_redelivered() -> None:
    server = FakeTelegramServer(TOKEN)
    store = MemoryOffsetStore()
    seen: list[str] = []
    calls = 0

    async def handler(msg: InboundMessage) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise QueueFull("busy", retry_after_ms=10)
        seen.append(msg.idempotency_key)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            uid = server.push_message("hello")
            adapter = TelegramAdapter(_settings(port), offsets=store)
            assert await adapter.run(handler, max_messages=1) == 1
            await adapter.aclose()
            assert seen == [f"telegram:123:{uid}"]
            assert calls == 2
            assert store.offsets["telegram:123"] == uid + 1
            nursery.cancel_scope.cancel()


async def test_crash_between_accept_and_offset_redelivers_same_idempotency_key() -> None:
    """kill -9 after the handler accepted but before the offset was saved: the update comes again with
    the same key, so a deduping handler (the queue journal) answers it once."""
    server = FakeTelegramServer(TOKEN)

    class CrashingStore(MemoryOffsetStore):
        def advance(self, channel_key: str, next_offset: int) -> None:
            raise KeyboardInterrupt  # stands in for the process dying here

    journal: dict[str, InboundMessage] = {}

    async def handler(msg: InboundMessage) -> None:
        journal.setdefault(msg.idempotency_key, msg)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            server.push_message("once")
            adapter = TelegramAdapter(_settings(port), offsets=CrashingStore())
            with contextlib.suppress(KeyboardInterrupt):
                await adapter.run(handler, max_messages=1)
            await adapter.aclose()
            store = MemoryOffsetStore()
            got = await _run(server, _settings(port), store, 1)
            assert got[0].idempotency_key in journal
            assert len(journal) == 1
            nursery.cancel_scope.cancel()


async def test_allowlist_and_group_mention_gating() -> None:
    server = FakeTelegramServer(TOKEN, username="test_bot")
    store = MemoryOffsetStore()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            server.push_message("stranger", user_id=99)  # not allowed
            server.push_message("group no mention", chat_id=-100, chat_type="supergroup")
            server.push_message(
                "@test_bot hi there",
                chat_id=-100,
                chat_type="supergroup",
                entities=[{"type": "mention", "offset": 0, "length": 9}],
            )
            server.push_message("reply to you", chat_id=-100, chat_type="group", reply_to_bot=True)
            server.push_message("@test_botx nope", chat_id=-100, chat_type="group")
            server.push_message("from a bot", user_id=7, is_bot=True)
            server.push_message("dm ok")
            got = await _run(server, _settings(port), store, 3)
            assert [m.text for m in got] == ["@test_bot hi there", "reply to you", "dm ok"]
            assert got[0].is_group
            assert got[0].mentioned
            assert got[0].chat_id == "tg:-100"
            # everything gated out was still acknowledged: nothing is re-polled
            assert store.offsets["telegram:123"] == 8
            nursery.cancel_scope.cancel()


async def test_chat_allowlist_admits_group_members() -> None:
    server = FakeTelegramServer(TOKEN)
    store = MemoryOffsetStore()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            server.push_message("team", chat_id=-5, user_id=1234, chat_type="group")
            settings = _settings(
                port, allow_user_ids=(), allow_chat_ids=("-5",), require_mention_in_groups=False
            )
            got = await _run(server, settings, store, 1)
            assert got[0].sender_id == "tg:1234"
            nursery.cancel_scope.cancel()


async def test_send_splits_at_limit_and_retries_429() -> None:
    server = FakeTelegramServer(TOKEN)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            adapter = TelegramAdapter(_settings(port), offsets=MemoryOffsetStore())
            server.fail_next(
                "sendMessage",
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests",
                    "parameters": {"retry_after": 0},
                },
            )
            text = ("word " * 2000).strip()  # 9999 chars
            sent = await adapter.send("tg:42", text)
            await adapter.aclose()
            assert len(sent.message_ids) == 3
            assert all(len(r.text) <= 4096 for r in server.sent)
            assert " ".join(r.text for r in server.sent) == text
            assert {r.chat_id for r in server.sent} == {42}
            nursery.cancel_scope.cancel()


async def test_bad_token_raises_not_linked() -> None:
    server = FakeTelegramServer(TOKEN)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            adapter = TelegramAdapter(_settings(port, bot_token="999:WRONG"), offsets=MemoryOffsetStore())

            async def handler(msg: InboundMessage) -> None:
                raise AssertionError("no message expected")

            try:
                with pytest.raises(ChannelNotLinked) as info:
                    await adapter.run(handler, max_messages=1)
                assert info.value.code == "NOT_LINKED"
            finally:
                await adapter.aclose()
            nursery.cancel_scope.cancel()


async def test_non_retryable_refusal_is_final_and_acknowledged() -> None:
    """A blocked message (DefenderBlocked: FORBIDDEN, not retryable) must not come back forever."""
    from appliance.errors import DefenderBlocked

    server = FakeTelegramServer(TOKEN)
    store = MemoryOffsetStore()
    calls: list[str] = []

    async def handler(msg: InboundMessage) -> None:
        calls.append(msg.text)
        if msg.text == "evil":
            raise DefenderBlocked("blocked")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            server.push_message("evil")
            last = server.push_message("fine")
            adapter = TelegramAdapter(_settings(port), offsets=store)
            assert await adapter.run(handler, max_messages=1) == 1
            await adapter.aclose()
            assert calls == ["evil", "fine"]
            assert store.offsets["telegram:123"] == last + 1
            nursery.cancel_scope.cancel()
