"""Prometheus text exposition of a stats document."""

from __future__ import annotations

import math

from appliance.monitor.metrics import Metric, metrics_from_stats, render_metrics

DOC = {
    "running": True,
    "process": {"rssBytes": 1000, "cpuSeconds": 1.5, "fds": 9, "threads": 2},
    "host": {"load1": 0.25, "memTotalBytes": 2048},
    "store": {"dbBytes": 4096, "walBytes": 0},
    "gateway": {"uptimeMs": 2500, "activeRequests": 1, "eventLoop": {"delayP99Ms": 12.0, "degraded": False}},
}


def test_families_have_one_header_and_labels_are_escaped() -> None:
    text = render_metrics(
        [
            Metric("a_total", "counter", "A things.", 3),
            Metric("b", "gauge", "B.", 1.5, (("k", 'x"y\\z\nw'),)),
            Metric("b", "gauge", "B.", 2, (("k", "v"),)),
            Metric("c", "gauge", "C.", math.nan),
        ]
    )
    assert text.count("# TYPE b gauge") == 1
    assert 'b{k="x\\"y\\\\z\\nw"} 1.5' in text
    assert 'b{k="v"} 2' in text
    assert "a_total 3" in text
    assert "c NaN" in text
    assert text.endswith("\n")


def test_stats_document_maps_to_base_units() -> None:
    text = render_metrics(metrics_from_stats(DOC))
    lines = set(text.splitlines())
    assert "appliance_up 1" in lines
    assert "appliance_process_resident_memory_bytes 1000" in lines
    assert "appliance_process_cpu_seconds_total 1.5" in lines
    assert "# TYPE appliance_process_cpu_seconds_total counter" in lines
    assert 'appliance_store_file_bytes{file="db"} 4096' in lines
    assert 'appliance_store_file_bytes{file="wal"} 0' in lines
    assert "appliance_uptime_seconds 2.5" in lines
    assert "appliance_event_loop_delay_p99_seconds 0.012" in lines
    assert "appliance_event_loop_degraded 0" in lines


def test_missing_figures_are_left_out_not_zero() -> None:
    text = render_metrics(metrics_from_stats({"running": False, "process": None}))
    assert (
        text
        == "# HELP appliance_up 1 when the gateway process is alive.\n# TYPE appliance_up gauge\nappliance_up 0\n"
    )
