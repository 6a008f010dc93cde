"""The /proc parsers, fed fixture texts (no /proc needed)."""

from __future__ import annotations

import os

from appliance.monitor.sample import (
    HostSample,
    ProcessSample,
    cpu_percent,
    host_cpu_percent,
    parse_diskstats_free,
    parse_host_stat,
    parse_loadavg,
    parse_meminfo,
    parse_proc_io,
    parse_proc_stat,
    parse_proc_status,
    rate,
    read_host_sample,
    read_process_sample,
)

STATUS = """Name:\tappliance
Umask:\t0022
State:\tS (sleeping)
VmPeak:\t  120000 kB
VmHWM:\t   40960 kB
VmRSS:\t   30720 kB
Threads:\t3
"""
# comm with a space and parentheses: fields are counted after the last ")"
STAT = (
    "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1500 0 0 0 "
    "250 50 0 0 20 0 3 0 98765 123456789 7500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)
IO = """rchar: 900000
wchar: 800000
syscr: 10
syscw: 20
read_bytes: 4096
write_bytes: 8192
cancelled_write_bytes: 0
"""
MEMINFO = """MemTotal:        2000000 kB
MemFree:          500000 kB
MemAvailable:    1500000 kB
Cached:           700000 kB
"""
HOST_STAT = """cpu  100 0 50 800 50 0 0 0 0 0
cpu0 50 0 25 400 25 0 0 0 0 0
cpu1 50 0 25 400 25 0 0 0 0 0
intr 1 2 3
"""


def test_status_gives_rss_peak_threads_in_bytes() -> None:
    assert parse_proc_status(STATUS) == {
        "rss_bytes": 30720 * 1024,
        "peak_rss_bytes": 40960 * 1024,
        "threads": 3,
    }


def test_stat_survives_parentheses_in_the_command_name() -> None:
    assert parse_proc_stat(STAT) == {"cpu_ticks": 300, "threads": 3, "start_ticks": 98765}


def test_stat_garbage_is_zeros() -> None:
    assert parse_proc_stat("nonsense") == {"cpu_ticks": 0, "threads": 0, "start_ticks": 0}
    assert parse_proc_stat("1 (x) S 1") == {"cpu_ticks": 0, "threads": 0, "start_ticks": 0}


def test_io_prefers_storage_bytes_and_falls_back_to_chars() -> None:
    assert parse_proc_io(IO) == {"read_bytes": 4096, "write_bytes": 8192}
    assert parse_proc_io("rchar: 5\nwchar: 6\n") == {"read_bytes": 5, "write_bytes": 6}


def test_host_files() -> None:
    assert parse_loadavg("0.50 0.25 0.10 1/123 4567\n") == (0.5, 0.25, 0.1)
    assert parse_loadavg("") == (0.0, 0.0, 0.0)
    assert parse_meminfo(MEMINFO) == {"mem_total_bytes": 2_048_000_000, "mem_available_bytes": 1_536_000_000}
    old_kernel = "MemTotal: 100 kB\nMemFree: 10 kB\nCached: 5 kB\n"
    assert parse_meminfo(old_kernel)["mem_available_bytes"] == 15 * 1024
    assert parse_host_stat(HOST_STAT) == {"cpu_total": 1000, "cpu_idle": 850, "cores": 2}
    assert parse_diskstats_free(4096, 100, 25) == {"disk_total_bytes": 409600, "disk_free_bytes": 102400}


def test_rates_from_two_samples() -> None:
    a = ProcessSample(pid=1, cpu_ticks=100, start_ticks=7)
    b = ProcessSample(pid=1, cpu_ticks=150, start_ticks=7)
    assert cpu_percent(a, b, 1.0, clk_tck=100) == 50.0
    assert cpu_percent(a, b, 0.0) == 0.0
    restarted = ProcessSample(pid=1, cpu_ticks=150, start_ticks=8)  # pid reused by a new process
    assert cpu_percent(a, restarted, 1.0) == 0.0
    h0 = HostSample(cpu_total=1000, cpu_idle=800)
    h1 = HostSample(cpu_total=1200, cpu_idle=900)
    assert host_cpu_percent(h0, h1) == 50.0
    assert host_cpu_percent(h1, h1) == 0.0
    assert rate(10, 30, 2.0) == 10.0
    assert rate(30, 10, 2.0) == 0.0


def test_reader_on_this_process_and_a_missing_one() -> None:
    me = read_process_sample(os.getpid())
    assert me.alive
    assert me.rss_bytes > 0
    assert me.threads >= 1
    assert me.fds >= 3
    gone = read_process_sample(2**22 + 12345)
    assert not gone.alive
    host = read_host_sample("/")
    assert host.mem_total_bytes > 0
    assert host.cores >= 1
    assert host.disk_total_bytes > 0
