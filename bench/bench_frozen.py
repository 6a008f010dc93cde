"""Frozen-bundle benchmark: ``version`` cold start, ``serve`` to first ``/health``, bundle and archive size.

Targets (issue 7, onedir on the 2-core build box): ``version`` median <= 0.35 s, ``serve`` to first
``health`` <= 0.5 s. Prints figures only; it asserts nothing.

    image/build-bundle.sh && .venv/bin/python bench/bench_frozen.py [--bundle dist/appliance] [--runs 15]
    --drop-caches   also measure with the page cache dropped before each run (root only)
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update({"APPLIANCE_DATA_DIR": str(data), "APPLIANCE_GATEWAY_TOKEN": TOKEN, "HOME": str(data)})
    return env


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def time_version(exe: Path, runs: int, data: Path, *, cold: bool) -> list[float]:
    times = []
    env = clean_env(data)
    for _ in range(runs):
        if cold:
            drop_caches()
        start = time.perf_counter()
        subprocess.run([str(exe), "version"], env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def health_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def time_serve(exe: Path, runs: int, base: Path) -> list[float]:
    times = []
    for i in range(runs):
        data = base / f"serve-{i}"
        data.mkdir()
        port = free_port()
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--data-dir", str(data)],
            env=clean_env(data),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = start + 30
            while not health_ok(port):
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise SystemExit(f"serve did not answer /health (exit {proc.poll()})")
                time.sleep(0.005)
            times.append(time.perf_counter() - start)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return times


def tree_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(p.stat().st_size for p in files), len(files)


def fmt(times: list[float]) -> str:
    ordered = sorted(times)
    return (
        f"median {statistics.median(ordered) * 1000:.0f} ms  (min {ordered[0] * 1000:.0f}, "
        f"max {ordered[-1] * 1000:.0f}, n={len(ordered)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bundle", default=str(ROOT / "dist" / "appliance"))
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--serve-runs", type=int, default=7)
    parser.add_argument("--drop-caches", action="store_true")
    args = parser.parse_args()
    bundle = Path(args.bundle)
    exe = bundle / "appliance"
    if not exe.exists():
        raise SystemExit(f"no frozen bundle at {bundle}: run image/build-bundle.sh first")

    size, count = tree_size(bundle)
    print(f"bundle {bundle}: {size / 1e6:.1f} MB in {count} files")
    for archive in sorted(bundle.parent.glob("appliance-*.tar.zst")) + sorted(
        bundle.parent.glob("*.oci.tar")
    ):
        print(f"  {archive.name}: {archive.stat().st_size / 1e6:.1f} MB")

    with tempfile.TemporaryDirectory(prefix="bench-frozen-") as tmp:
        base = Path(tmp)
        time_version(exe, 2, base, cold=False)  # warm the page cache once
        print(f"frozen `version`, warm cache:   {fmt(time_version(exe, args.runs, base, cold=False))}")
        if args.drop_caches:
            print(f"frozen `version`, caches dropped: {fmt(time_version(exe, args.runs, base, cold=True))}")
        print(f"frozen `serve` -> first /health: {fmt(time_serve(exe, args.serve_runs, base))}")
    print("targets: version median <= 350 ms, serve to first health <= 500 ms")


if __name__ == "__main__":
    main()
