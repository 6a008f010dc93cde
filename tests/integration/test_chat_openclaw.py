"""The real ``openclaw`` CLI sends chat messages to our ``appliance serve`` and gets the replies.

Frames are captured with ``tests/tools/ws_proxy.py`` between the CLI and the gateway, because
``openclaw gateway call --json`` prints only the final payload: the test checks the two ``res`` frames of
``agent --expect-final`` (``accepted`` then the final one, same id) with ``agent``/``chat`` events between.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.testing.openai_server import FakeModelServer, ModelReply
from appliance.testing.process import ServeProcess, free_port, start_serve

pytestmark = [pytest.mark.integration, pytest.mark.openclaw]

TOKEN = "openclaw-chat-token-0123456789"
PROXY = Path(__file__).resolve().parents[1] / "tools" / "ws_proxy.py"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    serve = start_serve(tmp_path_factory.mktemp("gw") / "data", token=TOKEN)
    yield serve
    assert serve.terminate() == 0, serve.log_text()
    assert "Traceback" not in serve.log_text()


def _wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} never opened")


@pytest.fixture
def proxy(gateway: ServeProcess, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "frames.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(PROXY),
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            gateway.url + "/",
            "--log",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port)
        yield f"ws://127.0.0.1:{port}", log
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _frames(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if "frame" in record and isinstance(record["frame"], dict):
            out.append({"dir": record["dir"], **record["frame"]})
    return out


def test_agent_expect_final_two_responses_with_events_between(
    openclaw_cli: Any, proxy: tuple[str, Path]
) -> None:
    url, log = proxy
    params = {"message": "/tool time_now", "sessionKey": "agent:main:main", "idempotencyKey": "k1"}
    res = openclaw_cli.call("agent", url=url, token=TOKEN, params=params, expect_final=True)
    assert res.rc == 0, res.describe()
    assert res.json["runId"] == "k1"
    assert res.json["status"] == "ok"
    assert "Z (epoch ms " in res.json["summary"]
    frames = _frames(log)
    request = next(f for f in frames if f["dir"] == "C->S" and f.get("method") == "agent")
    replies = [i for i, f in enumerate(frames) if f.get("type") == "res" and f.get("id") == request["id"]]
    assert len(replies) == 2
    first, final = frames[replies[0]], frames[replies[1]]
    assert first["ok"] is True
    assert first["payload"]["status"] == "accepted"
    assert first["payload"]["runId"] == "k1"
    assert final["ok"] is True
    assert final["payload"]["status"] == "ok"
    between = [f for f in frames[replies[0] + 1 : replies[1]] if f.get("type") == "event"]
    names = [f["event"] for f in between]
    assert "agent" in names
    assert "chat" in names
    chat_states = [f["payload"]["state"] for f in between if f["event"] == "chat"]
    assert chat_states[-1] == "final"
    seqs = [f["seq"] for f in between]
    assert seqs == sorted(seqs)


def test_chat_send_then_history(openclaw_cli: Any, gateway: ServeProcess) -> None:
    params = {"sessionKey": "agent:main:cli-chat", "message": "/tool model_info", "idempotencyKey": "chat-1"}
    sent = openclaw_cli.call("chat.send", url=gateway.url, token=TOKEN, params=params)
    assert sent.rc == 0, sent.describe()
    assert sent.json == {"runId": "chat-1", "status": "started"}
    deadline = time.monotonic() + 20
    while True:
        hist = openclaw_cli.call(
            "chat.history", url=gateway.url, token=TOKEN, params={"sessionKey": "agent:main:cli-chat"}
        )
        assert hist.rc == 0, hist.describe()
        if len(hist.json["messages"]) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    messages = hist.json["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "/tool model_info"
    assert "no model configured" in messages[1]["content"][0]["text"]
    again = openclaw_cli.call("chat.send", url=gateway.url, token=TOKEN, params=params)
    assert again.json == sent.json


class _ModelThread:
    """The loopback model server in its own thread (the test itself drives subprocesses)."""

    def __init__(self, reply: ModelReply) -> None:
        self.server = FakeModelServer(default=reply)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=lambda: trio.run(self._main), daemon=True)

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                await nursery.start(self.server.serve)
                self._ready.set()

    def __enter__(self) -> FakeModelServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._scope is not None:
            self._token.run_sync_soon(self._scope.cancel)
        self._thread.join(10)


def test_kill_9_mid_turn_is_reported_after_restart(openclaw_cli: Any, tmp_path: Path) -> None:
    with _ModelThread(ModelReply(delay_s=60)) as model:
        env = {"APPLIANCE_AGENT_PROVIDER_BASE_URL": model.base_url, "APPLIANCE_AGENT_MODEL": "m1"}
        data = tmp_path / "data"
        serve = start_serve(data, token=TOKEN, env=env)
        try:
            params = {
                "sessionKey": "agent:main:crash",
                "message": "tell me a story",
                "idempotencyKey": "crash-1",
            }
            sent = openclaw_cli.call("chat.send", url=serve.url, token=TOKEN, params=params)
            assert sent.rc == 0, sent.describe()
            deadline = time.monotonic() + 20
            while not model.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert model.requests, serve.log_text()
        finally:
            serve.kill()
        restarted = start_serve(data, token=TOKEN, port=serve.port, env=env)
        try:
            hist = openclaw_cli.call(
                "chat.history", url=restarted.url, token=TOKEN, params={"sessionKey": "agent:main:crash"}
            )
            assert hist.rc == 0, hist.describe()
            messages = hist.json["messages"]
            assert messages[0]["content"] == "tell me a story"
            assert messages[-1]["role"] == "custom"
            assert messages[-1]["customType"] == "run-failed-before-reply"
            assert "restart" in messages[-1]["content"]
        finally:
            assert restarted.terminate() == 0, restarted.log_text()
