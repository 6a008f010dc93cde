#!/usr/bin/env python3
"""One entry point for the benchmark matrix: runs every bench as a subprocess, measures the appliance's own
idle/load figures, measures peers where they can run here, and writes one JSON (+ an SVG chart).

    .venv/bin/python bench/run_all.py --quick            # < 3 min once the peers are cached
    .venv/bin/python bench/run_all.py                    # full matrix, about 10-15 min on a 2-core box
    .venv/bin/python bench/run_all.py --quick --no-peers --data-dir ~/.local/share/appliance

Matrix (each bench's printed lines are kept verbatim and parsed into figures; a bench that is absent,
fails or needs what this machine lacks is reported with the reason, never silently dropped):
- ``bench_gateway.py``: cold start to first ``health`` (venv), idle RSS, health round trips/s;
  with peers, the same for the real OpenClaw gateway (``--peer-openclaw``) as ratios;
- ``bench_queue.py``: enqueue-to-start latency, scheduler idle wake-ups;
- ``bench_defender.py``: per-item cost and detection/FP rates;
- ``bench_sandbox.py``: container run overhead (needs podman);
- ``bench_agent.py``: turn overhead p50/p99 and messages/s (``/tool`` path and an instant model);
- ``bench_frozen.py``: cold start and RSS of the frozen build, when that bench exists;
- ``appliance`` (measured here): idle CPU seconds per minute (a power proxy), idle RSS, RSS with 20 live
  sessions, turn latency p50/p95/p99 and CPU time per completed turn through ``appliance serve``;
- ``nanobot`` peer (PyPI ``nanobot-ai`` in a throwaway venv under /tmp, reused between runs;
  ``--nanobot-wheels DIR`` installs offline from a wheel dir): gateway cold start to ``/health`` and idle RSS.
The JSON carries a machine description (CPU model, cores, memory, kernel, Python) so figures from
different boards are comparable. ``--data-dir`` also copies it to ``<data>/bench/latest.json`` where the
support bundle picks it up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

#: name -> (script, quick args, full args, timeout quick s, timeout full s)
MATRIX: dict[str, tuple[str, list[str], list[str], float, float]] = {
    "gateway": ("bench_gateway.py", ["--runs", "3", "--idle", "5", "--calls", "500"], [], 150, 900),
    "queue": ("bench_queue.py", ["--items", "500", "--idle-seconds", "5"], [], 60, 300),
    "defender": ("bench_defender.py", ["--quick"], [], 90, 900),
    "sandbox": ("bench_sandbox.py", ["-n", "10"], [], 120, 900),
    "agent": ("bench_agent.py", ["--turns", "100", "--concurrency", "4"], [], 60, 600),
    "frozen": ("bench_frozen.py", ["--runs", "3", "--serve-runs", "2"], [], 120, 600),
    # the same gateway bench against the frozen binary: its idle RSS is the figure with the 32 MB target
    "frozen-gateway": (
        "bench_gateway.py",
        ["--exe", "dist/appliance/appliance", "--runs", "3", "--idle", "10", "--calls", "300"],
        ["--exe", "dist/appliance/appliance"],
        150,
        900,
    ),
}
NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*(ms|s|MB|MiB|KB|kB|%|x|/s)?")
NANOBOT_VERSION = "0.3.5"


# ---- machine -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "cpuModel": cpu,
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memoryMB": mem_kb // 1024,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
    }


# ---- parsing printed figures -------------------------------------------------------------------------


def parse_figures(text: str) -> dict[str, list[dict[str, Any]]]:
    """Each line ``label: ... 12.3 ms ... 4 MB`` -> {label: [{value, unit}, ...]} (labels made unique)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or ":" not in line:
            continue
        label, _, rest = line.partition(":")
        values = [{"value": float(num), "unit": unit or ""} for num, unit in NUMBER.findall(rest)]
        if not values:
            continue
        key = label.strip()
        n = 2
        while key in out:
            key = f"{label.strip()} #{n}"
            n += 1
        out[key] = values
    return out


def headline(name: str, text: str) -> dict[str, float]:
    """The few figures the matrix and the ratios need, by bench (matched on the benches' own wording)."""
    found: dict[str, float] = {}
    patterns: dict[str, dict[str, str]] = {
        "gateway": {
            "coldStartMs": r"appliance cold start to first health: median (\d+) ms",
            "idleRssMB": r"appliance idle RSS after \S+ s: ([\d.]+) MB",
            "healthRps1": r"round trips/s: 1 connection (\d+)",
            "healthRps20": r"20 connections (\d+);",
            "openclawColdStartMs": r"openclaw cold start: median (\d+) ms",
            "openclawIdleRssMB": r"openclaw idle RSS \(tree\): ([\d.]+) MB",
        },
        "agent": {},
        "queue": {},
    }
    patterns["frozen-gateway"] = {
        k: v for k, v in patterns["gateway"].items() if not k.startswith("openclaw")
    }
    for key, pattern in patterns.get(name, {}).items():
        match = re.search(pattern, text)
        if match:
            found[key] = float(match.group(1))
    return found


# ---- subprocess benches ------------------------------------------------------------------------------


def run_bench(name: str, quick: bool, extra: list[str]) -> dict[str, Any]:
    script, quick_args, full_args, t_quick, t_full = MATRIX[name]
    path = BENCH / script
    if not path.exists():
        return {"status": "absent", "reason": f"{script} not in this checkout"}
    cmd = [sys.executable, str(path), *(quick_args if quick else full_args), *extra]
    started = time.monotonic()
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=t_quick if quick else t_full, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return {"status": "timeout", "reason": f"no result within {exc.timeout:.0f} s", "stdout": out[-4000:]}
    seconds = round(time.monotonic() - started, 1)
    result: dict[str, Any] = {
        "status": "ok" if done.returncode == 0 else "failed",
        "command": " ".join(cmd[1:]),
        "seconds": seconds,
        "lines": done.stdout.splitlines(),
        "figures": parse_figures(done.stdout),
        "headline": headline(name, done.stdout),
    }
    if done.returncode != 0:
        result["reason"] = f"exit {done.returncode}: {_error_line(done.stderr or done.stdout)}"
    return result


def _error_line(text: str) -> str:
    """The most telling line of a failed bench's output: the last ``...Error: ...`` line, else the last line."""
    lines = [line.strip(" |+-") for line in text.splitlines() if line.strip(" |+-")]
    for line in reversed(lines):
        if re.search(r"(Error|Exception|error):", line):
            return line
    return lines[-1] if lines else "no output"


# ---- the appliance's own idle / load figures ---------------------------------------------------------


def measure_appliance(idle_s: float, turns: int, sessions: int) -> dict[str, Any]:
    import trio

    from appliance.gateway.client import open_gateway_client
    from appliance.monitor.sample import clock_ticks, read_process_sample
    from appliance.testing.process import start_serve

    tmp = Path(tempfile.mkdtemp(prefix="appliance-bench-"))
    env = {
        "APPLIANCE_LOG_LEVEL": "warning",
        # the per-connection rate limit (50/s) would measure the limiter's back-off, not the turn
        "APPLIANCE_GATEWAY_RATE_LIMIT_PER_S": "100000",
        "APPLIANCE_GATEWAY_RATE_LIMIT_BURST": "100000",
    }
    serve = start_serve(tmp / "data", env=env)
    tick = clock_ticks()
    try:
        time.sleep(2.0)  # let start-up settle before the idle window
        a = read_process_sample(serve.proc.pid)
        time.sleep(idle_s)
        b = read_process_sample(serve.proc.pid)
        idle_cpu_min = (b.cpu_ticks - a.cpu_ticks) / tick * 60 / idle_s

        latencies: list[float] = []

        async def load() -> None:
            async with open_gateway_client(serve.url, serve.token) as raw:
                client = _Retrying(raw)
                for i in range(sessions):
                    key = f"agent:main:bench-{i}"
                    await client.call("sessions.patch", {"key": key, "label": f"bench {i}"})
                    run = await client.call(
                        "chat.send",
                        {"sessionKey": key, "message": "/tool time_now", "idempotencyKey": f"w{i}"},
                    )
                    await client.call("agent.wait", {"runId": run["runId"], "timeoutMs": 10_000})
                results["rssSessionsMB"] = read_process_sample(serve.proc.pid).rss_bytes / 1e6
                before = read_process_sample(serve.proc.pid).cpu_ticks
                for i in range(turns):
                    t0 = time.perf_counter()
                    run = await client.call(
                        "chat.send",
                        {
                            "sessionKey": f"agent:main:bench-{i % sessions}",
                            "message": "/tool time_now",
                            "idempotencyKey": f"t{i}",
                        },
                    )
                    await client.call("agent.wait", {"runId": run["runId"], "timeoutMs": 10_000})
                    latencies.append((time.perf_counter() - t0) * 1000)
                results["cpuPerTurnMs"] = (
                    (read_process_sample(serve.proc.pid).cpu_ticks - before) / tick * 1000 / turns
                )
                results["rssLoadMB"] = read_process_sample(serve.proc.pid).rss_bytes / 1e6
                results["retries"] = client.retries

        results: dict[str, float] = {}
        trio.run(load)
        ordered = sorted(latencies)

        def pct(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {
            "status": "ok",
            "idleSeconds": idle_s,
            "idleCpuSecondsPerMinute": round(idle_cpu_min, 4),
            "idleRssMB": round(b.rss_bytes / 1e6, 2),
            "liveSessions": sessions,
            "rssWithSessionsMB": round(results["rssSessionsMB"], 2),
            "rssAfterLoadMB": round(results["rssLoadMB"], 2),
            "turns": turns,
            "turnLatencyMs": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)},
            "cpuPerTurnMs": round(results["cpuPerTurnMs"], 3),
            "unavailableRetries": int(results["retries"]),
        }
    finally:
        serve.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


class _Retrying:
    """Retries a call the gateway refused as retryable (``UNAVAILABLE`` while it finishes starting)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.retries = 0

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        import trio

        from appliance.gateway.client import GatewayCallError

        for _ in range(100):
            try:
                return await self.client.call(method, params)
            except GatewayCallError as exc:
                if exc.wire_code != "UNAVAILABLE":
                    raise
                self.retries += 1
                await trio.sleep(0.1)
        return await self.client.call(method, params)


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


# ---- nanobot peer ------------------------------------------------------------------------------------


def _http_ok(port: int, path: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            return bool(resp.status < 500)
    except OSError:
        return False


def _tree_rss_kb(pid: int) -> int:
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def nanobot_venv(cache: Path, wheels: str | None) -> tuple[Path | None, str]:
    """A venv with nanobot-ai (reused when present); (path to `nanobot`, "") or (None, why not)."""
    exe = cache / "bin" / "nanobot"
    marker = cache / ".complete"
    if exe.exists() and marker.exists():
        return exe, ""
    shutil.rmtree(cache, ignore_errors=True)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(cache)], check=True, capture_output=True, timeout=120
        )
        pip = [str(cache / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if wheels:
            pip += ["--no-index", "--find-links", wheels]
        subprocess.run([*pip, f"nanobot-ai=={NANOBOT_VERSION}"], check=True, capture_output=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
        shutil.rmtree(cache, ignore_errors=True)
        return (
            None,
            f"pip install nanobot-ai=={NANOBOT_VERSION} failed (offline and no --nanobot-wheels?): {tail}",
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(cache, ignore_errors=True)
        return None, f"could not build the nanobot venv: {exc}"
    marker.write_text(NANOBOT_VERSION + "\n")
    return exe, ""


def measure_nanobot(exe: Path, runs: int, idle_s: float) -> dict[str, Any]:
    """``nanobot gateway`` (offline, no provider): time to /health on 18790, idle RSS of the process tree."""
    colds: list[float] = []
    idle_rss = 0.0
    for attempt in range(runs):
        home = Path(tempfile.mkdtemp(prefix="nanobot-home-"))
        env = {**os.environ, "HOME": str(home)}
        subprocess.run(
            [str(exe), "onboard"], env=env, capture_output=True, timeout=60, input=b"\n" * 20, check=False
        )
        if _http_ok(18790, "/health"):
            return {"status": "skipped", "reason": "port 18790 already in use"}
        started = time.monotonic()
        proc = subprocess.Popen(
            [str(exe), "gateway"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = started + 60
            while time.monotonic() < deadline and not _http_ok(18790, "/health"):
                if proc.poll() is not None:
                    return {"status": "failed", "reason": f"nanobot gateway exited with {proc.returncode}"}
                time.sleep(0.02)
            else:
                if time.monotonic() >= deadline:
                    return {"status": "failed", "reason": "no /health on 18790 within 60 s"}
            colds.append(time.monotonic() - started)
            if attempt == runs - 1:
                time.sleep(idle_s)
                idle_rss = _tree_rss_kb(proc.pid) / 1024 * 1.048576
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            shutil.rmtree(home, ignore_errors=True)
    return {
        "status": "ok",
        "version": NANOBOT_VERSION,
        "coldStartMs": round(statistics.median(colds) * 1000),
        "coldStartRunsMs": [round(c * 1000) for c in colds],
        "idleRssMB": round(idle_rss, 1),
    }


# ---- chart -------------------------------------------------------------------------------------------


def bar_chart_png(path: Path, title: str, groups: list[tuple[str, list[tuple[str, float]]]]) -> str:
    """The same chart as PNG (matplotlib, a dev dependency); returns what was written or why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no PNG (matplotlib not installed: make venv-dev)"
    if not groups:
        return "no PNG (no figures to plot)"
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 1.2 + 0.45 * sum(len(b) for _, b in groups)))
    axes_list = list(axes) if len(groups) > 1 else [axes]
    for ax, (label, bars) in zip(axes_list, groups, strict=True):
        names = [name for name, _ in bars]
        values = [value for _, value in bars]
        ax.barh(names, values, color=["#2b6cb0"] + ["#a0aec0"] * (len(bars) - 1))
        ax.invert_yaxis()
        ax.set_title(label, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
        for i, value in enumerate(values):
            ax.text(value, i, f" {value:g}", va="center", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name


def bar_chart(title: str, groups: list[tuple[str, list[tuple[str, float]]]]) -> str:
    """A dependency-free SVG: one row of bars per figure, the appliance and its peers side by side."""
    from html import escape

    width, row_h, pad = 760, 22, 200
    rows = sum(len(bars) + 1 for _, bars in groups)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{40 + rows * row_h}" font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="10" y="20" font-size="14">{escape(title)}</text>',
    ]
    y = 40
    for label, bars in groups:
        out.append(f'<text x="10" y="{y + 12}" font-weight="bold">{escape(label)}</text>')
        y += row_h
        top = max((v for _, v in bars), default=1.0) or 1.0
        for name, value in bars:
            w = (width - pad - 80) * value / top
            out.append(f'<text x="20" y="{y + 12}">{escape(name)}</text>')
            out.append(f'<rect x="{pad}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" fill="#1f77b4"/>')
            out.append(f'<text x="{pad + w + 4:.1f}" y="{y + 12}">{value:g}</text>')
            y += row_h
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---- main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmark matrix; write JSON and an SVG chart.")
    parser.add_argument("--quick", action="store_true", help="short variants (< 3 min with cached peers)")
    parser.add_argument("--no-peers", action="store_true", help="skip OpenClaw and nanobot")
    parser.add_argument(
        "--only", action="append", choices=[*MATRIX, "appliance", "nanobot"], help="run only these"
    )
    parser.add_argument("--out", help="JSON path (default bench/results/bench-<UTC time>.json)")
    parser.add_argument("--data-dir", help="also copy the JSON to <data-dir>/bench/latest.json")
    parser.add_argument(
        "--peer-cache", default="/tmp/appliance-bench-peers", help="where the nanobot venv lives"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when one of our own benches fails (CI); peers never do"
    )
    parser.add_argument("--nanobot-wheels", help="install nanobot-ai offline from this wheel directory")
    args = parser.parse_args(argv)
    wanted = set(args.only or [*MATRIX, "appliance", "nanobot"])
    peers = not args.no_peers
    began = time.monotonic()
    report: dict[str, Any] = {
        "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "benches": {},
        "peers": {},
        "ratios": {},
    }
    print(f"machine: {json.dumps(report['machine'])}", flush=True)
    for name in MATRIX:
        if name not in wanted:
            continue
        extra = ["--peer-openclaw"] if name == "gateway" and peers else []
        print(f"== {name} ({MATRIX[name][0]} {' '.join(extra)})", flush=True)
        result = run_bench(name, args.quick, extra)
        if name == "gateway" and result["status"] == "failed" and "coldStartMs" in result.get("headline", {}):
            result["status"] = "partial"  # the appliance's figures were printed; the peer part failed
        report["benches"][name] = result
        for line in result.get("lines", []):
            print(f"   {line}")
        if result["status"] != "ok":
            print(f"   -> {result['status']}: {result.get('reason', '')}")
    if "appliance" in wanted:
        print("== appliance idle / sessions / turns (measured here)", flush=True)
        try:
            own = measure_appliance(
                idle_s=20 if args.quick else 60, turns=100 if args.quick else 500, sessions=20
            )
        except Exception as exc:  # a bench must report, not crash: the reason goes in the JSON
            leaf = _leaf(exc)
            own = {"status": "failed", "reason": f"{type(leaf).__name__}: {leaf}"}
        report["benches"]["appliance"] = own
        print(f"   {json.dumps(own)}")

    gateway = report["benches"].get("gateway", {}).get("headline", {})
    own = report["benches"].get("appliance", {})
    cold_ms = gateway.get("coldStartMs")
    rss_mb = own.get("idleRssMB") or gateway.get("idleRssMB")
    if peers and "gateway" in wanted:
        if "openclawColdStartMs" in gateway:
            report["peers"]["openclaw"] = {
                "status": "ok",
                "coldStartMs": gateway["openclawColdStartMs"],
                "idleRssMB": gateway.get("openclawIdleRssMB"),
            }
        else:
            lines = report["benches"].get("gateway", {}).get("lines", [])
            why = next((line for line in lines if line.startswith("peer openclaw")), None)
            report["peers"]["openclaw"] = {
                "status": "not measured",
                "reason": why
                or report["benches"]
                .get("gateway", {})
                .get("reason", "bench_gateway printed no peer figures"),
            }
    if peers and "nanobot" in wanted:
        print("== nanobot peer", flush=True)
        exe, why = nanobot_venv(Path(args.peer_cache) / "nanobot-venv", args.nanobot_wheels)
        if exe is None:
            report["peers"]["nanobot"] = {"status": "not measured", "reason": why}
        else:
            try:
                report["peers"]["nanobot"] = measure_nanobot(
                    exe, runs=2 if args.quick else 4, idle_s=10 if args.quick else 30
                )
            except (OSError, subprocess.SubprocessError) as exc:
                report["peers"]["nanobot"] = {
                    "status": "not measured",
                    "reason": f"{type(exc).__name__}: {exc}",
                }
        print(f"   {json.dumps(report['peers']['nanobot'])}")
    for peer, figures in report["peers"].items():
        if figures.get("status") != "ok":
            print(f"peer {peer}: not measured: {figures.get('reason')}")
            continue
        if cold_ms and figures.get("coldStartMs"):
            report["ratios"][f"{peer}/appliance coldStart"] = round(figures["coldStartMs"] / cold_ms, 2)
        if rss_mb and figures.get("idleRssMB"):
            report["ratios"][f"{peer}/appliance idleRss"] = round(figures["idleRssMB"] / rss_mb, 2)
    report["seconds"] = round(time.monotonic() - began, 1)
    frozen_rss = report["benches"].get("frozen-gateway", {}).get("headline", {}).get("idleRssMB")
    report["targets"] = {
        "idleRssMB (this build; target <=32 frozen)": rss_mb,
        "frozenIdleRssMB<=32": frozen_rss,
        "rssWith20SessionsMB<=60": own.get("rssWithSessionsMB"),
        "idleCpuSecondsPerMinute<=0.2": own.get("idleCpuSecondsPerMinute"),
    }

    out = (
        Path(args.out)
        if args.out
        else BENCH / "results" / f"bench-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    groups: list[tuple[str, list[tuple[str, float]]]] = []
    cold_bars = [("appliance (venv)", float(cold_ms))] if cold_ms else []
    rss_bars = [("appliance (venv)", float(rss_mb))] if rss_mb else []
    for peer, figures in report["peers"].items():
        if figures.get("status") == "ok":
            cold_bars.append((peer, float(figures["coldStartMs"])))
            if figures.get("idleRssMB"):
                rss_bars.append((peer, float(figures["idleRssMB"])))
    if cold_bars:
        groups.append(("cold start to health (ms)", cold_bars))
    if rss_bars:
        groups.append(("idle RSS (MB)", rss_bars))
    if own.get("status") == "ok":
        groups.append(
            ("appliance turn latency (ms)", [(k, float(v)) for k, v in own["turnLatencyMs"].items()])
        )
    title = (
        f"appliance bench ({report['mode']}, {report['machine']['arch']}, {report['machine']['cores']} cores)"
    )
    out.with_suffix(".svg").write_text(bar_chart(title, groups))
    png_note = bar_chart_png(out.with_suffix(".png"), title, groups)
    if args.data_dir:
        latest = Path(args.data_dir).expanduser() / "bench" / "latest.json"
        latest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, latest)

    print("")
    print(f"matrix ({report['mode']}, {report['seconds']} s):")
    for name, result in report["benches"].items():
        status = result.get("status")
        note = f" ({result.get('reason')})" if status != "ok" and result.get("reason") else ""
        print(f"  {name:<10} {status}{note}")
    for key, value in report["ratios"].items():
        print(f"  ratio {key}: {value}x")
    for key, value in report["targets"].items():
        print(f"  target {key}: {value}")
    print(f"wrote {out}, {out.with_suffix('.svg').name} and {png_note}")
    failed = [
        name for name, result in report["benches"].items() if result.get("status") not in ("ok", "partial")
    ]
    if failed and args.strict:
        print(f"bench: own benches failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
