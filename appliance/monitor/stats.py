"""The stats document shared by ``appliance stats --json``, the monitor view and ``/metrics``.

:func:`build_stats` is pure (samples and the gateway's ``status``/``/ready`` answers in, one JSON-able
dict out). :func:`collect_stats` is the shell: it finds the running appliance from its run-state file,
samples ``/proc`` twice ``interval_s`` apart, asks the gateway for ``status`` over loopback and builds the
document. Rules: the document never holds a secret (no token, no path of a key file); a gateway that is
down or slow is reported as ``gateway.reachable = false``, not as an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.monitor.sample import (
    HostSample,
    ProcessSample,
    clock_ticks,
    cpu_percent,
    host_cpu_percent,
    rate,
    read_host_sample,
    read_process_sample,
)
from appliance.runtime import probe_ready

__all__ = ["build_stats", "collect_stats", "file_sizes", "read_token", "recent_verdicts"]

STATUS_TIMEOUT_S = 3.0


def build_stats(
    *,
    now_s: float,
    seconds: float,
    proc_prev: ProcessSample | None,
    proc_cur: ProcessSample | None,
    host_prev: HostSample,
    host_cur: HostSample,
    files: Mapping[str, int],
    run_state: Mapping[str, Any] | None,
    status: Mapping[str, Any] | None,
    ready: Mapping[str, Any] | None,
    clk_tck: int = 100,
) -> dict[str, Any]:
    """One stats document (see ``tests/monitor/test_stats.py`` for its shape)."""
    doc: dict[str, Any] = {
        "time": round(now_s, 3),
        "running": bool(run_state) and bool(proc_cur and proc_cur.alive),
        "pid": run_state.get("pid") if run_state else None,
        "port": run_state.get("port") if run_state else None,
    }
    if proc_cur is not None and proc_cur.alive:
        prev = proc_prev if proc_prev is not None and proc_prev.alive else proc_cur
        doc["process"] = {
            "rssBytes": proc_cur.rss_bytes,
            "peakRssBytes": proc_cur.peak_rss_bytes,
            "threads": proc_cur.threads,
            "fds": proc_cur.fds,
            "cpuSeconds": round(proc_cur.cpu_ticks / clk_tck, 2),
            "cpuPercent": round(cpu_percent(prev, proc_cur, seconds, clk_tck), 1),
            "readBytes": proc_cur.read_bytes,
            "writeBytes": proc_cur.write_bytes,
            "readBps": round(rate(prev.read_bytes, proc_cur.read_bytes, seconds)),
            "writeBps": round(rate(prev.write_bytes, proc_cur.write_bytes, seconds)),
        }
    else:
        doc["process"] = None
    doc["host"] = {
        "cores": host_cur.cores,
        "load1": host_cur.load1,
        "load5": host_cur.load5,
        "load15": host_cur.load15,
        "cpuPercent": round(host_cpu_percent(host_prev, host_cur), 1),
        "memTotalBytes": host_cur.mem_total_bytes,
        "memAvailableBytes": host_cur.mem_available_bytes,
        "diskTotalBytes": host_cur.disk_total_bytes,
        "diskFreeBytes": host_cur.disk_free_bytes,
    }
    doc["store"] = {"dbBytes": int(files.get("db", 0)), "walBytes": int(files.get("wal", 0))}
    doc["gateway"] = _gateway_part(status, ready)
    return doc


def _gateway_part(status: Mapping[str, Any] | None, ready: Mapping[str, Any] | None) -> dict[str, Any]:
    part: dict[str, Any] = {"reachable": status is not None or ready is not None}
    if ready is not None:
        part["ready"] = bool(ready.get("ready"))
        part["uptimeMs"] = ready.get("uptimeMs")
        if isinstance(ready.get("eventLoop"), Mapping):
            part["eventLoop"] = dict(ready["eventLoop"])
    if status is None:
        return part
    budget = status.get("shutdownBudget")
    active = budget.get("activeWork", {}) if isinstance(budget, Mapping) else {}
    part["activeRequests"] = active.get("rootRequests", 0) if isinstance(active, Mapping) else 0
    tasks = status.get("tasks")
    if isinstance(tasks, Mapping):
        part["tasks"] = {"active": tasks.get("active", 0), "total": tasks.get("total", 0)}
        by_status = tasks.get("byStatus")
        if isinstance(by_status, Mapping):
            part["queued"] = by_status.get("queued", 0)
            part["running"] = by_status.get("running", 0)
    sessions = status.get("sessions")
    if isinstance(sessions, Mapping):
        part["sessions"] = sessions.get("count", 0)
        recent = sessions.get("recent")
        if isinstance(recent, list) and recent:
            first = recent[0]
            if isinstance(first, Mapping):
                part["lastTurn"] = {"key": first.get("key"), "ageMs": first.get("age")}
    if isinstance(status.get("eventLoop"), Mapping):
        part["eventLoop"] = dict(status["eventLoop"])
    workers = status.get("workerPools")
    if isinstance(workers, Mapping) and workers:
        part["workerPools"] = dict(workers)
    return part


def recent_verdicts(ledger_tail: str, limit: int = 5) -> list[str]:
    """The last ``limit`` quarantine-ledger entries as short strings (``block prompt 0.93``), newest last."""
    out: list[str] = []
    for line in ledger_tail.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn first line of the tail, or a crash mid-write
        if not isinstance(entry, dict):
            continue
        verdict = entry.get("verdict") or entry.get("would_be") or "?"
        score = entry.get("score")
        text = f"{verdict} {entry.get('kind', '')}".strip()
        if isinstance(score, int | float):
            text += f" {score:.2f}"
        out.append(text)
    return out[-limit:]


# ---- shell -------------------------------------------------------------------------------------------


def file_sizes(database: Path) -> dict[str, int]:
    """Sizes of the SQLite database and its WAL (0 when absent)."""
    out = {}
    for key, path in (("db", database), ("wal", database.with_name(database.name + "-wal"))):
        try:
            out[key] = path.stat().st_size
        except OSError:
            out[key] = 0
    return out


def read_token(settings: Any, token_file: Path) -> str | None:
    """The gateway token the CLI should present, without generating one (that is ``serve``'s job)."""
    token = str(settings.gateway.token or "")
    if token:
        return token
    try:
        return token_file.read_text().strip() or None
    except OSError:
        return None


def fetch_status(port: int, token: str | None) -> dict[str, Any] | None:
    """``status`` over the gateway (loopback, read scope); None when it cannot be had in time."""
    import trio

    from appliance.gateway.client import open_gateway_client

    async def ask() -> dict[str, Any] | None:
        with trio.move_on_after(STATUS_TIMEOUT_S):
            async with open_gateway_client(f"ws://127.0.0.1:{port}", token, client_id="cli") as client:
                result = await client.call("status", {})
                return result if isinstance(result, dict) else None
        return None

    try:
        return trio.run(ask)
    except Exception:  # the gateway is down, refused us or answered garbage: the view shows "unreachable"
        return None


def collect_stats(
    *,
    database: Path,
    data_dir: Path,
    run_state: Mapping[str, Any] | None,
    token: str | None,
    interval_s: float = 0.5,
    with_status: bool = True,
    prev: tuple[ProcessSample | None, HostSample, float] | None = None,
) -> tuple[dict[str, Any], tuple[ProcessSample | None, HostSample, float]]:
    """Sample now (against ``prev``, or against a sample taken ``interval_s`` ago) and build the document.

    Returns the document and the samples to pass as ``prev`` next time (the live view does that).
    """
    pid = run_state.get("pid") if run_state else None
    port = run_state.get("port") if run_state else None
    if prev is None:
        first = read_process_sample(pid) if isinstance(pid, int) else None
        host0 = read_host_sample(data_dir if data_dir.exists() else "/")
        t0 = time.monotonic()
        time.sleep(interval_s)
        prev = (first, host0, t0)
    cur = read_process_sample(pid) if isinstance(pid, int) else None
    host = read_host_sample(data_dir if data_dir.exists() else "/")
    t1 = time.monotonic()
    ready = status = None
    if isinstance(port, int):
        ready = probe_ready(port)
        if with_status and ready is not None:
            status = fetch_status(port, token)
    verdicts = _ledger_verdicts(data_dir / "defender" / "quarantine.jsonl")
    doc = build_stats(
        now_s=time.time(),
        seconds=t1 - prev[2],
        proc_prev=prev[0],
        proc_cur=cur,
        host_prev=prev[1],
        host_cur=host,
        files=file_sizes(database),
        run_state=run_state,
        status=status,
        ready=ready,
        clk_tck=clock_ticks(),
    )
    if verdicts:
        doc["verdicts"] = verdicts
    return doc, (cur, host, t1)


def _ledger_verdicts(path: Path, tail_bytes: int = 16_384) -> list[str]:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - tail_bytes))
            return recent_verdicts(fh.read().decode("utf-8", "replace"))
    except OSError:
        return []
