"""Soak judgement, sans-IO: samples and accounting in, verdicts and figures out.

Rules: no clock, no I/O. Every check returns a :class:`Check` with the measured figure, its limit and
whether it passed, so the summary can print figures even when everything passes. The RSS slope is the
least-squares slope of RSS against time over the samples after the warm-up, in MB per hour.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

__all__ = ["Check", "Limits", "account", "judge", "least_squares_slope", "percentile"]


@attrs.frozen
class Limits:
    rss_slope_mb_per_h: float = 1.0
    wal_max_mb: float = 64.0
    warmup_s: float = 60.0
    #: fitted RSS growth over the whole steady window below this is allocator noise, not a leak: a short
    #: run cannot resolve 1 MB/h (45 s at 1 MB/h is 0.0125 MB), so it passes as "within noise"
    rss_noise_mb: float = 1.0
    #: failed operations / all operations; a gateway that answers errors loses no *acknowledged* message
    #: but is not healthy either
    max_error_rate: float = 0.01


@attrs.frozen
class Check:
    name: str
    passed: bool
    figure: Any
    limit: Any
    detail: str = ""


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def least_squares_slope(points: Iterable[tuple[float, float]]) -> float | None:
    """Slope of y over x; None with fewer than 2 distinct x."""
    pts = list(points)
    if len(pts) < 2:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in pts) / sxx


def account(sent: Iterable[str], seen: Mapping[str, int]) -> dict[str, list[str]]:
    """Compare sent ids with how often each was seen: ``lost`` (0), ``duplicated`` (>1), ``unknown``."""
    sent_set = set(sent)
    lost = sorted(k for k in sent_set if seen.get(k, 0) == 0)
    duplicated = sorted(k for k in sent_set if seen.get(k, 0) > 1)
    unknown = sorted(k for k in seen if k not in sent_set)
    return {"lost": lost, "duplicated": duplicated, "unknown": unknown}


def judge(
    samples: Sequence[Mapping[str, Any]],
    *,
    limits: Limits,
    crashed: str | None,
    accounting: Mapping[str, Sequence[str]],
    accounted: int,
    ops: int = 0,
    errors: int = 0,
) -> list[Check]:
    """All checks over the JSON-lines samples (keys ``t``, ``rssBytes``, ``walBytes``, ``ops``)."""
    checks = [Check("no crash", crashed is None, crashed or "alive", "alive")]
    stalled = [s["t"] for s in samples[1:] if int(s.get("ops", 0)) <= 0]
    checks.append(
        Check(
            "progress every interval",
            not stalled and len(samples) > 1,
            f"{len(samples) - 1 - len(stalled)}/{max(0, len(samples) - 1)} intervals",
            "all",
            f"no progress at t={stalled[:5]}" if stalled else "",
        )
    )
    steady = [(s["t"] / 3600.0, s["rssBytes"] / 1e6) for s in samples if s["t"] >= limits.warmup_s]
    slope = least_squares_slope(steady)
    span_h = (steady[-1][0] - steady[0][0]) if len(steady) > 1 else 0.0
    growth = (slope or 0.0) * span_h
    within_noise = slope is not None and slope > limits.rss_slope_mb_per_h and growth <= limits.rss_noise_mb
    detail = f"{len(steady)} samples after {limits.warmup_s:.0f} s warm-up, fitted growth {growth:.3f} MB"
    if within_noise:
        detail += f" <= {limits.rss_noise_mb} MB noise floor: run too short to resolve the limit"
    checks.append(
        Check(
            "RSS slope (MB/h)",
            slope is not None and (slope <= limits.rss_slope_mb_per_h or within_noise),
            None if slope is None else round(slope, 3),
            limits.rss_slope_mb_per_h,
            detail,
        )
    )
    wal_max = max((s.get("walBytes", 0) for s in samples), default=0) / 1e6
    checks.append(
        Check("WAL bounded (MB)", wal_max <= limits.wal_max_mb, round(wal_max, 2), limits.wal_max_mb)
    )
    lost = list(accounting.get("lost", ()))
    dup = list(accounting.get("duplicated", ()))
    checks.append(
        Check(
            "0 lost / duplicated",
            not lost and not dup and accounted > 0,
            f"{len(lost)} lost, {len(dup)} duplicated of {accounted}",
            "0 / 0",
            f"lost {lost[:3]} dup {dup[:3]}" if lost or dup else "",
        )
    )
    error_rate = errors / max(1, ops + errors)
    checks.append(
        Check(
            "error rate",
            error_rate <= limits.max_error_rate,
            round(error_rate, 4),
            limits.max_error_rate,
            f"{errors} failed of {ops + errors} operations",
        )
    )
    return checks
