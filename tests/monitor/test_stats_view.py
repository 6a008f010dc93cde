"""The stats document (pure builder) and the monitor frame rendered from it."""

from __future__ import annotations

import io
from typing import Any

from appliance.monitor.sample import HostSample, ProcessSample
from appliance.monitor.stats import build_stats, recent_verdicts
from appliance.monitor.view import human_bytes, render_frame, run_view

STATUS: dict[str, Any] = {
    "shutdownBudget": {"activeWork": {"rootRequests": 2}},
    "tasks": {"active": 1, "total": 5, "byStatus": {"queued": 3, "running": 1}},
    "sessions": {"count": 20, "recent": [{"key": "agent:main:a", "age": 4000}]},
    "eventLoop": {"delayP99Ms": 3.5, "delayMaxMs": 9.0, "degraded": True},
}


def _doc(status: dict[str, Any] | None = STATUS) -> dict[str, Any]:
    return build_stats(
        now_s=1000.0,
        seconds=2.0,
        proc_prev=ProcessSample(pid=7, cpu_ticks=100, read_bytes=0, start_ticks=1),
        proc_cur=ProcessSample(
            pid=7, cpu_ticks=120, rss_bytes=30 * 2**20, fds=12, threads=2, read_bytes=4096, start_ticks=1
        ),
        host_prev=HostSample(cpu_total=100, cpu_idle=50),
        host_cur=HostSample(cpu_total=200, cpu_idle=125, cores=4, load1=0.5, mem_total_bytes=2**30),
        files={"db": 8192, "wal": 4096},
        run_state={"pid": 7, "port": 18789},
        status=status,
        ready={"ready": True, "uptimeMs": 5000},
    )


def test_document_shape() -> None:
    doc = _doc()
    assert doc["running"] is True
    assert doc["process"] == {
        "rssBytes": 30 * 2**20,
        "peakRssBytes": 0,
        "threads": 2,
        "fds": 12,
        "cpuSeconds": 1.2,
        "cpuPercent": 10.0,
        "readBytes": 4096,
        "writeBytes": 0,
        "readBps": 2048,
        "writeBps": 0,
    }
    assert doc["host"]["cpuPercent"] == 25.0
    assert doc["store"] == {"dbBytes": 8192, "walBytes": 4096}
    gw = doc["gateway"]
    assert gw["reachable"] is True
    assert gw["activeRequests"] == 2
    assert (gw["queued"], gw["running"], gw["sessions"]) == (3, 1, 20)
    assert gw["lastTurn"] == {"key": "agent:main:a", "ageMs": 4000}


def test_not_running_has_no_process_and_unreachable_gateway() -> None:
    doc = build_stats(
        now_s=0.0,
        seconds=1.0,
        proc_prev=None,
        proc_cur=ProcessSample(pid=9, alive=False),
        host_prev=HostSample(),
        host_cur=HostSample(),
        files={},
        run_state=None,
        status=None,
        ready=None,
    )
    assert doc["running"] is False
    assert doc["process"] is None
    assert doc["gateway"] == {"reachable": False}
    lines = render_frame(doc)
    assert "gateway   not running" in lines
    assert "status    unreachable" in lines


def test_frame_text() -> None:
    text = "\n".join(render_frame(_doc(), clock="12:00:00"))
    assert "pid 7  port 18789" in text
    assert "rss 30.0 MiB" in text
    assert "cpu 10.0%" in text
    assert "queued 3  running 1  sessions 20" in text
    assert "DEGRADED" in text
    assert "last turn agent:main:a (4 s ago)" in text
    assert "\x1b" not in text


def test_once_prints_one_frame_without_escape_codes() -> None:
    out = io.StringIO()
    calls = []

    def sample() -> dict[str, Any]:
        calls.append(1)
        return _doc()

    assert run_view(sample, once=True, out=out) == 0
    assert len(calls) == 1
    assert "appliance monitor" in out.getvalue()
    assert "\x1b" not in out.getvalue()


def test_human_bytes() -> None:
    assert human_bytes(None) == "-"
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 2**30) == "3.0 GiB"


def test_recent_verdicts_from_a_ledger_tail() -> None:
    tail = 'n": 1}\n' + "\n".join(
        [
            '{"verdict": "review", "kind": "prompt", "score": 0.61}',
            '{"verdict": "block", "kind": "command", "score": 0.93}',
            "[1, 2]",
        ]
    )
    assert recent_verdicts(tail) == ["review prompt 0.61", "block command 0.93"]
    assert recent_verdicts(tail, limit=1) == ["block command 0.93"]
    doc = {**_doc(), "verdicts": recent_verdicts(tail)}
    assert "verdicts  review prompt 0.61  block command 0.93" in render_frame(doc)
