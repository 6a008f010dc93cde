"""The real ``openclaw`` CLI (2026.9.6) against the subscription methods, and as one of several clients.

The gateway runs in this process (real store, agent runtime and sockets on 127.0.0.1) so the test can
look at the subscription registry after the CLI has gone. ``openclaw gateway call`` opens a connection,
makes one call and closes, so what it proves is the wire shape as the CLI validates it and the
clean-up on disconnect; the live stream is checked with a Python client subscribed while the CLI
writes into the session with ``chat.send``, and with the real TUI (on a pseudo-terminal) drawing the
reply to a message another client sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import signal
import struct
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from appliance.agent import AgentRuntime
from appliance.config.settings import GatewaySettings, Settings
from appliance.gateway.client import GatewayClient, open_gateway_client
from appliance.gateway.methods import chat
from appliance.gateway.server import GatewayServer
from appliance.gateway.state import GatewayState
from appliance.gateway.table import build_method_table
from appliance.store import open_database

pytestmark = [pytest.mark.integration, pytest.mark.openclaw]

TOKEN = "openclaw-subscribe-token-0123456789"
KEY = "agent:main:main"


@asynccontextmanager
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[GatewayServer, str]]:
    settings = Settings(gateway=GatewaySettings(port=0, token=TOKEN))
    db = open_database(tmp_path / "gateway.db")
    state = GatewayState(settings=settings, db=db)
    server = GatewayServer(state, build_method_table())
    try:
        async with trio.open_nursery() as nursery:
            runtime = AgentRuntime.from_settings(settings, db, wall_ms=state.wall_ms)
            runtime.start(nursery)
            chat.attach_runtime(state, runtime)
            port = await nursery.start(server.serve)
            yield server, f"ws://127.0.0.1:{port}"
            nursery.cancel_scope.cancel()
    finally:
        db.close()


async def cli_call(cli: Any, url: str, method: str, params: Any = None) -> Any:
    """``openclaw gateway call`` in a worker thread (the gateway keeps serving in this one)."""
    return await trio.to_thread.run_sync(lambda: cli.call(method, url=url, token=TOKEN, params=params))


async def no_connections(server: GatewayServer) -> None:
    while server.state.broadcasters:  # noqa: ASYNC110 -- server state with no event to wait on
        await trio.sleep(0.02)


async def test_the_cli_calls_the_subscription_methods(openclaw_cli: Any, tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with gateway(tmp_path) as (server, url):
            registry = server.state.fanout.registry

            res = await cli_call(openclaw_cli, url, "sessions.messages.subscribe", {"key": "main"})
            assert res.rc == 0, res.describe()
            assert res.json == {"subscribed": True, "key": KEY}
            await no_connections(server)
            assert registry.subscription_count() == 0  # the CLI closed: its subscription went with it

            res = await cli_call(openclaw_cli, url, "sessions.subscribe", {})
            assert res.rc == 0, res.describe()
            assert res.json == {"subscribed": True}

            res = await cli_call(openclaw_cli, url, "sessions.subscribe", {"limit": 5})
            assert res.rc == 0, res.describe()
            assert res.json["subscribed"] is True
            assert res.json["list"]["sessions"] == []
            assert res.json["list"]["limitApplied"] == 5

            res = await cli_call(openclaw_cli, url, "sessions.messages.unsubscribe", {"key": KEY})
            assert res.rc == 0, res.describe()
            assert res.json == {"subscribed": False, "key": KEY}

            res = await cli_call(
                openclaw_cli, url, "sessions.messages.subscribe", {"key": KEY, "includeApprovals": True}
            )
            assert res.rc != 0
            assert res.error is not None
            assert res.error["code"] == "INVALID_REQUEST"
            assert "includeApprovals requires a paired device" in res.error["message"]

            await no_connections(server)
            assert registry.subscription_count() == 0


async def _next_event(client: GatewayClient, event: str, pred: Any = None) -> dict[str, Any]:
    async for frame in client.event_stream:
        if frame["event"] == event and (pred is None or pred(frame["payload"])):
            return frame
    raise AssertionError("connection closed")


async def test_a_subscriber_sees_the_cli_chat(openclaw_cli: Any, tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with (
            gateway(tmp_path) as (_, url),
            open_gateway_client(url, TOKEN, scopes=["operator.read"]) as b,
        ):
            assert await b.call("sessions.messages.subscribe", {"key": KEY}) == {
                "subscribed": True,
                "key": KEY,
            }
            params = {"sessionKey": KEY, "message": "/tool time_now", "idempotencyKey": "cli-run-1"}
            res = await cli_call(openclaw_cli, url, "chat.send", params)
            assert res.rc == 0, res.describe()
            assert res.json == {"runId": "cli-run-1", "status": "started"}

            user = await _next_event(b, "session.message")
            assert user["payload"]["message"]["role"] == "user"
            assert user["payload"]["message"]["content"] == "/tool time_now"
            final = await _next_event(b, "chat", lambda p: p["state"] in ("final", "error"))
            assert final["payload"]["runId"] == "cli-run-1"
            assert final["payload"]["sessionKey"] == KEY
            assert final["payload"]["state"] == "final"
            seqs = [f["seq"] for f in b.events]
            assert seqs == list(range(1, len(seqs) + 1))


@asynccontextmanager
async def tui(cli: Any, url: str) -> AsyncIterator[bytearray]:
    """``openclaw tui`` on a pseudo-terminal (100x30); yields everything it has drawn so far."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**cli.env(), "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    argv = [str(cli.executable), "tui", "--url", url, "--token", TOKEN, "--session", "main"]
    proc = await trio.lowlevel.open_process(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cli.workdir, start_new_session=True
    )
    os.close(slave)
    screen = bytearray()

    async def drain() -> None:
        stream = trio.lowlevel.FdStream(master)  # owns (and closes) the master side
        async with stream:
            with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                while data := await stream.receive_some(65_536):  # EIO once the TUI is gone
                    screen.extend(data)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            yield screen
            nursery.cancel_scope.cancel()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # node and anything it started
        with trio.CancelScope(shield=True):
            await proc.wait()


def _text(screen: bytearray) -> str:
    return re.sub(
        r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)", "", screen.decode(errors="replace")
    )


async def test_the_tui_shows_a_reply_to_another_clients_message(openclaw_cli: Any, tmp_path: Path) -> None:
    """The 2026.9.6 TUI declares no session-scoped-events cap and calls sessions.subscribe: it is sent
    the runs of every session, and draws a reply to a message it did not send."""
    with trio.fail_after(120):
        async with gateway(tmp_path) as (server, url), tui(openclaw_cli, url) as screen:
            registry = server.state.fanout.registry
            while not registry.session_subscribers():  # noqa: ASYNC110 -- server state with no event to wait on
                await trio.sleep(0.1)  # the TUI has connected and subscribed
            async with open_gateway_client(url, TOKEN, scopes=["operator.write"]) as a:
                params = {"sessionKey": KEY, "message": "/tool time_now", "idempotencyKey": "other-1"}
                await a.call("chat.send", params)
                await _next_event(a, "chat", lambda p: p["state"] == "final")
            while "epoch ms" not in _text(screen):  # noqa: ASYNC110 -- the TUI's screen, polled
                await trio.sleep(0.1)
            assert "/tool time_now" in _text(screen)
