"""Several real WebSocket clients on 127.0.0.1 against a real gateway, store and agent runtime.

"Sees nothing" is checked without waiting for silence: a run's events are queued on every recipient
at the moment they are published, so once client B has the run's last event, a request answered to
client C afterwards comes after anything C would have been sent (one ordered outbox per socket).
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from appliance import log as applog
from appliance.agent import AgentRuntime
from appliance.config.settings import GatewaySettings, Settings
from appliance.gateway.client import GatewayCallError, GatewayClient, open_gateway_client
from appliance.gateway.methods import chat
from appliance.gateway.server import GatewayServer
from appliance.gateway.state import GatewayState
from appliance.gateway.table import build_method_table
from appliance.store import open_database

TOKEN = "subscribe-token-0123456789"
X, Y = "agent:main:x", "agent:main:y"
RUN_EVENTS = ("chat", "agent", "task", "session.message")


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    applog.configure(level="info", stream=buffer, human=False)
    try:
        yield buffer
    finally:
        applog.configure()


@asynccontextmanager
async def running_gateway(tmp_path: Path, **gateway: Any) -> AsyncIterator[tuple[GatewayServer, str]]:
    settings = Settings(
        gateway=GatewaySettings(
            port=0, token=TOKEN, rate_limit_per_s=10_000.0, rate_limit_burst=10_000, **gateway
        )
    )
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


async def next_event(client: GatewayClient, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async for frame in client.event_stream:
        if pred(frame):
            return frame
    raise AssertionError("connection closed")


async def until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (the server acts in its own tasks); the caller's fail_after bounds it."""
    while not condition():  # noqa: ASYNC110 -- server state with no event to wait on
        await trio.sleep(0.01)


def run_done(run_id: str) -> Callable[[dict[str, Any]], bool]:
    """The last event of a turn: its task moves to ``succeeded``."""

    def pred(frame: dict[str, Any]) -> bool:
        task = frame["payload"].get("task") or {}
        return bool(
            frame["event"] == "task" and task.get("runId") == run_id and task.get("status") != "running"
        )

    return pred


def run_frames(client: GatewayClient, run_id: str | None = None) -> list[dict[str, Any]]:
    return [
        f
        for f in client.events
        if f["event"] in RUN_EVENTS
        and (run_id is None or f["payload"].get("runId", f["payload"].get("task", {}).get("runId")) == run_id)
    ]


async def test_a_subscriber_sees_another_clients_chat_with_its_own_seq(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            running_gateway(tmp_path) as (server, url),
            open_gateway_client(url, TOKEN) as a,
            open_gateway_client(url, TOKEN) as b,
            open_gateway_client(url, TOKEN) as c,
            open_gateway_client(url, TOKEN) as d,
        ):
            assert await b.call("sessions.messages.subscribe", {"key": X}) == {"subscribed": True, "key": X}
            assert await c.call("sessions.messages.subscribe", {"key": "y"}) == {"subscribed": True, "key": Y}
            # an event only B gets: from here B's counter is one ahead of A's
            server.state.fanout.publish_session_message(X, {"role": "user", "content": "earlier"})
            assert (await next_event(b, lambda f: True))["seq"] == 1

            res = await a.call("chat.send", {"sessionKey": X, "message": "hello", "idempotencyKey": "run-1"})
            assert res == {"runId": "run-1", "status": "started"}
            await next_event(b, run_done("run-1"))
            await next_event(a, run_done("run-1"))

            seen_by_b = run_frames(b)[1:]
            names = [f["event"] for f in seen_by_b]
            assert names == [
                "task",  # running
                "session.message",  # the user line, stored
                "agent",  # lifecycle start
                "chat",  # delta
                "session.message",  # the reply, stored
                "agent",  # lifecycle end
                "chat",  # final
                "task",
            ]
            assert [f["seq"] for f in b.events] == list(
                range(1, len(b.events) + 1)
            )  # B's own counter, no gap
            assert [f["seq"] for f in seen_by_b] == list(range(2, len(seen_by_b) + 2))
            user, reply = (f["payload"] for f in seen_by_b if f["event"] == "session.message")
            assert (user["sessionKey"], user["message"]["role"], user["message"]["content"]) == (
                X,
                "user",
                "hello",
            )
            assert (reply["message"]["role"], reply["messageSeq"], reply["runId"]) == (
                "assistant",
                2,
                "run-1",
            )
            final = next(
                f["payload"] for f in seen_by_b if f["event"] == "chat" and f["payload"]["state"] == "final"
            )
            assert final["sessionKey"] == X

            # A (the origin) gets the same run events, numbered by A's own counter
            seen_by_a = run_frames(a)
            assert [f["event"] for f in seen_by_a] == [n for n in names if n != "session.message"]
            assert [f["seq"] for f in a.events] == list(range(1, len(seen_by_a) + 1))
            payloads_a = [f["payload"] for f in seen_by_a]
            assert payloads_a == [f["payload"] for f in seen_by_b if f["event"] != "session.message"]

            # another session's subscriber and an unsubscribed client: nothing (each asks after the run)
            for other in (c, d):
                assert await other.call("last-heartbeat") is None
                assert run_frames(other) == []

            # B unsubscribes: A's next run reaches A only
            assert await b.call("sessions.messages.unsubscribe", {"key": X}) == {
                "subscribed": False,
                "key": X,
            }
            await a.call("chat.send", {"sessionKey": X, "message": "again", "idempotencyKey": "run-2"})
            await next_event(a, run_done("run-2"))
            assert await b.call("last-heartbeat") is None
            assert run_frames(b, "run-2") == []
            assert server.state.fanout.registry.keys_of(b.hello["server"]["connId"]) == frozenset()


async def test_sessions_subscribe_gets_sessions_changed_for_another_clients_changes(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            running_gateway(tmp_path) as (_, url),
            open_gateway_client(url, TOKEN) as a,
            open_gateway_client(url, TOKEN) as watcher,
            open_gateway_client(url, TOKEN) as bystander,
        ):
            assert await watcher.call("sessions.subscribe", {}) == {"subscribed": True}
            await a.call("sessions.patch", {"key": X, "label": "work"})
            changed = await next_event(watcher, lambda f: f["event"] == "sessions.changed")
            assert changed["payload"]["sessionKey"] == X
            assert changed["payload"]["reason"] == "patch"
            assert changed["payload"]["label"] == "work"
            await a.call("chat.send", {"sessionKey": X, "message": "hi", "idempotencyKey": "run-3"})
            phases: list[str] = []
            while len(phases) < 2:
                frame = await next_event(watcher, lambda f: f["event"] == "sessions.changed")
                phases.append(frame["payload"]["phase"])
            assert phases == ["start", "end"]
            assert await bystander.call("last-heartbeat") is None
            assert [f for f in bystander.events if f["event"] == "sessions.changed"] == []


@asynccontextmanager
async def stuck_client(url: str) -> AsyncIterator[WebSocketConnection]:
    """A client subscribed to X that then stops reading (tiny receive buffer, one-message queue)."""
    stream = await trio.open_tcp_stream("127.0.0.1", int(url.rsplit(":", 1)[1]))
    try:
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(nursery, stream, "127.0.0.1", "/", message_queue_size=1)
            yield await _subscribe_raw(ws)
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(stream)


async def _subscribe_raw(ws: WebSocketConnection) -> WebSocketConnection:
    challenge = json.loads(await ws.get_message())
    assert challenge["event"] == "connect.challenge"
    params = {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {"id": "test", "version": "1", "platform": "linux", "mode": "test"},
        "role": "operator",
        "scopes": ["operator.read"],
        "auth": {"token": TOKEN},
    }
    await ws.send_message(json.dumps({"type": "req", "id": "1", "method": "connect", "params": params}))
    hello = json.loads(await ws.get_message())
    assert hello["ok"] is True, hello
    ws.hello = hello["payload"]  # type: ignore[attr-defined]
    sub = {"type": "req", "id": "2", "method": "sessions.messages.subscribe", "params": {"key": X}}
    await ws.send_message(json.dumps(sub))
    while (res := json.loads(await ws.get_message())).get("id") != "2":
        pass  # its own presence event
    assert res["payload"] == {"subscribed": True, "key": X}
    return ws


async def test_a_client_that_stops_reading_is_dropped_and_the_others_go_on(
    tmp_path: Path, log_lines: io.StringIO
) -> None:
    with trio.fail_after(60):
        async with (
            running_gateway(tmp_path, max_buffered_bytes=262_144) as (server, url),
            open_gateway_client(url, TOKEN) as b,
            stuck_client(url) as stuck,
        ):
            state = server.state
            stuck_id = stuck.hello["server"]["connId"]  # type: ignore[attr-defined]
            await b.call("sessions.messages.subscribe", {"key": X})
            assert state.fanout.registry.message_subscribers(X) == {stuck_id, b.hello["server"]["connId"]}

            body = "x" * 65_536
            published = 0
            while "slow_consumer" not in log_lines.getvalue():
                assert published < 1_000, "the stuck client was never dropped"
                published += 1
                n = state.fanout.publish_session_message(
                    X, {"role": "assistant", "content": body}, message_seq=published
                )
                assert n >= 1
                got = await next_event(b, lambda f: f["event"] == "session.message")
                assert got["payload"]["messageSeq"] == published  # B is never held up or skipped
            await until(lambda: stuck_id not in state.broadcasters)  # closing takes up to CLOSE_TIMEOUT_S

            # B goes on, with no gap in its own seq
            state.fanout.publish_session_message(
                X, {"role": "assistant", "content": "after"}, message_seq=published + 1
            )
            after = await next_event(b, lambda f: f["event"] == "session.message")
            assert after["payload"]["message"]["content"] == "after"
            seqs = [f["seq"] for f in b.events]  # session.message, and presence as the stuck client left
            assert seqs == list(range(1, len(seqs) + 1))
            assert len([f for f in b.events if f["event"] == "session.message"]) == published + 1

            # the stuck client was logged, closed 1008 and unsubscribed
            lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
            slow = [line for line in lines if line["event"] == "slow_consumer"]
            assert len(slow) == 1
            assert (slow[0]["conn_id"], slow[0]["close_code"]) == (stuck_id, 1008)
            assert slow[0]["buffered_bytes"] > slow[0]["limit_bytes"] == 262_144
            closed = [
                line
                for line in lines
                if line["event"] == "connection_closed" and line.get("conn_id") == stuck_id
            ]
            assert closed
            assert closed[0]["code"] == 1008
            assert state.fanout.registry.keys_of(stuck_id) == frozenset()
            assert state.fanout.registry.message_subscribers(X) == {b.hello["server"]["connId"]}


async def test_disconnect_cleans_up_every_subscription(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_gateway(tmp_path) as (server, url):
            registry = server.state.fanout.registry
            async with open_gateway_client(url, TOKEN) as b:
                conn_id = b.hello["server"]["connId"]
                await b.call("sessions.subscribe", {})
                await b.call("sessions.messages.subscribe", {"key": X})
                await b.call("sessions.messages.subscribe", {"key": Y})
                assert registry.subscription_count() == 3
            await until(lambda: conn_id not in server.state.broadcasters)
            assert registry.subscription_count() == 0
            assert registry.legacy_connections() == frozenset()
            # a run in that session now publishes to nobody (and nothing fails)
            async with open_gateway_client(url, TOKEN) as a:
                await a.call("chat.send", {"sessionKey": X, "message": "hi", "idempotencyKey": "run-9"})
                await next_event(a, run_done("run-9"))


async def test_session_events_need_operator_read(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            running_gateway(tmp_path) as (server, url),
            open_gateway_client(url, TOKEN, scopes=["operator.write"]) as writer,
            open_gateway_client(url, TOKEN, scopes=["operator.pairing"]) as pairing,
        ):
            # write implies read: a writer may subscribe; a pairing-only operator may not
            assert await writer.call("sessions.messages.subscribe", {"key": X}) == {
                "subscribed": True,
                "key": X,
            }
            with pytest.raises(GatewayCallError) as info:
                await pairing.call("sessions.messages.subscribe", {"key": X})
            assert info.value.wire_code == "FORBIDDEN"
            # even when runs are broadcast to every legacy client, the scope guard keeps them from it
            server.state.fanout.legacy_broadcast = True
            await writer.call("chat.send", {"sessionKey": X, "message": "hi", "idempotencyKey": "run-s"})
            await next_event(writer, run_done("run-s"))
            with pytest.raises(GatewayCallError):  # any answer orders after the run's events
                await pairing.call("last-heartbeat")
            assert run_frames(pairing) == []
