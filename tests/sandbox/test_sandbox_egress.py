# ruff: noqa: ASYNC240  (tiny fixture-file set-up inside async tests; no event-loop work to block)
"""Allowlisted egress end to end, on both backends: the container keeps network ``none`` (only ``lo``);
the runner relays 127.0.0.1:3128 (its own relay, no socat) to the host's audited proxy socket.

The host's test server listens on 127.0.0.1 and is allowlisted by IP literal: the proxy refuses *names*
resolving to local addresses (DNS must not open a way back into the host), while a literal on the list is
the operator's explicit choice, so no test-only switch is needed. Inside the container 127.0.0.1 is the
container itself, so the only way to that server is the relay. No ``wget -T``: busybox-static 1.35's
wget segfaults with a timeout inside the container; without one, refusals fail fast (403 or ECONNREFUSED).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import trio

from appliance import log as applog
from appliance.sandbox.backend import RunResult, SandboxBackend
from appliance.sandbox.policy import Limits, NetMode
from appliance.sandbox.service import SandboxPaths, run_in_sandbox

pytestmark = [pytest.mark.podman, pytest.mark.integration]

LIMITS = Limits(cpus=1.0, memory_mb=64, pids=32, timeout_s=20, output_cap_bytes=8192)
BODY = b"hello-from-the-host\n"


@pytest.fixture
def paths(tmp_path: Path) -> SandboxPaths:
    home = tmp_path / "home"
    for d in ("data", "conf", "ws"):
        (home / d).mkdir(parents=True)
    return SandboxPaths(
        data_dir=str(home / "data"),
        runtime_dir="unused",
        workspaces=str(home / "ws"),
        mount_allowlist=str(home / "conf/mount-allowlist"),
        egress_allowlist=str(home / "conf/egress-allowlist"),
        image_file=str(home / "data/runner-image"),
        protected=(str(home / "data"), str(home / "conf")),
        home=str(home),
    )


async def _http_server(
    seen: list[bytes], task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """A one-answer HTTP/1.1 server on the host's loopback; records each request line."""

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                head += chunk
            seen.append(head.split(b"\r\n", 1)[0])
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
                + BODY
            )

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handler, listeners)


async def _run(
    backend: SandboxBackend, paths: SandboxPaths, image: str, script: str, net: NetMode
) -> RunResult:
    with trio.fail_after(60):
        return await run_in_sandbox(
            backend,
            paths,
            group="main",
            argv=["sh", "-c", script],
            limits=LIMITS,
            image=image,
            network=net,
        )


async def test_allowlisted_host_is_reachable_only_through_the_relay(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """``net allow``: the allowlisted host server answers through the relay (absolute-form GET and a
    CONNECT tunnel); a host not on the list gets 403 and an ``egress_denied`` audit line; the container
    still has only ``lo``."""
    sink = io.StringIO()
    seen: list[bytes] = []
    applog.configure(level="info", stream=sink, human=False)
    try:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_http_server, seen)
            Path(paths.egress_allowlist).write_text(f"127.0.0.1:{port}\n")
            script = (
                f"wget -q -O - http://127.0.0.1:{port}/probe; echo allowed=$?; "
                f"printf 'CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\nGET /tunnel HTTP/1.1\\r\\n\\r\\n' "
                "| nc 127.0.0.1 3128; echo tunnel=$?; "
                "wget -q -O - http://blocked.example/; echo denied=$?; "
                'echo "proxy=$http_proxy|$HTTPS_PROXY"; cat /proc/net/dev'
            )
            result = await _run(backend, paths, runner_image, script, NetMode.ALLOW)
            nursery.cancel_scope.cancel()
    finally:
        applog.configure()
    out = result.stdout.decode()
    assert result.exit_code == 0, (out, result.stderr)
    assert BODY.decode() + "allowed=0" in out, out
    assert "HTTP/1.1 200 Connection established" in out, out
    assert BODY.decode() + "tunnel=0" in out, out
    assert "denied=1" in out, out
    assert b"403" in result.stderr, result.stderr
    assert "proxy=http://127.0.0.1:3128|http://127.0.0.1:3128" in out, out
    assert _interfaces(out) == ["lo"], out
    assert seen == [b"GET /probe HTTP/1.1", b"GET /tunnel HTTP/1.1"]
    audit = [json.loads(line) for line in sink.getvalue().splitlines()]
    egress = [(e["event"], e.get("host"), e.get("port")) for e in audit if e["event"].startswith("egress_")]
    assert egress == [
        ("egress_allowed", "127.0.0.1", port),
        ("egress_allowed", "127.0.0.1", port),
        ("egress_denied", "blocked.example", 80),
    ]


async def test_net_none_has_no_relay_and_no_route(
    backend: SandboxBackend, paths: SandboxPaths, runner_image: str
) -> None:
    """``net none``: no egress socket, no relay, no proxy env; the host server is unreachable even when
    the allowlist names it."""
    seen: list[bytes] = []
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_http_server, seen)
        Path(paths.egress_allowlist).write_text(f"127.0.0.1:{port}\n")
        script = (
            f"wget -q -O - http://127.0.0.1:{port}/; echo direct=$?; "
            "wget -q -O - http://127.0.0.1:3128/; echo relay=$?; "
            'echo "proxy=$http_proxy$HTTP_PROXY"; test -e /run/appliance/egress.sock || echo no-sock; '
            "cat /proc/net/dev"
        )
        result = await _run(backend, paths, runner_image, script, NetMode.NONE)
        nursery.cancel_scope.cancel()
    out = result.stdout.decode()
    assert "direct=1" in out, out
    assert "relay=1" in out, out
    assert "proxy=\n" in out, out
    assert "no-sock" in out, out
    assert _interfaces(out) == ["lo"], out
    assert seen == []


def _interfaces(out: str) -> list[str]:
    """Interface names from the ``/proc/net/dev`` table at the end of ``out``."""
    table = out[out.index(" face |") :].splitlines()[1:]
    return [line.split(":")[0].strip() for line in table if ":" in line]
