"""The soak judgement (sans-IO): slope, percentiles, accounting, checks."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import given
from hypothesis import strategies as st

SOAK = Path(__file__).resolve().parents[2] / "soak"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"soak_{name}", SOAK / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


judge = _load("judge")
svgplot = _load("svgplot")


def _samples(rss_mb: list[float], step_s: float = 10.0, ops: int = 5) -> list[dict[str, float]]:
    return [
        {"t": i * step_s, "rssBytes": mb * 1e6, "walBytes": 1e6, "ops": ops} for i, mb in enumerate(rss_mb)
    ]


def test_slope_of_a_line_and_degenerate_inputs() -> None:
    assert judge.least_squares_slope([(0, 1), (1, 3), (2, 5)]) == 2.0
    assert judge.least_squares_slope([(1, 1)]) is None
    assert judge.least_squares_slope([(1, 1), (1, 2)]) is None


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 1))
def test_percentile_is_a_member_and_monotone(values: list[float], q: float) -> None:
    p = judge.percentile(values, q)
    assert p in values
    assert judge.percentile(values, 0.0) <= p <= judge.percentile(values, 1.0)


def test_accounting() -> None:
    got = judge.account(["a", "b", "c"], {"a": 1, "b": 2, "x": 1})
    assert got == {"lost": ["c"], "duplicated": ["b"], "unknown": ["x"]}


def test_flat_run_passes_every_check() -> None:
    samples = _samples([30.0] * 40)
    checks = judge.judge(
        samples,
        limits=judge.Limits(warmup_s=60),
        crashed=None,
        accounting={"lost": [], "duplicated": []},
        accounted=100,
    )
    assert all(c.passed for c in checks), checks


def test_a_leak_a_stall_a_crash_and_a_lost_message_fail() -> None:
    # 0.1 MB per 10 s = 36 MB/h, over 2 h of samples: well above the noise floor
    samples = _samples([30.0 + 0.1 * i for i in range(720)])
    samples[5]["ops"] = 0
    checks = {
        c.name: c
        for c in judge.judge(
            samples,
            limits=judge.Limits(warmup_s=0),
            crashed="exited with -9",
            accounting={"lost": ["k1"], "duplicated": []},
            accounted=10,
        )
    }
    assert not checks["no crash"].passed
    assert not checks["progress every interval"].passed
    assert not checks["RSS slope (MB/h)"].passed
    assert abs(checks["RSS slope (MB/h)"].figure - 36.0) < 0.01
    assert not checks["0 lost / duplicated"].passed
    assert checks["WAL bounded (MB)"].passed


def test_short_run_growth_under_the_noise_floor_is_not_a_leak() -> None:
    samples = _samples([30.0, 30.1, 30.2, 30.3, 30.4], step_s=10)  # 36 MB/h, 0.4 MB in 40 s
    slope = {
        c.name: c
        for c in judge.judge(
            samples, limits=judge.Limits(warmup_s=0), crashed=None, accounting={}, accounted=1
        )
    }
    assert slope["RSS slope (MB/h)"].passed
    assert "noise floor" in slope["RSS slope (MB/h)"].detail


def test_svg_chart_is_well_formed() -> None:
    import xml.etree.ElementTree as ET

    svg = svgplot.line_chart("t <&>", [0, 1, 2], [("rss", [1, 2, 3]), ("flat", [5, 5, 5])])
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
