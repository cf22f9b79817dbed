"""Inline SVG charts for reports: bars with CI whiskers, score histograms, a win-rate heatmap.

Every chart carries a `<title>` (read by screen readers and shown as a tooltip) and visible
axis labels. All text is escaped here; the functions return `Markup` ready for the template.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

LEFT, WIDTH = 124, 214  # label column and plot width of every chart, in px
PALETTE = ["#3b6fd8", "#e0803a", "#3aa675", "#c9485b", "#8a5cc2", "#7d8a99", "#c2a23a", "#2aa3b8"]


NEUTRAL = "#6b84b0"


def color(i: int) -> str:
    """The colour of run i, the same in every chart and table; -1: a neutral colour."""
    return NEUTRAL if i < 0 else PALETTE[i % len(PALETTE)]


def fmt(x: float | None, digits: int = 4) -> str:
    """A score for display: 4 significant decimals for 0-1 scales, fewer for big numbers."""
    if x is None or not math.isfinite(x):
        return "–"
    if digits <= 1:
        return f"{x:.{digits}f}"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.2f}"
    return f"{x:.{digits}f}"


def _nice_max(x: float) -> float:
    if x <= 0:
        return 1.0
    if x <= 1.0:
        return 1.0
    exp = 10.0 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= x:
            return float(m * exp)
    return 10 * exp


def _text(x: float, y: float, s: str, anchor: str = "start", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{c}>{escape(s)}</text>'


def _label(s: str, width: int = 19) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def _axis(lows: list[float], highs: list[float], zero: bool) -> tuple[float, float]:
    if zero:
        lo_axis = min(0.0, min(lows, default=0.0))
        lo_axis = -_nice_max(-lo_axis) if lo_axis < 0 else 0.0
        return lo_axis, _nice_max(max(highs, default=1.0))
    lo, hi = min(lows, default=0.0), max(highs, default=1.0)
    pad = (hi - lo) * 0.1 or 1.0
    step = 10.0 ** math.floor(math.log10(pad))
    return math.floor((lo - pad) / step) * step, math.ceil((hi + pad) / step) * step


def bar_chart(title: str, items: Sequence[tuple[str, float | None, float | None, float | None, int]], axis: str,
              zero: bool = True, digits: int = 4, scale: tuple[float, float] | None = None) -> Markup:
    """Horizontal bars (label, value, ci_low, ci_high, color index) with 95% CI whiskers.

    zero=False starts the axis near the smallest value (ratings, where only differences mean anything);
    `scale` (the metric's declared range, e.g. 1-10 for a judge rating) is the axis when given.
    """
    left, width, row, top = LEFT, WIDTH, 26, 34
    height = top + row * len(items) + 30
    highs = [v for _, val, lo, hi, _ in items for v in (val, hi) if v is not None]
    lows = [v for _, val, lo, hi, _ in items for v in (val, lo) if v is not None]
    lo_axis, hi_axis = _axis(lows, highs, zero) if scale is None else scale
    span = (hi_axis - lo_axis) or 1.0
    base = lo_axis if lo_axis > 0 or not zero else 0.0

    def sx(v: float) -> float:
        return left + (v - lo_axis) / span * width

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {left + width + 62} {height}" width="{left + width + 62}" height="{height}">',
             f"<title>{escape(title)}</title>", _text(0, 16, title, cls="ct")]
    for k in range(5):
        v = lo_axis + span * k / 4
        x = sx(v)
        parts.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 26}" class="grid"/>')
        parts.append(_text(x, height - 12, f"{v:.4g}", "middle", "tick"))
    for i, (label, val, lo, hi, ci) in enumerate(items):
        y = top + i * row
        parts.append(_text(left - 8, y + 14, _label(label), "end", "lbl"))
        if val is None:
            parts.append(_text(left + 4, y + 14, "no value", cls="tick"))
            continue
        x0, x1 = (sx(base), sx(val)) if val >= base else (sx(val), sx(base))
        interval = f" (95% CI {fmt(lo, digits)}–{fmt(hi, digits)})" if lo is not None and hi is not None else ""
        tip = f"{label}: {fmt(val, digits)}{interval}"
        parts.append(f'<rect x="{x0:.1f}" y="{y + 3}" width="{max(1.0, x1 - x0):.1f}" height="{row - 10}" rx="2" '
                     f'fill="{color(ci)}"><title>{escape(tip)}</title></rect>')
        if lo is not None and hi is not None and hi > lo:
            a, b, mid = sx(lo), sx(hi), y + 3 + (row - 10) / 2
            caps = f"M{a:.1f} {mid - 5:.1f}V{mid + 5:.1f}M{b:.1f} {mid - 5:.1f}V{mid + 5:.1f}"
            parts.append(f'<path d="M{a:.1f} {mid:.1f}H{b:.1f}{caps}" class="whisk"/>')
        right = sx(hi) if hi is not None and hi > val else x1
        parts.append(_text(right + 6, y + 14, fmt(val, digits), cls="val"))
    parts.append(_text(left + width / 2, height - 1, axis, "middle", "axis"))
    parts.append("</svg>")
    return Markup("".join(parts))


def histogram(title: str, series: Sequence[tuple[str, Sequence[float], int]], axis: str, bins: int = 10) -> Markup:
    """Per-model rows of a histogram of per-sample scores over shared bins (share of samples per bin)."""
    values = [v for _, vs, _ in series for v in vs]
    left, width, row, top = LEFT, WIDTH, 46, 34
    height = top + row * len(series) + 30
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {left + width + 62} {height}" width="{left + width + 62}" height="{height}">',
             f"<title>{escape(title)}</title>", _text(0, 16, title, cls="ct")]
    if not values:
        parts.append(_text(left, top + 14, "no per-sample scores", cls="tick"))
        parts.append("</svg>")
        return Markup("".join(parts))
    lo, hi = min(values), max(values)
    distinct = sorted(set(values))
    if len(distinct) <= bins:  # few distinct values (0/1 metrics): one bar per value
        edges = distinct
        labels = [fmt(v, 2) for v in distinct]
    else:
        step = (hi - lo) / bins
        edges = [lo + step * k for k in range(bins)]
        labels = [fmt(lo, 2)] + [""] * (bins - 2) + [fmt(hi, 2)]
    nb = len(edges)
    bw = width / nb
    inner = min(bw - 2, 56.0)  # a few wide bars read better narrow and centred
    for i, (label, vs, ci) in enumerate(series):
        counts = [0] * nb
        for v in vs:
            k = distinct.index(v) if len(distinct) <= bins else min(nb - 1, int((v - lo) / ((hi - lo) / bins)))
            counts[k] += 1
        total = max(1, len(vs))
        y = top + i * row
        parts.append(_text(left - 8, y + row / 2 + 2, _label(label), "end", "lbl"))
        parts.append(_text(left - 8, y + row / 2 + 14, f"n={len(vs):,}", "end", "tick"))
        base = y + row - 8
        parts.append(f'<line x1="{left}" y1="{base}" x2="{left + width}" y2="{base}" class="grid"/>')
        for k, c in enumerate(counts):
            h = (row - 12) * c / total
            tip = f"{label}: {c:,} of {len(vs):,} samples ({100 * c / total:.1f}%) at {labels[k] or fmt(edges[k], 2)}"
            x = left + k * bw + (bw - inner) / 2
            parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{inner:.1f}" height="{max(h, 0.5):.1f}" '
                         f'fill="{color(ci)}"><title>{escape(tip)}</title></rect>')
    base = top + row * len(series)
    for k, lab in enumerate(labels):
        if lab:
            parts.append(_text(left + k * bw + bw / 2, base + 8, lab, "middle", "tick"))
    parts.append(_text(left + width / 2, height - 1, axis, "middle", "axis"))
    parts.append("</svg>")
    return Markup("".join(parts))


def heatmap(title: str, names: Sequence[str], cells: dict[str, dict[str, float | None]]) -> Markup:
    """Win rate of the row model against the column model, 0-1, blue above one half."""
    left, top, size = LEFT, 120, 44
    w, h = max(left + size * len(names) + 10, 8 * len(title)), top + size * len(names) + 10
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {w} {h}" width="{w}" height="{h}">',
             f"<title>{escape(title)}</title>", _text(0, 16, title, cls="ct")]
    for j, b in enumerate(names):
        x = left + j * size + size / 2
        parts.append(f'<text transform="translate({x:.1f},{top - 6}) rotate(-45)" class="lbl">{escape(_label(b, 18))}</text>')
    for i, a in enumerate(names):
        y = top + i * size
        parts.append(_text(left - 8, y + size / 2 + 4, _label(a), "end", "lbl"))
        for j, b in enumerate(names):
            v = cells.get(a, {}).get(b)
            x = left + j * size
            if v is None:
                parts.append(f'<rect x="{x}" y="{y}" width="{size - 2}" height="{size - 2}" class="hm-empty"/>')
                continue
            d = v - 0.5
            fill = f"rgba(59,111,216,{min(1.0, 2 * d):.2f})" if d >= 0 else f"rgba(201,72,91,{min(1.0, -2 * d):.2f})"
            parts.append(f'<rect x="{x}" y="{y}" width="{size - 2}" height="{size - 2}" fill="{fill}" class="hm">'
                         f"<title>{escape(f'{a} beats {b}: {v:.0%}')}</title></rect>")
            parts.append(_text(x + size / 2 - 1, y + size / 2 + 3, f"{v:.2f}", "middle", "tick"))
    parts.append("</svg>")
    return Markup("".join(parts))
