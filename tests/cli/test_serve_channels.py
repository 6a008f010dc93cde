"""``serve`` with a Telegram channel enabled answers a real Bot API peer on loopback (config -> adapter)."""

from __future__ import annotations

from pathlib import Path

import trio

from appliance.testing.process import start_serve
from appliance.testing.telegram_server import FakeTelegramServer


async def test_serve_answers_a_telegram_message(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        bot = FakeTelegramServer(token="123:abc")
        port = await nursery.start(bot.serve)
        env = {
            "APPLIANCE_CHANNELS_TELEGRAM_ENABLED": "true",
            "APPLIANCE_CHANNELS_TELEGRAM_BOT_TOKEN": "123:abc",
            "APPLIANCE_CHANNELS_TELEGRAM_API_BASE": f"http://127.0.0.1:{port}",
            "APPLIANCE_CHANNELS_TELEGRAM_ALLOW_USER_IDS": "4242",
            "APPLIANCE_CHANNELS_TELEGRAM_POLL_TIMEOUT_S": "1",
        }
        serve = await trio.to_thread.run_sync(lambda: start_serve(tmp_path / "data", env=env))
        try:
            bot.push_message("/tool time_now", chat_id=4242, user_id=4242)
            with trio.fail_after(30):
                sent = await bot.wait_sent(1)
            assert "epoch ms" in sent[0].text
            assert str(sent[0].chat_id) == "4242"
        finally:
            rc = await trio.to_thread.run_sync(serve.terminate)
            nursery.cancel_scope.cancel()
        assert rc == 0, serve.log_text()
        assert "Traceback" not in serve.log_text()
