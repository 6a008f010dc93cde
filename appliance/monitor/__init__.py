"""Monitoring: ``/proc`` samples, the stats document, Prometheus text, the live view, the support bundle.

The API other components use (the gateway's ``/metrics`` route) is re-exported here; the CLI wiring is
:func:`appliance.monitor.cli.add_monitor_commands`. Nothing here imports trio at module level.
"""

from __future__ import annotations

from appliance.monitor.metrics import CONTENT_TYPE, Metric, metrics_from_stats, render_metrics
from appliance.monitor.sample import (
    HostSample,
    ProcessSample,
    clock_ticks,
    read_host_sample,
    read_process_sample,
)
from appliance.monitor.stats import build_stats, collect_stats, file_sizes

__all__ = [
    "CONTENT_TYPE",
    "HostSample",
    "Metric",
    "ProcessSample",
    "build_stats",
    "clock_ticks",
    "collect_stats",
    "file_sizes",
    "metrics_from_stats",
    "read_host_sample",
    "read_process_sample",
    "render_metrics",
]
