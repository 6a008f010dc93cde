"""A ~50 s soak against a real ``appliance serve`` on loopback, judged by the harness itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_short_soak_passes(tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(ROOT / "soak" / "run.py"),
        "--duration",
        "40s",
        "--interval",
        "5",
        "--idle-s",
        "5",
        "--reconnect-s",
        "8",
        "--rate",
        "8",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    checks = {c["name"]: c for c in summary["checks"]}
    assert set(checks) >= {
        "no crash",
        "progress every interval",
        "RSS slope (MB/h)",
        "WAL bounded (MB)",
        "0 lost / duplicated",
    }
    assert all(c["passed"] for c in checks.values()), checks
    assert summary["messagesAccounted"] > 20
    assert summary["reconnects"] >= 1
    assert summary["serveExitCode"] == 0
    lines = (out / "samples.jsonl").read_text().splitlines()
    assert len(lines) >= 7
    first = json.loads(lines[0])
    assert {
        "t",
        "rssBytes",
        "fds",
        "threads",
        "dbBytes",
        "walBytes",
        "p99Ms",
        "errors",
        "activeRequests",
    } <= set(first)
    assert (out / "plot.svg").read_text().startswith("<svg")
    assert "soak PASSED" in done.stdout
