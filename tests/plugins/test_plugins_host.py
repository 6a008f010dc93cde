"""Plugin sidecars with a real subprocess (tests/plugins/sample_plugin.py): handshake, capability
refusal, timeouts, bounded output, crash and restart; plus the sans-IO protocol pieces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from appliance.plugins import (
    LineBuffer,
    PluginCallFailed,
    PluginCapabilityDenied,
    PluginCrashed,
    PluginOutputTooLarge,
    PluginProtocolError,
    PluginRefused,
    PluginSpec,
    PluginSupervisor,
    PluginTimeout,
    check_handshake,
    open_plugin,
    python_plugin_argv,
)

SAMPLE = str(Path(__file__).with_name("sample_plugin.py"))
ALL = ["sample.crash", "sample.echo", "sample.flood", "sample.sleep", "webhook.post"]


def _spec(*args: str, granted: list[str] | None = None, **kw: object) -> PluginSpec:
    return PluginSpec(
        "sample",
        python_plugin_argv(SAMPLE, *args),
        granted=frozenset(ALL if granted is None else granted),
        **kw,  # type: ignore[arg-type]
    )


def test_line_buffer_bounds_and_splits() -> None:
    buf = LineBuffer(max_line_bytes=8)
    assert buf.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert buf.feed(b":2}\n\n") == [b'{"b":2}']
    with pytest.raises(PluginOutputTooLarge):
        buf.feed(b"123456789")


def test_handshake_checks() -> None:
    ok = {"protocolVersion": 1, "name": "p", "version": "1", "capabilities": ["a.b"]}
    assert check_handshake(ok, granted=["a.b", "c.d"]).capabilities == frozenset({"a.b"})
    with pytest.raises(PluginRefused) as info:
        check_handshake(ok, granted=[])
    assert info.value.code == "FORBIDDEN"
    assert info.value.details == {"plugin": "p", "notGranted": ["a.b"]}
    with pytest.raises(PluginProtocolError):
        check_handshake({**ok, "protocolVersion": 2}, granted=["a.b"])
    with pytest.raises(PluginProtocolError):
        check_handshake({**ok, "capabilities": ["Bad Name"]}, granted=["a.b"])


async def test_handshake_echo_and_capability_refusal() -> None:
    with trio.fail_after(20):
        async with open_plugin(_spec(granted=[*ALL, "extra.unused"])) as plugin:
            assert plugin.manifest is not None
            assert plugin.manifest.name == "sample-webhook"
            assert await plugin.call("sample.echo", {"x": [1, 2]}) == {"x": [1, 2]}
            with pytest.raises(PluginCapabilityDenied):
                await plugin.call("extra.unused")  # granted but not declared
            with pytest.raises(PluginCapabilityDenied):
                await plugin.call("shell.exec")  # neither
        assert plugin.process.returncode == 0  # clean shutdown


async def test_declared_capability_not_granted_is_refused_at_handshake() -> None:
    with trio.fail_after(20), pytest.raises(PluginRefused, match=r"shell\.exec"):
        async with open_plugin(_spec("--mode", "greedy")):
            raise AssertionError("must not start")


async def test_method_outside_grant_is_never_sent() -> None:
    with trio.fail_after(20):
        # the plugin declares only what it has; the operator granted less -> refused at handshake
        with pytest.raises(PluginRefused):
            async with open_plugin(_spec(granted=["sample.echo"])):
                pass


@pytest.mark.parametrize("mode", ["bad-version", "garbage"])
async def test_bad_handshakes_are_protocol_errors(mode: str) -> None:
    with trio.fail_after(20), pytest.raises(PluginProtocolError):
        async with open_plugin(_spec("--mode", mode)):
            raise AssertionError("must not start")


async def test_silent_plugin_times_out_at_handshake() -> None:
    with trio.fail_after(20), pytest.raises(PluginTimeout):
        async with open_plugin(_spec("--mode", "silent", handshake_timeout_s=0.5)):
            raise AssertionError("must not start")


async def test_call_timeout_and_plugin_error() -> None:
    with trio.fail_after(20):
        async with open_plugin(_spec(stop_timeout_s=0.5)) as plugin:
            with pytest.raises(PluginTimeout):
                await plugin.call("sample.sleep", {"seconds": 5}, timeout_s=0.3)
            with pytest.raises(PluginCallFailed) as info:
                await plugin.call("webhook.post", {"url": "http://127.0.0.1:1/nothing", "body": {}})
            assert info.value.details is not None
            assert info.value.details["code"] == -32000


async def test_oversized_output_kills_plugin() -> None:
    with trio.fail_after(20):
        async with open_plugin(_spec(max_line_bytes=10_000)) as plugin:
            with pytest.raises(PluginOutputTooLarge):
                await plugin.call("sample.flood")
            with pytest.raises(PluginOutputTooLarge):
                await plugin.call("sample.echo", {})  # the connection is dead for good


async def test_crash_fails_outstanding_call_then_supervisor_restarts() -> None:
    supervisor = PluginSupervisor(_spec(), restart_base_s=0.01, restart_cap_s=0.05)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            first_pid = supervisor.pids[0]
            with pytest.raises(PluginCrashed):
                await supervisor.call("sample.crash")
            assert await supervisor.call("sample.echo", {"again": True}) == {"again": True}
            assert supervisor.restarts == 1
            assert supervisor.pids[-1] != first_pid
            nursery.cancel_scope.cancel()


async def test_supervisor_does_not_retry_refusal() -> None:
    supervisor = PluginSupervisor(_spec("--mode", "greedy"), restart_base_s=0.01)
    with trio.fail_after(20), pytest.raises(PluginRefused):
        await supervisor.run()
    assert supervisor.restarts == 0


async def test_sample_webhook_plugin_posts_to_loopback() -> None:
    received: list[bytes] = []

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(
                v
                for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n"))
                if k.lower() == b"content-length"
            )
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
        received.append(body)
        await stream.send_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await stream.aclose()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, handle, 0)
            port = listeners[0].socket.getsockname()[1]
            async with open_plugin(_spec()) as plugin:
                result = await plugin.call(
                    "webhook.post", {"url": f"http://127.0.0.1:{port}/hook", "body": {"text": "hi"}}
                )
            assert result == {"status": 204}
            assert json.loads(received[0]) == {"text": "hi"}
            nursery.cancel_scope.cancel()
