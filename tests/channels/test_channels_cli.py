"""``appliance channel ...`` as a real subprocess against the loopback servers (bounded runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import trio

from appliance.channels.cli import main
from appliance.testing.telegram_server import FakeTelegramServer
from appliance.testing.whatsapp_bridge import FakeWhatsAppBridge


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance.channels.cli", "channel", *args]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(extra, APPLIANCE_LOG_FORMAT="json")
    return env


async def test_telegram_echo_bounded_run() -> None:
    server = FakeTelegramServer("123:TEST")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve)
            server.push_message("ping one")
            server.push_message("ping two")
            proc = await trio.run_process(
                _cli(
                    "telegram",
                    "--api-base",
                    f"http://127.0.0.1:{port}",
                    "--allow-user",
                    "7",
                    "--max-messages",
                    "2",
                    "--poll-timeout",
                    "1",
                ),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=_env(APPLIANCE_TELEGRAM_BOT_TOKEN="123:TEST"),
            )
            assert proc.returncode == 0, proc.stderr.decode()
            assert json.loads(proc.stdout) == {"accepted": 2}
            assert [s.text for s in server.sent] == ["echo: ping one", "echo: ping two"]
            assert b"123:TEST" not in proc.stderr  # the token never reaches a log line
            nursery.cancel_scope.cancel()


async def test_whatsapp_echo_bounded_run() -> None:
    bridge = FakeWhatsAppBridge("tok")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(bridge.serve)
            bridge.push_message("hello bridge")
            proc = await trio.run_process(
                _cli("whatsapp", "--url", f"ws://127.0.0.1:{port}/", "--allow-all", "--max-messages", "1"),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env=_env(APPLIANCE_WHATSAPP_BRIDGE_TOKEN="tok"),
            )
            assert proc.returncode == 0, proc.stderr.decode()
            assert [s.text for s in bridge.sent] == ["echo: hello bridge"]
            nursery.cancel_scope.cancel()


def test_missing_secret_is_config_error(capsys: object, monkeypatch: object) -> None:
    import pytest

    mp = monkeypatch
    assert isinstance(mp, pytest.MonkeyPatch)
    mp.delenv("APPLIANCE_TELEGRAM_BOT_TOKEN", raising=False)
    assert main(["channel", "telegram", "--max-messages", "1"]) == 78


def test_list_channels(capsys: object) -> None:
    import pytest

    assert isinstance(capsys, pytest.CaptureFixture)
    assert main(["channel", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["telegram"]["implemented"]
    assert not rows["slack"]["implemented"]
    assert rows["discord"]["max_message_chars"] == 2000
    assert subprocess.run(_cli("list"), check=False, capture_output=True).returncode == 0
