"""Gateway benchmark: cold start to first ``health``, idle RSS, ``health`` round trips per second.

Prints figures (and, with ``--peer-openclaw``, the same figures for the real OpenClaw gateway started in the
same run, as ratios). Targets on a 2-core box from a venv: cold start <= 0.6 s, idle RSS <= 35 MB.

    .venv/bin/python bench/bench_gateway.py [--runs 5] [--idle 10] [--calls 2000] [--peer-openclaw]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from appliance.gateway.client import GatewayCallError, open_gateway_client

TOKEN = "bench-token-0123456789"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_kib(pid: int) -> int:
    total = rss_kib(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(tree_rss_kib(int(c)) for c in children)


def appliance_cmd(port: int, data_dir: str) -> list[str]:
    exe = shutil.which("appliance", path=str(Path(sys.executable).parent)) or "appliance"
    return [exe, "serve", "--port", str(port), "--data-dir", data_dir]


async def first_health(url: str, token: str, deadline_s: float) -> None:
    with trio.fail_after(deadline_s):
        while True:
            try:
                async with open_gateway_client(url, token, scopes=["operator.read"]) as client:
                    await client.call("health")
                    return
            except OSError:
                await trio.sleep(0.005)
            except GatewayCallError as exc:  # a peer may answer "starting, retry" (UNAVAILABLE) at first
                if exc.wire_code != "UNAVAILABLE":
                    raise
                await trio.sleep(0.05)
            except Exception as exc:  # the socket may accept before the WS layer is ready
                if "refused" in str(exc).lower() or "handshake" in str(exc).lower():
                    await trio.sleep(0.005)
                else:
                    raise


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def measure_cold_start(
    make_cmd, env: dict[str, str], token: str, runs: int, deadline_s: float
) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            t0 = time.perf_counter()
            proc = start(make_cmd(port, tmp), env)
            try:
                trio.run(first_health, f"ws://127.0.0.1:{port}/", token, deadline_s)
                times.append(time.perf_counter() - t0)
            finally:
                stop(proc)
    return times


async def round_trips(url: str, token: str, connections: int, calls: int) -> float:
    per_conn = max(1, calls // connections)

    async def worker() -> None:
        async with open_gateway_client(url, token, scopes=["operator.read"]) as client:
            for _ in range(per_conn):
                await client.call("health")

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(connections):
            nursery.start_soon(worker)
    return per_conn * connections / (time.perf_counter() - t0)


def measure_running(
    make_cmd, env: dict[str, str], token: str, idle_s: float, calls: int, deadline_s: float
) -> dict[str, float]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start(make_cmd(port, tmp), env)
        try:
            url = f"ws://127.0.0.1:{port}/"
            trio.run(first_health, url, token, deadline_s)
            time.sleep(idle_s)
            idle_rss = tree_rss_kib(proc.pid) / 1024
            rps1 = trio.run(round_trips, url, token, 1, calls)
            rps20 = trio.run(round_trips, url, token, 20, calls)
            after_rss = tree_rss_kib(proc.pid) / 1024
        finally:
            stop(proc)
    return {"idle_rss_mb": idle_rss, "rps_1": rps1, "rps_20": rps20, "rss_after_load_mb": after_rss}


def openclaw_peer() -> tuple[object, dict[str, str]] | None:
    script = ROOT / "tests" / "tools" / "install-openclaw.sh"
    try:
        out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True, timeout=900)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"peer openclaw: not available ({exc})")
        return None
    wrapper = out.stdout.strip().splitlines()[-1]
    state = tempfile.mkdtemp(prefix="openclaw-peer-")
    env = {
        **os.environ,
        "OPENCLAW_STATE_DIR": f"{state}/state",
        "OPENCLAW_CONFIG_PATH": f"{state}/state/openclaw.json",
        "HOME": f"{state}/home",
        "OPENCLAW_DISABLE_BONJOUR": "1",
        "OPENCLAW_NO_RESPAWN": "1",
        "OPENCLAW_SKIP_CHANNELS": "1",
    }

    def make(port: int, _tmp: str) -> list[str]:
        return [
            wrapper,
            "gateway",
            "run",
            "--port",
            str(port),
            "--bind",
            "loopback",
            "--allow-unconfigured",
            "--auth",
            "token",
            "--token",
            TOKEN,
        ]

    return make, env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--peer-openclaw", action="store_true", help="also measure the real OpenClaw gateway")
    parser.add_argument("--exe", help="measure this appliance executable (e.g. dist/appliance/appliance)")
    args = parser.parse_args()
    build = "venv"
    own_cmd = appliance_cmd
    if args.exe:
        exe = str(Path(args.exe).resolve())
        if not Path(exe).is_file():
            print(f"no executable at {args.exe}: run `make dist` first", file=sys.stderr)
            return 66

        def own_cmd(port: int, data_dir: str) -> list[str]:
            return [exe, "serve", "--port", str(port), "--data-dir", data_dir]

        build = "frozen"

    env = {
        **os.environ,
        "APPLIANCE_GATEWAY_TOKEN": TOKEN,
        "APPLIANCE_LOG_LEVEL": "warning",
        # the per-connection rate limit (50/s) would measure the limiter, not the gateway
        "APPLIANCE_GATEWAY_RATE_LIMIT_PER_S": "100000",
        "APPLIANCE_GATEWAY_RATE_LIMIT_BURST": "100000",
    }
    cold = measure_cold_start(own_cmd, env, TOKEN, args.runs, 20)
    running = measure_running(own_cmd, env, TOKEN, args.idle, args.calls, 20)
    med = statistics.median(cold)
    print(
        f"appliance cold start to first health: median {med * 1000:.0f} ms over {len(cold)} runs "
        f"(min {min(cold) * 1000:.0f}, max {max(cold) * 1000:.0f}) target <= 600 ms"
    )
    target = 32 if build == "frozen" else 35
    print(
        f"appliance idle RSS after {args.idle:.0f} s: {running['idle_rss_mb']:.1f} MB "
        f"({build}; target <= {target} MB)"
    )
    print(
        f"appliance health round trips/s: 1 connection {running['rps_1']:.0f}, "
        f"20 connections {running['rps_20']:.0f}; RSS after load {running['rss_after_load_mb']:.1f} MB"
    )
    if args.peer_openclaw:
        peer = openclaw_peer()
        if peer is not None:
            make, peer_env = peer
            peer_cold = measure_cold_start(make, peer_env, TOKEN, max(1, min(args.runs, 3)), 120)
            peer_run = measure_running(make, peer_env, TOKEN, args.idle, min(args.calls, 500), 120)
            pmed = statistics.median(peer_cold)
            print(
                f"openclaw cold start: median {pmed * 1000:.0f} ms; ratio openclaw/appliance {pmed / med:.1f}x"
            )
            print(
                f"openclaw idle RSS (tree): {peer_run['idle_rss_mb']:.1f} MB; "
                f"ratio {peer_run['idle_rss_mb'] / running['idle_rss_mb']:.1f}x"
            )
            print(
                f"openclaw health round trips/s: 1 conn {peer_run['rps_1']:.0f} "
                f"(appliance/openclaw {running['rps_1'] / peer_run['rps_1']:.1f}x), "
                f"20 conns {peer_run['rps_20']:.0f} ({running['rps_20'] / peer_run['rps_20']:.1f}x)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
