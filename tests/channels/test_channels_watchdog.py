"""The liveness watchdog on an autojump clock: stalls are detected at the exact virtual time."""

from __future__ import annotations

import itertools

import pytest
import trio
import trio.testing

from appliance.channels.telegram import ChannelNotLinked
from appliance.channels.watchdog import Heartbeat, supervise_channel
from appliance.errors import Unavailable


async def test_stalled_channel_is_cancelled_and_restarted(autojump_clock: trio.testing.MockClock) -> None:
    heartbeat = Heartbeat()
    starts: list[float] = []

    async def run() -> int:
        starts.append(trio.current_time())
        if len(starts) == 3:
            heartbeat.beat()
            return 7  # bounded run finished
        for _ in range(3):
            await trio.sleep(5)
            heartbeat.beat()
        await trio.sleep_forever()  # the link silently died
        raise AssertionError

    with trio.fail_after(1000):
        t0 = trio.current_time()
        result = await supervise_channel(
            "fake", run, heartbeat, stall_after_s=30, restart_base_s=2, rand=lambda: 0.0
        )
    assert result == 7
    # 3 beats 5 s apart, silent for 30 s -> stalled at 45 s; restart after 2 s (backoff reset: it had beaten)
    assert [round(s - t0, 6) for s in starts] == [0, 47, 94]


async def test_retryable_failures_back_off_and_fatal_ones_propagate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    heartbeat = Heartbeat()
    starts: list[float] = []

    async def flaky() -> int:
        starts.append(trio.current_time())
        raise Unavailable("network down")

    with trio.fail_after(1000), pytest.raises(Unavailable):
        await supervise_channel(
            "flaky", flaky, heartbeat, stall_after_s=30, restart_base_s=1, rand=lambda: 0.0, max_restarts=3
        )
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(starts)]
    assert gaps == [1, 2, 4]  # never beat, so the backoff keeps growing

    async def fatal() -> int:
        raise ChannelNotLinked("bad token")

    with trio.fail_after(10), pytest.raises(ChannelNotLinked):
        await supervise_channel("fatal", fatal, Heartbeat(), stall_after_s=30)


async def test_watchdog_restarts_a_stalled_telegram_poll_over_real_sockets() -> None:
    """getUpdates stops answering (the link is silently dead): the watchdog cancels the poll and the
    restarted adapter, with the same offset store, carries on."""
    from appliance.channels.base import InboundMessage
    from appliance.channels.offsets import MemoryOffsetStore
    from appliance.channels.settings import TelegramSettings
    from appliance.channels.telegram import TelegramAdapter
    from appliance.testing.telegram_server import FakeTelegramServer

    server = FakeTelegramServer("123:TEST")
    server.hang_get_updates = True
    heartbeat = Heartbeat()
    got: list[str] = []

    async def handler(msg: InboundMessage) -> None:
        got.append(msg.text)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            settings = TelegramSettings(
                bot_token="123:TEST", api_base=f"http://127.0.0.1:{port}", allow_all=True, poll_timeout_s=0
            )
            adapter = TelegramAdapter(settings, offsets=MemoryOffsetStore(), on_alive=heartbeat.beat)
            server.push_message("after the stall")
            restarts = 0

            async def run() -> int:
                nonlocal restarts
                restarts += 1
                if restarts == 2:
                    server.hang_get_updates = False  # the link came back
                return await adapter.run(handler, max_messages=1)

            assert (
                await supervise_channel("telegram", run, heartbeat, stall_after_s=0.3, restart_base_s=0.01)
                == 1
            )
            await adapter.aclose()
            assert got == ["after the stall"]
            assert restarts == 2
            nursery.cancel_scope.cancel()
