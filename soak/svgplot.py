"""A tiny dependency-free SVG line chart (one panel per series, shared time axis); sans-IO."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["line_chart"]


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def line_chart(
    title: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    x_label: str = "minutes",
    width: int = 760,
    panel_height: int = 150,
) -> str:
    """SVG text: one small panel per ``(label, ys)``, each scaled to its own min..max."""
    pad_l, pad_r, pad_t, gap = 70, 20, 30, 40
    height = pad_t + len(series) * (panel_height + gap) + 10
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{pad_l}" y="18" font-size="14">{escape(title)}</text>',
    ]
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    xspan = (x1 - x0) or 1.0
    plot_w = width - pad_l - pad_r
    for index, (label, ys) in enumerate(series):
        top = pad_t + index * (panel_height + gap) + 10
        clean = list(ys)
        lo, hi = (min(clean), max(clean)) if clean else (0.0, 1.0)
        if hi == lo:
            lo, hi = lo - 1, hi + 1
        yspan = hi - lo
        out.append(
            f'<rect x="{pad_l}" y="{top}" width="{plot_w}" height="{panel_height}" fill="none" stroke="#999"/>'
        )
        out.append(f'<text x="{pad_l}" y="{top - 4}">{escape(label)}</text>')
        out.append(f'<text x="{pad_l - 4}" y="{top + 10}" text-anchor="end">{_fmt(hi)}</text>')
        out.append(f'<text x="{pad_l - 4}" y="{top + panel_height}" text-anchor="end">{_fmt(lo)}</text>')
        points = " ".join(
            f"{pad_l + (x - x0) / xspan * plot_w:.1f},{top + panel_height - (y - lo) / yspan * panel_height:.1f}"
            for x, y in zip(xs, clean, strict=False)
        )
        out.append(f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{points}"/>')
        out.append(
            f'<text x="{pad_l + plot_w}" y="{top + panel_height + 14}" text-anchor="end">'
            f"{_fmt(x1)} {escape(x_label)}</text>"
        )
        out.append(f'<text x="{pad_l}" y="{top + panel_height + 14}">{_fmt(x0)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
