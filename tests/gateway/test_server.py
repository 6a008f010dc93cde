"""The trio shell: real loopback sockets (WebSocket + the real frames), and memory streams with an
autojump clock for timers (ticks, handshake timeout, slow consumers)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url, wrap_client_stream

from appliance.config.settings import GatewaySettings, Settings
from appliance.errors import ValidationFailed
from appliance.gateway.dispatch import MethodContext, MethodTable, Scope
from appliance.gateway.methods import system
from appliance.gateway.server import GatewayServer, bind_hosts, serve_gateway
from appliance.gateway.state import GatewayState

TOKEN = "testtoken123"


def connect_frame(req_id: str = "1:c1cb5d4b", token: str | None = TOKEN, **overrides: Any) -> str:
    params: dict[str, Any] = {
        "minProtocol": 4,
        "maxProtocol": 4,
        "client": {
            "id": "cli",
            "version": "2026.9.6",
            "platform": "linux",
            "deviceFamily": "Linux",
            "mode": "cli",
        },
        "caps": [],
        "role": "operator",
        "scopes": ["operator.read"],
    }
    if token is not None:
        params["auth"] = {"token": token}
    params.update(overrides)
    return json.dumps({"type": "req", "id": req_id, "method": "connect", "params": params})


def req(req_id: str, method: str, params: Any = None) -> str:
    frame: dict[str, Any] = {"type": "req", "id": req_id, "method": method}
    if params is not None:
        frame["params"] = params
    return json.dumps(frame)


def make_table(extra: MethodTable | None = None) -> MethodTable:
    table = MethodTable()
    table.merge(system.table)
    if extra is not None:
        table.merge(extra)
    return table


def make_state(**gateway: Any) -> GatewayState:
    base: dict[str, Any] = {
        "port": 0,
        "token": TOKEN,
        "rate_limit_per_s": 10_000.0,
        "rate_limit_burst": 10_000,
    }
    base.update(gateway)
    return GatewayState(settings=Settings(gateway=GatewaySettings(**base)), db=None)  # type: ignore[arg-type]


@asynccontextmanager
async def running_gateway(
    extra: MethodTable | None = None, *, max_in_flight: int = 32, **gateway: Any
) -> AsyncIterator[tuple[GatewayServer, int]]:
    server = GatewayServer(make_state(**gateway), make_table(extra), max_in_flight=max_in_flight)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.serve)
        try:
            yield server, port
        finally:
            nursery.cancel_scope.cancel()


async def recv(ws: WebSocketConnection) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await ws.get_message())
    return frame


async def recv_until(ws: WebSocketConnection, pred: Any) -> dict[str, Any]:
    while True:
        frame = await recv(ws)
        if pred(frame):
            return frame


async def _read_forever(ws: WebSocketConnection) -> None:
    while True:
        await ws.get_message()


async def closed_code(ws: WebSocketConnection) -> tuple[int, str | None]:
    """Read until the server closes; return its close code and reason."""
    with pytest.raises(ConnectionClosed) as info:
        await _read_forever(ws)
    reason = info.value.reason
    assert reason is not None
    # trio-websocket's client never closes its socket when the server closed first (its aclose() returns
    # early once a close reason is set); close it here so the test leaks no socket
    await trio.aclose_forcefully(ws._stream)
    return reason.code, reason.reason


async def handshake(ws: WebSocketConnection, **overrides: Any) -> dict[str, Any]:
    challenge = await recv(ws)
    assert challenge["event"] == "connect.challenge"
    await ws.send_message(connect_frame(**overrides))
    hello = await recv(ws)
    assert hello["ok"] is True, hello
    payload: dict[str, Any] = hello["payload"]
    return payload


# ------------------------------------------------------------------------------------------------ happy path


async def test_cli_trace_challenge_connect_health_unknown_method() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (server, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            challenge = await recv(ws)
            assert challenge["type"] == "event"
            assert challenge["event"] == "connect.challenge"
            assert set(challenge) == {"type", "event", "payload"}
            assert isinstance(challenge["payload"]["nonce"], str)
            assert len(challenge["payload"]["nonce"]) >= 16
            assert isinstance(challenge["payload"]["ts"], int)

            await ws.send_message(connect_frame())
            res = await recv(ws)
            assert res["type"] == "res"
            assert res["id"] == "1:c1cb5d4b"
            assert res["ok"] is True
            hello = res["payload"]
            assert hello["type"] == "hello-ok"
            assert hello["protocol"] == 4
            assert hello["server"]["version"] == server.state.version
            assert hello["server"]["connId"]
            assert "health" in hello["features"]["methods"]
            assert "tick" in hello["features"]["events"]
            snap = hello["snapshot"]
            assert {"presence", "health", "stateVersion", "uptimeMs", "sessionDefaults"} <= set(snap)
            assert snap["sessionDefaults"]["mainSessionKey"] == "agent:main:main"
            assert hello["auth"] == {"method": "token", "role": "operator", "scopes": ["operator.read"]}
            policy = hello["policy"]
            assert policy["maxPayload"] == 4_194_304
            assert policy["maxBufferedBytes"] == 8_388_608
            assert policy["tickIntervalMs"] == 30_000

            await ws.send_message(req("2:ef96caac", "health"))  # no params, as `openclaw health` sends it
            event = await recv(ws)
            assert event["type"] == "event"
            assert event["event"] == "health"
            assert event["seq"] == 1
            assert event["stateVersion"]["health"] >= 2
            res = await recv(ws)
            assert res["id"] == "2:ef96caac"
            assert res["ok"] is True
            assert res["payload"]["ok"] is True
            assert event["payload"] == res["payload"]

            await ws.send_message(req("3:x", "no.such.method", {}))
            res = await recv(ws)
            assert res == {
                "type": "res",
                "id": "3:x",
                "ok": False,
                "error": {"code": "INVALID_REQUEST", "message": "unknown method: no.such.method"},
            }


async def test_serve_gateway_reports_the_port_and_binds_loopback_v4_and_v6() -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_gateway, make_state(), make_table())
            assert isinstance(port, int)
            assert port > 0
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.aclose()
            if socket.has_ipv6:
                try:
                    stream = await trio.open_tcp_stream("::1", port)
                except OSError:
                    pass  # no IPv6 loopback on this machine: the server skipped it too
                else:
                    await stream.aclose()
            nursery.cancel_scope.cancel()
    assert bind_hosts("loopback") == ["127.0.0.1", "::1"]
    assert bind_hosts("lan") == ["0.0.0.0"]
    assert bind_hosts("10.1.2.3") == ["10.1.2.3"]


async def test_port_in_use_is_an_unavailable_error() -> None:
    from appliance.errors import Unavailable

    with trio.fail_after(10):
        async with running_gateway() as (_, port):
            second = GatewayServer(make_state(port=port), make_table())
            with pytest.raises(Unavailable, match=r"cannot listen on 127\.0\.0\.1"):
                await second.serve()


async def test_binary_frames_are_accepted_as_utf8_json() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await recv(ws)
            await ws.send_message(connect_frame().encode())
            assert (await recv(ws))["ok"] is True


# ------------------------------------------------------------------------------------------------ rejection


async def test_bad_token_is_answered_then_closed_1008() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await recv(ws)
            await ws.send_message(connect_frame(req_id="1:bad", token="WRONG"))
            res = await recv(ws)
            assert res["id"] == "1:bad"
            assert res["ok"] is False
            assert res["error"]["code"] == "INVALID_REQUEST"
            assert res["error"]["details"]["code"] == "AUTH_TOKEN_MISMATCH"
            assert res["error"]["message"].startswith("unauthorized: gateway token mismatch")
            code, reason = await closed_code(ws)
            assert code == 1008
            assert reason is not None
            assert reason.startswith("unauthorized")


async def test_missing_token_is_answered_then_closed_1008() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await recv(ws)
            await ws.send_message(connect_frame(token=None))
            res = await recv(ws)
            assert res["error"]["details"]["code"] == "AUTH_TOKEN_MISSING"
            assert (await closed_code(ws))[0] == 1008


async def test_requests_before_connect_are_refused_and_closed() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await recv(ws)
            await ws.send_message(req("1:x", "health"))
            res = await recv(ws)
            assert res["error"]["message"] == "invalid handshake: first request must be connect"
            assert (await closed_code(ws))[0] == 1008


async def test_malformed_first_frame_closes_1008() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await recv(ws)
            await ws.send_message("{this is not json")
            assert await closed_code(ws) == (1008, "invalid request frame")


async def test_oversized_frame_before_connect_closes_1009() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await recv(ws)
            await ws.send_message(connect_frame(pad="x" * 70_000))
            assert (await closed_code(ws))[0] == 1009


async def test_after_connect_frames_up_to_max_payload_pass_and_larger_close_1009() -> None:
    with trio.fail_after(10):
        async with (
            running_gateway(max_payload_bytes=200_000) as (_, port),
            open_websocket_url(f"ws://127.0.0.1:{port}/", max_message_size=1 << 22) as ws,
        ):
            await handshake(ws)
            await ws.send_message(req("2:x", "health", {"pad": "x" * 100_000}))
            res = await recv(ws)  # accepted as a frame, refused by health's params check
            assert res["id"] == "2:x"
            assert res["error"]["code"] == "INVALID_REQUEST"
            assert res["error"]["message"].startswith("invalid health params")
            await ws.send_message(req("3:x", "health", {"pad": "x" * 300_000}))
            assert (await closed_code(ws))[0] == 1009


async def test_malformed_frames_after_connect_are_answered_and_the_socket_stays() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (_, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await handshake(ws)
            await ws.send_message("{nope")
            res = await recv(ws)
            assert res["id"] == "invalid"
            assert res["error"]["code"] == "INVALID_REQUEST"
            await ws.send_message(json.dumps({"type": "req", "id": "7", "method": "health", "params": [1]}))
            res = await recv(ws)
            assert res["id"] == "7"
            assert "must be object" in res["error"]["message"]
            await ws.send_message(req("8", "last-heartbeat"))
            assert await recv(ws) == {"type": "res", "id": "8", "ok": True, "payload": None}


async def test_rate_limit_over_the_wire() -> None:
    with trio.fail_after(10):
        async with (
            running_gateway(rate_limit_per_s=1.0, rate_limit_burst=2) as (_, port),
            open_websocket_url(f"ws://127.0.0.1:{port}/") as ws,
        ):
            await handshake(ws)
            for i in range(3):
                await ws.send_message(req(f"r{i}", "last-heartbeat"))
            answers = {}
            for _ in range(3):
                frame = await recv(ws)
                answers[frame["id"]] = frame
            assert answers["r0"]["ok"]
            assert answers["r1"]["ok"]
            error = answers["r2"]["error"]
            assert error["code"] == "UNAVAILABLE"
            assert error["retryable"] is True
            assert 0 < error["retryAfterMs"] <= 1000
            assert error["details"]["code"] == "RATE_LIMITED"


# ------------------------------------------------------------------------------------------------ dispatch


async def recv_until_started(started: list[str]) -> None:
    """Wait until a slow handler has begun (polling: the handler lives in another task)."""
    for _ in range(500):
        if started:
            return
        await trio.sleep(0.01)
    raise AssertionError("handler never started")


def slow_table(release: trio.Event, started: list[str]) -> MethodTable:
    table = MethodTable()

    @table.method("test.slow")
    async def slow(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
        started.append(ctx.req_id)
        await release.wait()
        return {"slow": True}

    @table.method("test.boom")
    async def boom(ctx: MethodContext, params: dict[str, Any]) -> None:
        raise RuntimeError("secret internals")

    @table.method("test.invalid")
    async def invalid(ctx: MethodContext, params: dict[str, Any]) -> None:
        raise ValidationFailed("invalid test.invalid params: at /x: must be string", details={"errors": [1]})

    @table.method("test.events")
    async def events(ctx: MethodContext, params: dict[str, Any]) -> dict[str, Any]:
        assert ctx.ack is not None
        await ctx.ack({"status": "accepted"})
        await ctx.emit("chat", {"state": "delta"})
        return {"status": "ok"}

    @table.method("test.admin", scope=Scope.ADMIN)
    async def admin(ctx: MethodContext, params: dict[str, Any]) -> int:
        return 1

    return table


async def test_a_slow_method_does_not_block_others_on_the_same_socket() -> None:
    release, started = trio.Event(), list[str]()
    with trio.fail_after(10):
        async with (
            running_gateway(slow_table(release, started)) as (_, port),
            open_websocket_url(f"ws://127.0.0.1:{port}/") as ws,
        ):
            await handshake(ws)
            await ws.send_message(req("s", "test.slow"))
            await ws.send_message(req("f", "last-heartbeat"))
            first = await recv(ws)
            assert first["id"] == "f"
            release.set()
            second = await recv(ws)
            assert second == {"type": "res", "id": "s", "ok": True, "payload": {"slow": True}}


async def test_handler_errors_become_error_frames_and_bugs_stay_private() -> None:
    with trio.fail_after(10):
        async with (
            running_gateway(slow_table(trio.Event(), [])) as (_, port),
            open_websocket_url(f"ws://127.0.0.1:{port}/") as ws,
        ):
            await handshake(ws)
            await ws.send_message(req("b", "test.boom"))
            res = await recv(ws)
            assert res["error"] == {"code": "UNAVAILABLE", "message": "internal error", "retryable": True}
            assert "secret" not in json.dumps(res)
            await ws.send_message(req("v", "test.invalid"))
            res = await recv(ws)
            assert res["error"]["code"] == "INVALID_REQUEST"
            assert res["error"]["details"] == {"errors": [1]}
            await ws.send_message(req("a", "test.admin"))
            res = await recv(ws)
            assert res["error"]["code"] == "FORBIDDEN"
            assert res["error"]["details"]["code"] == "MISSING_SCOPE"
            await ws.send_message(req("ok", "last-heartbeat"))
            assert (await recv(ws))["ok"] is True


async def test_ack_and_emit_reach_only_the_calling_connection() -> None:
    with trio.fail_after(10):
        async with (
            running_gateway(slow_table(trio.Event(), [])) as (_, port),
            open_websocket_url(f"ws://127.0.0.1:{port}/") as ws,
        ):
            await handshake(ws)
            await ws.send_message(req("e1", "test.events"))
            ack, event, final = await recv(ws), await recv(ws), await recv(ws)
            assert ack == {"type": "res", "id": "e1", "ok": True, "payload": {"status": "accepted"}}
            assert event["event"] == "chat"
            assert event["seq"] == 1
            assert final == {"type": "res", "id": "e1", "ok": True, "payload": {"status": "ok"}}


async def test_in_flight_limit_makes_the_reader_wait_not_fail() -> None:
    release, started = trio.Event(), list[str]()
    with trio.fail_after(10):
        async with (
            running_gateway(slow_table(release, started), max_in_flight=2) as (_, port),
            open_websocket_url(f"ws://127.0.0.1:{port}/") as ws,
        ):
            await handshake(ws)
            for i in range(3):
                await ws.send_message(req(f"s{i}", "test.slow"))
            await recv_until_started(started)
            await trio.sleep(0.1)
            assert started == ["s0", "s1"]  # the third waits for a slot
            release.set()
            answers = {(await recv(ws))["id"] for _ in range(3)}
            assert answers == {"s0", "s1", "s2"}


async def test_presence_and_scope_guarded_broadcasts() -> None:
    with trio.fail_after(10):
        async with running_gateway() as (server, port):
            url = f"ws://127.0.0.1:{port}/"
            async with open_websocket_url(url) as watcher:
                await handshake(watcher, scopes=["operator.admin"])
                async with open_websocket_url(url) as ui:
                    hello = await handshake(
                        ui,
                        client={"id": "webchat-ui", "version": "1", "platform": "web", "mode": "webchat"},
                        scopes=["operator.pairing"],
                    )
                    assert hello["auth"]["scopes"] == ["operator.pairing"]
                    presence = await recv_until(watcher, lambda f: f.get("event") == "presence")
                    assert [p["mode"] for p in presence["payload"]["presence"]] == ["gateway", "webchat"]
                    assert presence["stateVersion"]["presence"] == 2

                    server.state.broadcast("sessions.changed", {"sessionKey": "agent:main:main"})
                    server.state.broadcast("tick", {"ts": 1})
                    changed = await recv_until(watcher, lambda f: f.get("event") == "sessions.changed")
                    assert changed["payload"] == {"sessionKey": "agent:main:main"}
                    own_presence = await recv(ui)  # its own arrival, then the tick but not sessions.changed
                    assert own_presence["event"] == "presence"
                    assert own_presence["seq"] == 1
                    tick = await recv(ui)
                    assert tick["event"] == "tick"
                    assert tick["seq"] == 2
                gone = await recv_until(watcher, lambda f: f.get("event") == "presence")
                assert [p["mode"] for p in gone["payload"]["presence"]] == ["gateway"]
            assert server.state.broadcasters == {}


# ------------------------------------------------------------------------------------------------ shutdown


async def test_graceful_shutdown_lets_in_flight_finish_then_closes_1012() -> None:
    release, started = trio.Event(), list[str]()
    with trio.fail_after(10):
        async with running_gateway(slow_table(release, started)) as (server, port):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws, trio.open_nursery() as nursery:
                await handshake(ws)
                await ws.send_message(req("s", "test.slow"))
                await recv_until_started(started)
                nursery.start_soon(server.shutdown, "test")
                shutdown = await recv(ws)
                assert shutdown["event"] == "shutdown"
                assert shutdown["payload"] == {"reason": "test", "restartExpectedMs": None}
                await ws.send_message(req("late", "last-heartbeat"))
                late = await recv(ws)
                assert late["error"]["details"]["code"] == "SHUTTING_DOWN"
                release.set()
                done = await recv(ws)
                assert done["id"] == "s"
                assert done["ok"] is True
                assert (await closed_code(ws))[0] == 1012
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.1", port)


async def test_shutdown_grace_expiry_still_closes() -> None:
    with trio.fail_after(10):
        async with (
            running_gateway(slow_table(trio.Event(), []), shutdown_grace_s=0.2) as (server, port),
            open_websocket_url(f"ws://127.0.0.1:{port}/") as ws,
        ):
            await handshake(ws)
            await ws.send_message(req("s", "test.slow"))
            await trio.sleep(0.05)
            await server.shutdown("stop")
            assert (await recv(ws))["event"] == "shutdown"
            assert (await closed_code(ws))[0] == 1012
            await server.shutdown("again")  # idempotent


# ------------------------------------------------------------------------------------------------ timers


@asynccontextmanager
async def memory_client(
    server: GatewayServer, *, lockstep: bool = False, queue: int = 64
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client wired to the server through an in-memory stream (no kernel, autojump-safe)."""
    client_stream, server_stream = (
        trio.testing.lockstep_stream_pair() if lockstep else trio.testing.memory_stream_pair()
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server._handle_tcp, server_stream)
        ws = await wrap_client_stream(
            nursery,
            client_stream,  # type: ignore[arg-type]  # any trio Stream works; the stub names SocketStream
            "127.0.0.1",
            "/",
            message_queue_size=queue,
        )
        try:
            yield ws
        finally:
            nursery.cancel_scope.cancel()


async def test_handshake_timeout_closes_1008(autojump_clock: trio.testing.MockClock) -> None:
    server = GatewayServer(make_state(handshake_timeout_ms=15_000), make_table())
    with trio.fail_after(60):
        async with memory_client(server) as ws:
            await recv(ws)
            start = trio.current_time()
            assert await closed_code(ws) == (1008, "handshake timeout")
            assert 14.9 <= trio.current_time() - start <= 15.5


async def test_ticks_arrive_every_interval_with_seq(autojump_clock: trio.testing.MockClock) -> None:
    server = GatewayServer(make_state(tick_interval_ms=30_000), make_table())
    with trio.fail_after(200):
        async with memory_client(server) as ws, trio.open_nursery() as nursery:
            await handshake(ws)
            nursery.start_soon(server._tick_loop)
            t0 = trio.current_time()
            ticks = [await recv(ws) for _ in range(3)]
            assert [t["event"] for t in ticks] == ["tick"] * 3
            assert [t["seq"] for t in ticks] == [1, 2, 3]
            assert all(isinstance(t["payload"]["ts"], int) for t in ticks)
            assert 89 <= trio.current_time() - t0 <= 91
            nursery.cancel_scope.cancel()


async def test_connected_socket_survives_past_the_handshake_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = GatewayServer(make_state(handshake_timeout_ms=1_000), make_table())
    with trio.fail_after(60):
        async with memory_client(server) as ws:
            await handshake(ws)
            await trio.sleep(5)
            await ws.send_message(req("2", "last-heartbeat"))
            assert (await recv(ws))["ok"] is True


async def test_a_client_that_stops_reading_is_closed_as_a_slow_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = GatewayServer(make_state(max_buffered_bytes=20_000), make_table())
    state = server.state
    with trio.fail_after(60):
        async with memory_client(server, lockstep=True, queue=1) as ws:
            await handshake(ws)
            (conn_id,) = state.broadcasters
            # drop-if-slow events are skipped (seq gap) rather than closing
            for i in range(40):
                state.broadcast("presence", {"pad": "x" * 1000, "i": i}, drop_if_slow=True)
                await trio.lowlevel.checkpoint()
            assert conn_id in state.broadcasters
            # an event that may not be dropped closes the socket
            for i in range(40):
                state.broadcast("tick", {"pad": "x" * 1000, "i": i})
                await trio.lowlevel.checkpoint()
            await trio.sleep(10)
            assert conn_id not in state.broadcasters


# ------------------------------------------------------------------------------------------------ golden

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "integration" / "golden"


def golden(name: str) -> dict[str, Any]:
    path = GOLDEN_DIR / f"{name}.json"
    if not path.exists():
        pytest.skip(f"no golden capture {path.name} yet")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def golden_request(data: dict[str, Any], case: dict[str, Any]) -> dict[str, Any]:
    """The request a golden case sent (recorded, or rebuilt from its method and params)."""
    request: dict[str, Any] = case.get("request") or {
        "type": "req",
        "method": data["method"],
        "params": case.get("params", {}),
    }
    return request


def _names(value: Any) -> set[str] | None:
    """A method/event list from the golden file (full, or trimmed to ``first``); None if unusable."""
    if isinstance(value, list):
        return set(value)
    return None


async def test_hello_ok_has_the_shape_of_the_real_gateways() -> None:
    real = golden("hello-ok")
    real_hello = real["frame"]["payload"]
    connect = real["connect_request"]
    with trio.fail_after(10):
        async with running_gateway() as (_, port), open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            challenge = await recv(ws)
            assert set(challenge) == set(real["challenge"])
            assert {"nonce", "ts"} <= set(real["challenge"]["payload"])
            params = {**connect["params"], "auth": {"token": TOKEN}}
            await ws.send_message(json.dumps({**connect, "params": params}))
            frame = await recv(ws)
    assert list(frame) == list(real["frame"])  # type, id, ok, payload in that order
    ours = frame["payload"]
    for key in ("type", "protocol", "server", "features", "snapshot", "auth", "policy"):
        assert key in ours
        assert key in real_hello
    assert set(ours["server"]) <= set(real_hello["server"])
    assert set(ours["snapshot"]) <= set(real_hello["snapshot"])
    assert set(ours["snapshot"]["sessionDefaults"]) == set(real_hello["snapshot"]["sessionDefaults"])
    assert set(ours["snapshot"]["stateVersion"]) == set(real_hello["snapshot"]["stateVersion"])
    assert set(ours["snapshot"]["presence"][0]) <= set(real_hello["snapshot"]["presence"][0])
    assert set(ours["auth"]) <= set(real_hello["auth"])
    assert ours["auth"]["scopes"] == real_hello["auth"]["scopes"]
    assert set(ours["policy"]) <= set(real_hello["policy"])
    assert set(ours["policy"]["attachments"]) == set(real_hello["policy"]["attachments"])
    features = real_hello["features"]
    real_events = _names(features.get("events_full")) or _names(features.get("events"))
    if real_events is not None:
        assert set(ours["features"]["events"]) <= real_events
    real_methods = _names(features.get("methods_full")) or _names(features.get("methods"))
    if real_methods is not None:
        assert set(ours["features"]["methods"]) <= real_methods


async def call_like_the_cli(port: int, request: dict[str, Any], scopes: list[str], token: str = TOKEN) -> Any:
    """Connect and send one request the way ``openclaw gateway call`` does; return (res, close)."""
    async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
        await recv(ws)
        await ws.send_message(connect_frame(token=token, scopes=scopes))
        hello = await recv(ws)
        if not hello["ok"]:
            return hello, await closed_code(ws)
        await ws.send_message(json.dumps({**request, "id": "2:x"}))
        return await recv_until(ws, lambda f: f.get("type") == "res"), None


@pytest.mark.parametrize("name", ["no.such.method", "last-heartbeat"])
async def test_answers_equal_the_real_gateways(name: str) -> None:
    data = golden(name)
    case = data["cases"][0]
    with trio.fail_after(10):
        async with running_gateway() as (_, port):
            res, _ = await call_like_the_cli(port, golden_request(data, case), case["connect_scopes"])
    assert {**res, "id": None} == {**case["response"], "id": None}


async def test_bad_token_equals_the_real_gateways() -> None:
    case = golden("bad-token")["cases"][0]
    with trio.fail_after(10):
        async with running_gateway() as (_, port):
            res, close = await call_like_the_cli(port, {}, case["connect_scopes"], token="WRONG-TOKEN")
    assert {**res, "id": None} == {**case["response"], "id": None}
    server_close = next(c for c in case["ws_close"] if c["side"] == "S")
    assert close == (server_close["code"], server_close["reason"])


@pytest.mark.parametrize("name", ["health", "status", "system-presence"])
async def test_payload_keys_match_the_real_gateways(name: str) -> None:
    data = golden(name)
    case = data["cases"][0]
    with trio.fail_after(10):
        async with running_gateway() as (_, port):
            res, _ = await call_like_the_cli(port, golden_request(data, case), case["connect_scopes"])
    ours, real = res["payload"], case["response"]["payload"]
    if isinstance(real, list):
        ours, real = ours[0], real[0]
        assert set(ours) <= set(real)
        assert ours["mode"] == real["mode"]
        assert ours["reason"] == real["reason"]
    else:
        extensions = {"queue", "integrity", "plugins"} if name == "status" else set()  # appliance-only keys
        assert set(ours) == set(real) | extensions
