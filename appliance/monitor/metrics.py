"""Prometheus text exposition (format 0.0.4) of the stats document; sans-IO.

Rules: names are ``appliance_*`` with base units (bytes, seconds); counters end in ``_total``; every family
has ``# HELP`` and ``# TYPE`` once; label values are escaped (backslash, quote, newline); a figure the
document lacks is left out, never written as 0, so a dashboard can tell "unknown" from "zero".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

__all__ = ["CONTENT_TYPE", "Metric", "metrics_from_stats", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@attrs.frozen
class Metric:
    name: str
    kind: str  # "gauge" | "counter"
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def render_metrics(metrics: Iterable[Metric]) -> str:
    """The exposition text; samples of one family are grouped under one HELP/TYPE header."""
    families: dict[str, list[Metric]] = {}
    for metric in metrics:
        families.setdefault(metric.name, []).append(metric)
    lines: list[str] = []
    for name, items in families.items():
        lines.append(f"# HELP {name} {items[0].help}")
        lines.append(f"# TYPE {name} {items[0].kind}")
        for item in items:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in item.labels)
            lines.append(
                f"{name}{{{labels}}} {_number(item.value)}" if labels else f"{name} {_number(item.value)}"
            )
    return "\n".join(lines) + "\n"


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


_PROCESS = (
    ("rssBytes", "appliance_process_resident_memory_bytes", "gauge", "Resident set size of the gateway."),
    ("peakRssBytes", "appliance_process_resident_memory_peak_bytes", "gauge", "Peak RSS (VmHWM)."),
    ("threads", "appliance_process_threads", "gauge", "OS threads of the gateway process."),
    ("fds", "appliance_process_open_fds", "gauge", "Open file descriptors of the gateway process."),
    ("cpuSeconds", "appliance_process_cpu_seconds_total", "counter", "User+system CPU time of the gateway."),
    ("readBytes", "appliance_process_read_bytes_total", "counter", "Bytes the gateway read from storage."),
    ("writeBytes", "appliance_process_write_bytes_total", "counter", "Bytes the gateway wrote to storage."),
)
_HOST = (
    ("load1", "appliance_host_load1", "gauge", "Host load average over 1 minute."),
    ("cores", "appliance_host_cpu_cores", "gauge", "Online CPU cores of the host."),
    ("memTotalBytes", "appliance_host_memory_total_bytes", "gauge", "Host memory."),
    ("memAvailableBytes", "appliance_host_memory_available_bytes", "gauge", "Host memory available."),
    ("diskTotalBytes", "appliance_host_disk_total_bytes", "gauge", "Size of the data dir's filesystem."),
    ("diskFreeBytes", "appliance_host_disk_free_bytes", "gauge", "Free space on the data dir's filesystem."),
)
_GATEWAY = (
    ("activeRequests", "appliance_gateway_active_requests", "gauge", "Requests being handled now."),
    ("connections", "appliance_gateway_connections", "gauge", "Authenticated WebSocket connections."),
    ("sessions", "appliance_sessions", "gauge", "Sessions in the store."),
    ("queued", "appliance_tasks_queued", "gauge", "Tasks waiting to run."),
    ("running", "appliance_tasks_running", "gauge", "Tasks running now."),
)


def metrics_from_stats(doc: Mapping[str, Any]) -> list[Metric]:
    """The metric families of one stats document (see :mod:`appliance.monitor.stats`)."""
    out: list[Metric] = [
        Metric(
            "appliance_up", "gauge", "1 when the gateway process is alive.", float(bool(doc.get("running")))
        )
    ]
    for section, table in (("process", _PROCESS), ("host", _HOST), ("gateway", _GATEWAY)):
        part = doc.get(section)
        if not isinstance(part, Mapping):
            continue
        for key, name, kind, text in table:
            value = _num(part.get(key))
            if value is not None:
                out.append(Metric(name, kind, text, value))
    store = doc.get("store")
    if isinstance(store, Mapping):
        for key, file in (("dbBytes", "db"), ("walBytes", "wal")):
            value = _num(store.get(key))
            if value is not None:
                out.append(
                    Metric(
                        "appliance_store_file_bytes", "gauge", "SQLite file sizes.", value, (("file", file),)
                    )
                )
    gateway = doc.get("gateway")
    if isinstance(gateway, Mapping):
        uptime = _num(gateway.get("uptimeMs"))
        if uptime is not None:
            out.append(
                Metric(
                    "appliance_uptime_seconds", "gauge", "Seconds since the gateway started.", uptime / 1000
                )
            )
        loop = gateway.get("eventLoop")
        if isinstance(loop, Mapping):
            for key, name, text in (
                ("delayP99Ms", "appliance_event_loop_delay_p99_seconds", "Event-loop delay, p99."),
                ("delayMaxMs", "appliance_event_loop_delay_max_seconds", "Event-loop delay, max."),
            ):
                value = _num(loop.get(key))
                if value is not None:
                    out.append(Metric(name, "gauge", text, value / 1000))
            value = _num(loop.get("degraded"))
            if value is not None:
                out.append(Metric("appliance_event_loop_degraded", "gauge", "1 while the loop lags.", value))
    return out
