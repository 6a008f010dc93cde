"""Process and host figures from ``/proc``: pure parsers over file texts, plus a thin reader.

Rules: every ``parse_*`` function takes the text of one procfs file and returns numbers; they import no
trio and call no clock and no ``os``, so tests feed them fixture texts. Rates (CPU%, I/O per second) come
from two samples and the seconds between them (:func:`cpu_percent`, :func:`rate`), never from a clock here.
The ``read_*`` functions at the bottom are the shell: they read the files and hand the texts over.
A missing or unreadable file gives zeros/None, not an exception: a monitor must keep drawing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

__all__ = [
    "HostSample",
    "ProcessSample",
    "clock_ticks",
    "cpu_percent",
    "host_cpu_percent",
    "parse_diskstats_free",
    "parse_host_stat",
    "parse_loadavg",
    "parse_meminfo",
    "parse_proc_io",
    "parse_proc_stat",
    "parse_proc_status",
    "rate",
    "read_host_sample",
    "read_process_sample",
]


@attrs.frozen
class ProcessSample:
    """One process at one instant. CPU is in clock ticks (``cpu_ticks``), memory in bytes."""

    pid: int
    alive: bool = True
    rss_bytes: int = 0
    peak_rss_bytes: int = 0
    threads: int = 0
    fds: int = 0
    cpu_ticks: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    start_ticks: int = 0


@attrs.frozen
class HostSample:
    """The host at one instant. ``cpu_total``/``cpu_idle`` are jiffies summed over all CPUs."""

    load1: float = 0.0
    load5: float = 0.0
    load15: float = 0.0
    mem_total_bytes: int = 0
    mem_available_bytes: int = 0
    cpu_total: int = 0
    cpu_idle: int = 0
    disk_total_bytes: int = 0
    disk_free_bytes: int = 0
    cores: int = 1


def _kv_kb(text: str) -> dict[str, int]:
    """``Name:  123 kB`` lines -> {name: 123}; lines that do not parse are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[name.strip()] = int(fields[0])
    return out


def parse_proc_status(text: str) -> dict[str, int]:
    """``/proc/PID/status`` -> ``rss_bytes``, ``peak_rss_bytes``, ``threads``."""
    kv = _kv_kb(text)
    return {
        "rss_bytes": kv.get("VmRSS", 0) * 1024,
        "peak_rss_bytes": kv.get("VmHWM", 0) * 1024,
        "threads": kv.get("Threads", 0),
    }


def parse_proc_stat(text: str) -> dict[str, int]:
    """``/proc/PID/stat`` -> ``cpu_ticks`` (utime+stime), ``threads``, ``start_ticks``.

    The command name (field 2) may hold spaces and parentheses, so fields are counted after the last ``)``.
    """
    _, sep, tail = text.rpartition(")")
    if not sep:
        return {"cpu_ticks": 0, "threads": 0, "start_ticks": 0}
    fields = tail.split()
    # tail[0] is field 3 (state); utime=14, stime=15, num_threads=20, starttime=22 (1-based, man 5 proc)
    try:
        return {
            "cpu_ticks": int(fields[11]) + int(fields[12]),
            "threads": int(fields[17]),
            "start_ticks": int(fields[19]),
        }
    except (IndexError, ValueError):
        return {"cpu_ticks": 0, "threads": 0, "start_ticks": 0}


def parse_proc_io(text: str) -> dict[str, int]:
    """``/proc/PID/io`` -> ``read_bytes``/``write_bytes`` (storage), falling back to rchar/wchar."""
    kv = _kv_kb(text)
    return {
        "read_bytes": kv.get("read_bytes", kv.get("rchar", 0)),
        "write_bytes": kv.get("write_bytes", kv.get("wchar", 0)),
    }


def parse_loadavg(text: str) -> tuple[float, float, float]:
    parts = text.split()
    try:
        return float(parts[0]), float(parts[1]), float(parts[2])
    except (IndexError, ValueError):
        return 0.0, 0.0, 0.0


def parse_meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` -> ``mem_total_bytes``, ``mem_available_bytes`` (MemFree+Cached on old kernels)."""
    kv = _kv_kb(text)
    available = kv.get("MemAvailable")
    if available is None:
        available = kv.get("MemFree", 0) + kv.get("Cached", 0)
    return {"mem_total_bytes": kv.get("MemTotal", 0) * 1024, "mem_available_bytes": available * 1024}


def parse_host_stat(text: str) -> dict[str, int]:
    """``/proc/stat`` -> ``cpu_total``/``cpu_idle`` jiffies (idle includes iowait) and ``cores``."""
    total = idle = cores = 0
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:] if v.isdigit()]
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
            total = sum(values[:8])
            idle = sum(values[3:5])
        elif line.startswith("cpu") and line[3:4].isdigit():
            cores += 1
    return {"cpu_total": total, "cpu_idle": idle, "cores": max(1, cores)}


def parse_diskstats_free(f_frsize: int, f_blocks: int, f_bavail: int) -> dict[str, int]:
    """statvfs numbers -> ``disk_total_bytes``/``disk_free_bytes`` (free to unprivileged users)."""
    return {"disk_total_bytes": f_frsize * f_blocks, "disk_free_bytes": f_frsize * f_bavail}


def cpu_percent(prev: ProcessSample, cur: ProcessSample, seconds: float, clk_tck: int = 100) -> float:
    """Process CPU over the interval as % of one core (200 % = two cores busy)."""
    if seconds <= 0 or cur.cpu_ticks < prev.cpu_ticks or cur.start_ticks != prev.start_ticks:
        return 0.0
    return 100.0 * (cur.cpu_ticks - prev.cpu_ticks) / clk_tck / seconds


def host_cpu_percent(prev: HostSample, cur: HostSample) -> float:
    """Host CPU busy share over the interval, 0-100 over all cores."""
    total = cur.cpu_total - prev.cpu_total
    if total <= 0:
        return 0.0
    busy = total - (cur.cpu_idle - prev.cpu_idle)
    return max(0.0, min(100.0, 100.0 * busy / total))


def rate(prev: int, cur: int, seconds: float) -> float:
    """A counter's increase per second; a reset (counter went down) reads as 0."""
    if seconds <= 0 or cur < prev:
        return 0.0
    return (cur - prev) / seconds


# ---- shell: read the files, feed the parsers -------------------------------------------------------


def _read(path: str | Path) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def read_process_sample(pid: int, proc: str = "/proc") -> ProcessSample:
    """Sample ``pid``; ``alive=False`` when it does not exist (or we may not look)."""
    base = f"{proc}/{pid}"
    stat = _read(f"{base}/stat")
    if stat is None:
        return ProcessSample(pid=pid, alive=False)
    fields: dict[str, int] = dict(parse_proc_stat(stat))
    status = _read(f"{base}/status")
    if status is not None:
        fields.update(parse_proc_status(status))
    io = _read(f"{base}/io")
    if io is not None:
        fields.update(parse_proc_io(io))
    try:
        fields["fds"] = len(os.listdir(f"{base}/fd"))
    except OSError:
        fields["fds"] = 0
    return ProcessSample(
        pid=pid,
        rss_bytes=fields.get("rss_bytes", 0),
        peak_rss_bytes=fields.get("peak_rss_bytes", 0),
        threads=fields.get("threads", 0),
        fds=fields["fds"],
        cpu_ticks=fields.get("cpu_ticks", 0),
        read_bytes=fields.get("read_bytes", 0),
        write_bytes=fields.get("write_bytes", 0),
        start_ticks=fields.get("start_ticks", 0),
    )


def read_host_sample(disk_path: str | Path = "/", proc: str = "/proc") -> HostSample:
    """Sample the host; disk figures are for the filesystem holding ``disk_path`` (the data dir)."""
    fields: dict[str, float] = {}
    load = _read(f"{proc}/loadavg")
    if load is not None:
        fields["load1"], fields["load5"], fields["load15"] = parse_loadavg(load)
    mem = _read(f"{proc}/meminfo")
    if mem is not None:
        fields.update(parse_meminfo(mem))
    stat = _read(f"{proc}/stat")
    if stat is not None:
        fields.update(parse_host_stat(stat))
    try:
        vfs = os.statvfs(disk_path)
        fields.update(parse_diskstats_free(vfs.f_frsize, vfs.f_blocks, vfs.f_bavail))
    except OSError:
        pass
    return _host(fields)


def _host(fields: Mapping[str, float]) -> HostSample:
    ints = {k: int(v) for k, v in fields.items() if not k.startswith("load")}
    return HostSample(
        load1=float(fields.get("load1", 0.0)),
        load5=float(fields.get("load5", 0.0)),
        load15=float(fields.get("load15", 0.0)),
        **ints,
    )


def clock_ticks() -> int:
    """SC_CLK_TCK (100 on Linux nearly always)."""
    try:
        return int(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100
