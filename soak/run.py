#!/usr/bin/env python3
"""Soak harness: run the appliance under a mixed synthetic load through the real gateway and judge it.

    .venv/bin/python soak/run.py                       # 10 minutes (CI-style), spawns ``appliance serve``
    .venv/bin/python soak/run.py --duration 24h --interval 60 --out /var/lib/appliance-soak
    .venv/bin/python soak/run.py --url ws://127.0.0.1:18789 --token-file ~/.local/share/appliance/gateway.token \
        --pid $(pgrep -f 'appliance serve') --data-dir ~/.local/share/appliance     # attach to a running one

Phases: (1) idle: no client connected for ``--idle-s``; CPU seconds per minute and idle RSS are measured.
(2) ``--sessions`` live sessions are created (patch + one turn each); RSS is measured. (3) load for
``--duration``: ``--workers`` clients, each reconnecting every ``--reconnect-s``, mix ``chat.send`` with
``/tool time_now`` (then ``agent.wait``), idempotent re-sends of earlier messages (must not duplicate),
``sessions.patch``, ``sessions.list``, ``health``, ``status`` and, when the gateway has them, ``cron.*``.
Every ``--interval`` seconds a JSON line goes to ``samples.jsonl``. (4) accounting: every session's
``chat.history`` is paged through and every acknowledged message must appear exactly once (user and
assistant). Judgement (``judge.py``): no crash, progress every interval, RSS slope <= limit after warm-up,
WAL bounded, 0 lost / duplicated. Writes ``summary.json`` and ``plot.svg`` (``plot.png`` too when
matplotlib is importable). Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent))

import trio  # noqa: E402 - after the path set-up above
from judge import Limits, account, judge, percentile  # noqa: E402
from svgplot import line_chart  # noqa: E402

from appliance.gateway.client import GatewayCallError, open_gateway_client  # noqa: E402
from appliance.monitor.sample import clock_ticks, read_process_sample  # noqa: E402
from appliance.monitor.stats import file_sizes  # noqa: E402

CALL_TIMEOUT_S = 30.0
MESSAGE = "/tool time_now"


def parse_duration(text: str) -> float:
    """``45s``, ``10m``, ``24h``, ``1d`` or plain seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


class Load:
    """What the workers did: acknowledged message ids, latencies, counts (the sampler drains them)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.seq = 0
        self.sent: dict[str, str] = {}  # idempotency key -> session key (acknowledged)
        self.uncertain: set[str] = set()  # chat.send failed: the gateway may or may not have it
        self.interval_latencies: list[float] = []
        self.latencies: list[float] = []
        self.ops = 0
        self.ops_total = 0
        self.errors = 0
        self.error_kinds: collections.Counter[str] = collections.Counter()
        self.reconnects = 0
        self.ops_by_method: collections.Counter[str] = collections.Counter()

    def next_key(self) -> str:
        self.seq += 1
        return f"soak-{self.tag}-{self.seq}"

    def done(self, method: str, latency_s: float | None = None) -> None:
        self.ops += 1
        self.ops_total += 1
        self.ops_by_method[method] += 1
        if latency_s is not None:
            self.interval_latencies.append(latency_s * 1000)
            self.latencies.append(latency_s * 1000)

    def failed(self, method: str, exc: BaseException) -> None:
        self.errors += 1
        code = getattr(exc, "wire_code", "") or type(exc).__name__
        self.error_kinds[f"{method}:{code}"] += 1


async def chat_turn(client: Any, load: Load, session: str, key: str | None = None) -> None:
    resend = key is not None
    key = key or load.next_key()
    started = time.perf_counter()
    method = "chat.resend" if resend else "chat.send"
    try:
        ack = await client.call(
            "chat.send", {"sessionKey": session, "message": MESSAGE, "idempotencyKey": key}
        )
    except GatewayCallError as exc:
        if not resend:
            load.uncertain.add(key)
        load.failed(method, exc)
        return
    if not resend:
        load.sent[key] = session
    waited = await client.call("agent.wait", {"runId": ack.get("runId", key), "timeoutMs": 30_000})
    if waited.get("status") != "ok":
        load.failed(method, RuntimeError(str(waited.get("status"))))
        return
    load.done(method, time.perf_counter() - started)


async def one_op(client: Any, load: Load, sessions: list[str], rng: random.Random, methods: set[str]) -> None:
    roll = rng.random()
    session = rng.choice(sessions)
    if roll < 0.5:
        await chat_turn(client, load, session)
    elif roll < 0.55 and load.sent:
        key = rng.choice(list(load.sent)[-200:])
        await chat_turn(client, load, load.sent[key], key)
    elif roll < 0.7:
        started = time.perf_counter()
        await client.call("sessions.patch", {"key": session, "label": f"{session} {rng.randrange(1000)}"})
        load.done("sessions.patch", time.perf_counter() - started)
    elif roll < 0.8:
        await client.call("sessions.list", {"limit": 50})
        load.done("sessions.list")
    elif roll < 0.9:
        await client.call("health", {})
        load.done("health")
    elif roll < 0.95 and "cron.list" in methods:
        await client.call("cron.list", {})
        load.done("cron.list")
    else:
        await client.call("status", {})
        load.done("status")


async def worker(
    index: int, url: str, token: str | None, load: Load, sessions: list[str], args: argparse.Namespace
) -> None:
    rng = random.Random(args.seed * 1000 + index)
    pause = args.workers / args.rate
    while True:
        try:
            async with open_gateway_client(url, token, client_id="cli") as client:
                methods = set(client.hello.get("features", {}).get("methods", []))
                until = trio.current_time() + args.reconnect_s * (0.5 + rng.random())
                while trio.current_time() < until:
                    began = trio.current_time()
                    try:
                        with trio.fail_after(CALL_TIMEOUT_S):
                            await one_op(client, load, sessions, rng, methods)
                    except (GatewayCallError, trio.TooSlowError) as exc:
                        load.failed("op", exc)
                    await trio.sleep(max(0.0, pause - (trio.current_time() - began)))
        except (GatewayCallError, OSError) as exc:
            load.failed("connect", exc)
            await trio.sleep(1.0)
        load.reconnects += 1


async def status_payload(url: str, token: str | None) -> dict[str, Any] | None:
    try:
        with trio.fail_after(CALL_TIMEOUT_S):
            async with open_gateway_client(url, token, client_id="cli") as client:
                payload = await client.call("status", {})
                return payload if isinstance(payload, dict) else None
    except (GatewayCallError, OSError, trio.TooSlowError):
        return None


def sample_line(
    t: float, pid: int, database: Path | None, load: Load, status: dict[str, Any] | None
) -> dict[str, Any]:
    proc = read_process_sample(pid)
    files = file_sizes(database) if database is not None else {"db": 0, "wal": 0}
    lat = load.interval_latencies
    line: dict[str, Any] = {
        "t": round(t, 2),
        "wall": round(time.time(), 3),
        "alive": proc.alive,
        "rssBytes": proc.rss_bytes,
        "fds": proc.fds,
        "threads": proc.threads,
        "cpuSeconds": round(proc.cpu_ticks / clock_ticks(), 2),
        "dbBytes": files["db"],
        "walBytes": files["wal"],
        "ops": load.ops,
        "opsTotal": load.ops_total,
        "errors": load.errors,
        "reconnects": load.reconnects,
        "p50Ms": _r(percentile(lat, 0.5)),
        "p95Ms": _r(percentile(lat, 0.95)),
        "p99Ms": _r(percentile(lat, 0.99)),
    }
    if status is not None:
        budget = status.get("shutdownBudget", {})
        line["activeRequests"] = budget.get("activeWork", {}).get("rootRequests")
        line["tasksQueued"] = status.get("tasks", {}).get("byStatus", {}).get("queued")
        line["sessions"] = status.get("sessions", {}).get("count")
    load.ops = 0
    load.interval_latencies = []
    return line


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


async def count_history(
    url: str, token: str | None, sessions: list[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """How often each idempotency key appears as a user and as an assistant message, over all sessions."""
    user: collections.Counter[str] = collections.Counter()
    assistant: collections.Counter[str] = collections.Counter()
    async with open_gateway_client(url, token, client_id="cli") as client:
        for session in sessions:
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"sessionKey": session, "limit": 1000}
                if cursor is not None:
                    params["cursor"] = cursor
                with trio.fail_after(CALL_TIMEOUT_S):
                    page = await client.call("chat.history", params)
                for msg in page.get("messages", []):
                    key = str(msg.get("idempotencyKey") or "")
                    base, _, role = key.rpartition(":")
                    if role == "user":
                        user[base] += 1
                    elif role == "assistant":
                        assistant[base] += 1
                cursor = page.get("nextCursor")
                if not page.get("hasMore") or cursor is None:
                    break
    return dict(user), dict(assistant)


async def idle_phase(pid: int, seconds: float) -> dict[str, float]:
    before = read_process_sample(pid)
    await trio.sleep(seconds)
    after = read_process_sample(pid)
    cpu_s = (after.cpu_ticks - before.cpu_ticks) / clock_ticks()
    return {
        "idleSeconds": seconds,
        "idleCpuSecondsPerMinute": round(cpu_s * 60 / seconds, 4) if seconds > 0 else 0.0,
        "idleRssMB": round(after.rss_bytes / 1e6, 2),
    }


async def soak(
    args: argparse.Namespace, url: str, token: str | None, pid: int, database: Path | None, proc: Any
) -> dict[str, Any]:
    out = Path(args.out)
    load = Load(tag=f"{int(time.time())}-{os.getpid()}")
    sessions = [f"agent:main:soak-{i}" for i in range(args.sessions)]
    figures: dict[str, Any] = {}
    if args.idle_s > 0:
        print(f"idle phase: {args.idle_s:.0f} s with no client", flush=True)
        figures.update(await idle_phase(pid, args.idle_s))
    async with open_gateway_client(url, token, client_id="cli") as client:
        for session in sessions:
            await client.call("sessions.patch", {"key": session, "label": f"{session} soak"})
            await chat_turn(client, load, session)
    figures["liveSessions"] = len(sessions)
    figures["rssWithSessionsMB"] = round(read_process_sample(pid).rss_bytes / 1e6, 2)

    samples: list[dict[str, Any]] = []
    crashed: str | None = None
    started = time.monotonic()
    print(
        f"load phase: {args.duration_s:.0f} s, {args.workers} workers, ~{args.rate} ops/s, samples every {args.interval} s",
        flush=True,
    )
    with (out / "samples.jsonl").open("w") as fh:
        async with trio.open_nursery() as nursery:
            for index in range(args.workers):
                nursery.start_soon(worker, index, url, token, load, sessions, args)
            deadline = started + args.duration_s
            while True:
                await trio.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))
                status = await status_payload(url, token)
                line = sample_line(time.monotonic() - started, pid, database, load, status)
                samples.append(line)
                fh.write(json.dumps(line, sort_keys=True) + "\n")
                fh.flush()
                if args.verbose:
                    print(json.dumps(line), flush=True)
                if proc is not None and proc.poll() is not None:
                    crashed = f"exited with {proc.returncode}"
                elif not line["alive"]:
                    crashed = "process gone"
                if crashed or time.monotonic() >= deadline - 0.01:
                    break
            nursery.cancel_scope.cancel()

    accounted = len(load.sent)
    accounting: dict[str, list[str]] = {"lost": [], "duplicated": [], "unknown": []}
    if crashed is None:
        with trio.fail_after(max(60.0, accounted / 50)):
            user, assistant = await count_history(url, token, sessions)
        for seen in (user, assistant):
            for name, keys in account(
                load.sent, {k: v for k, v in seen.items() if k.startswith("soak-" + load.tag)}
            ).items():
                accounting[name] = sorted(set(accounting[name]) | set(keys))
        # a failed send may or may not have landed: it must not appear twice, but it may be missing
        for key in load.uncertain:
            if user.get(key, 0) > 1 or assistant.get(key, 0) > 1:
                accounting["duplicated"].append(key)
        accounting["unknown"] = [k for k in accounting["unknown"] if k not in load.uncertain]
    limits = Limits(
        rss_slope_mb_per_h=args.rss_slope_limit,
        wal_max_mb=args.wal_max_mb,
        warmup_s=args.warmup_s,
        rss_noise_mb=args.rss_noise_mb,
        max_error_rate=args.max_error_rate,
    )
    checks = judge(
        samples,
        limits=limits,
        crashed=crashed,
        accounting=accounting,
        accounted=accounted,
        ops=load.ops_total,
        errors=load.errors,
    )
    lat = load.latencies
    summary: dict[str, Any] = {
        "durationS": round(time.monotonic() - started, 1),
        "figures": figures,
        "ops": load.ops_total,
        "opsByMethod": dict(load.ops_by_method),
        "messagesAccounted": accounted,
        "uncertainSends": len(load.uncertain),
        "errors": load.errors,
        "errorKinds": dict(load.error_kinds),
        "reconnects": load.reconnects,
        "latencyMs": {
            "p50": _r(percentile(lat, 0.5)),
            "p95": _r(percentile(lat, 0.95)),
            "p99": _r(percentile(lat, 0.99)),
        },
        "rssMB": {
            "first": round(samples[0]["rssBytes"] / 1e6, 2) if samples else None,
            "last": round(samples[-1]["rssBytes"] / 1e6, 2) if samples else None,
            "max": round(max(s["rssBytes"] for s in samples) / 1e6, 2) if samples else None,
        },
        "walMaxMB": round(max((s["walBytes"] for s in samples), default=0) / 1e6, 2),
        "checks": [
            {"name": c.name, "passed": c.passed, "figure": c.figure, "limit": c.limit, "detail": c.detail}
            for c in checks
        ],
        "passed": all(c.passed for c in checks),
    }
    write_plot(out, samples)
    return summary


def write_plot(out: Path, samples: list[dict[str, Any]]) -> None:
    if not samples:
        return
    xs = [s["t"] / 60 for s in samples]
    series = [
        ("RSS (MB)", [s["rssBytes"] / 1e6 for s in samples]),
        ("open FDs", [float(s["fds"]) for s in samples]),
        ("WAL (MB)", [s["walBytes"] / 1e6 for s in samples]),
        ("turn latency p99 (ms)", [float(s["p99Ms"] or 0) for s in samples]),
        ("ops per interval", [float(s["ops"]) for s in samples]),
    ]
    (out / "plot.svg").write_text(line_chart("appliance soak", xs, series))
    try:  # optional: a PNG as well when matplotlib is around (not a dependency)
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        plt: Any = importlib.import_module("matplotlib.pyplot")
    except ImportError:
        return
    fig, axes = plt.subplots(len(series), 1, figsize=(8, 2 * len(series)), sharex=True)
    for ax, (label, ys) in zip(axes, series, strict=True):
        ax.plot(xs, ys)
        ax.set_ylabel(label, fontsize=8)
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(out / "plot.png", dpi=100)


def print_summary(summary: dict[str, Any]) -> None:
    f = summary["figures"]
    print("")
    print(
        f"soak {'PASSED' if summary['passed'] else 'FAILED'} after {summary['durationS']} s: {summary['ops']} ops, "
        f"{summary['messagesAccounted']} messages, {summary['errors']} errors, {summary['reconnects']} reconnects"
    )
    if "idleCpuSecondsPerMinute" in f:
        print(f"  idle CPU        {f['idleCpuSecondsPerMinute']} s/min   (target <= 0.2)")
        print(f"  idle RSS        {f['idleRssMB']} MB        (target <= 32 frozen)")
    print(
        f"  RSS, {f['liveSessions']} sessions {f['rssWithSessionsMB']} MB   (target <= 60 with 20 live sessions)"
    )
    lat = summary["latencyMs"]
    print(f"  turn latency    p50 {lat['p50']} ms  p95 {lat['p95']} ms  p99 {lat['p99']} ms")
    print(
        f"  RSS             first {summary['rssMB']['first']} MB  last {summary['rssMB']['last']} MB  max {summary['rssMB']['max']} MB"
    )
    for check in summary["checks"]:
        mark = "ok  " if check["passed"] else "FAIL"
        detail = f"  ({check['detail']})" if check["detail"] else ""
        print(f"  [{mark}] {check['name']}: {check['figure']} (limit {check['limit']}){detail}")
    if summary["errorKinds"]:
        print(f"  errors by kind: {summary['errorKinds']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", default="10m", help="load phase length: 45s, 10m, 24h (default 10m)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--idle-s", type=float, default=60.0, help="idle phase before the load (0 skips)")
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="samples before this are not in the slope (default half the run, at most 10 min)",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="target operations per second, all workers")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument(
        "--reconnect-s", type=float, default=60.0, help="mean seconds a client stays connected"
    )
    parser.add_argument("--rss-slope-limit", type=float, default=1.0, help="MB per hour")
    parser.add_argument("--wal-max-mb", type=float, default=64.0)
    parser.add_argument("--rss-noise-mb", type=float, default=1.0, help="fitted growth below this is noise")
    parser.add_argument("--max-error-rate", type=float, default=0.01, help="failed ops / all ops")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=None, help="results dir (default soak/results/<UTC time>)")
    parser.add_argument("--url", help="attach to this gateway instead of spawning one")
    parser.add_argument("--token", default=os.environ.get("APPLIANCE_GATEWAY_TOKEN"))
    parser.add_argument("--token-file")
    parser.add_argument("--pid", type=int, help="with --url: the gateway's pid (for RSS/FD/CPU)")
    parser.add_argument("--data-dir", help="with --url: the data dir (for DB/WAL sizes)")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra argument for the spawned serve"
    )
    parser.add_argument(
        "--exe", help="the appliance executable to spawn (e.g. dist/appliance/appliance); default: the venv's"
    )
    parser.add_argument("--verbose", action="store_true", help="print every sample")
    args = parser.parse_args(argv)
    args.duration_s = parse_duration(args.duration)
    if args.warmup_s is None:
        # SQLite's page cache (2 MB by default) fills while the database grows past it: on a 10-minute
        # run that takes ~5 minutes and is bounded, so it is warm-up, not a leak
        args.warmup_s = min(600.0, 0.5 * args.duration_s)
    args.out = args.out or str(HERE / "results" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))

    Path(args.out).mkdir(parents=True, exist_ok=True)
    # SIGTERM (systemd stop, CI timeout) unwinds like Ctrl-C, so the spawned serve is stopped too
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    proc = serve = None
    if args.url:
        token = Path(args.token_file).expanduser().read_text().strip() if args.token_file else args.token
        if args.pid is None:
            parser.error("--url needs --pid (the gateway's process id)")
        url, pid = args.url, args.pid
        database = Path(args.data_dir).expanduser() / "appliance.sqlite3" if args.data_dir else None
    else:
        from appliance.testing.process import start_serve

        tmp = Path(tempfile.mkdtemp(prefix="appliance-soak-"))
        serve = start_serve(tmp / "data", extra_args=args.serve_arg, exe=args.exe)
        proc, url, token, pid = serve.proc, serve.url, serve.token, serve.proc.pid
        database = tmp / "data" / "appliance.sqlite3"
        print(f"spawned appliance serve pid {pid} on {url} (data {tmp / 'data'})", flush=True)
    try:
        summary = trio.run(soak, args, url, token, pid, database, proc)
    finally:
        if serve is not None:
            code = serve.terminate()
            print(f"serve stopped with exit code {code}", flush=True)
    if serve is not None:
        summary["serveExitCode"] = code
        if code != 0:
            summary["passed"] = False
            summary["checks"].append(
                {
                    "name": "graceful stop",
                    "passed": False,
                    "figure": code,
                    "limit": 0,
                    "detail": serve.log_text()[-500:],
                }
            )
    Path(args.out, "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    print_summary(summary)
    print(f"  results in {args.out} (samples.jsonl, summary.json, plot.svg)")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
