"""Server-side geometry of the SVG line charts (a team's scores over time, a run's curves): no client framework."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea")


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    path: str
    points: tuple[tuple[float, float, str], ...]  # (x, y, tooltip)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    bottom: int
    series: tuple[Series, ...]
    yticks: tuple[tuple[float, str], ...]
    xticks: tuple[tuple[float, str, str], ...]  # (x, label, text-anchor)
    x_title: str = ""
    tick_font: int = 0


# Charts are drawn in a 400 x 200 unit box that the page scales to its width (about 0.9x on a
# phone, 1.2x at most on a desktop). Tick labels are TICK_FONT units tall; a digit, letter or
# punctuation mark of system-ui is at most about 0.62 em wide. Labels are kept TICK_GAP apart.
CHART_W, CHART_H = 400, 200
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 44, 12, 10, 24
TICK_FONT = 13
TICK_CHAR_W = 0.62 * TICK_FONT
TICK_GAP = 12
MAX_XTICKS = 8
MAX_CHART_VALUE = 1e15  # beyond this a value has no readable label (and +-1e308 overflow the axis): not drawn


def text_width(text: str) -> float:
    """A generous estimate of a tick label's width in SVG units."""
    return len(text) * TICK_CHAR_W


def nice_ticks(lo: float, hi: float, most: int = 5) -> list[float]:
    """Round values (multiples of 1, 2, 2.5 or 5 x 10^k) covering [lo, hi] in at most ``most`` ticks.

    A range too narrow for distinct labels (flat, or a few ulps wide at any magnitude) is widened by
    5 % of its level (0.05 near zero: labels have at most 6 decimals), not below zero for non-negative data.
    """
    scale = max(abs(lo), abs(hi))
    if hi - lo < max(1e-12, scale * 1e-9):
        pad = scale * 0.05 if scale >= 1e-3 else 0.05
        lo, hi = (max(0.0, lo - pad) if lo >= 0 else lo - pad), hi + pad
    k = math.floor(math.log10((hi - lo) / most))
    while True:
        for base in (1, 2, 2.5, 5):
            step = base * 10.0**k
            first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
            if last - first + 1 <= most:
                return [round(i * step, 12) for i in range(first, last + 1)]
        k += 1


def tick_text(values: list[float]) -> list[str]:
    """Tick values with as many decimals as their step needs, and no more."""
    step = min((b - a for a, b in zip(values, values[1:])), default=1.0)
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    return [f"{v:.{decimals}f}" for v in values]


def _anchor(x: float, label: str, width: int) -> str:
    """Centre a label under its tick unless that would push it out of the drawing."""
    half = text_width(label) / 2
    if x - half < 0:
        return "start"
    if x + half > width:
        return "end"
    return "middle"


def _drawable(y: float | None) -> bool:
    return y is not None and math.isfinite(y) and abs(y) <= MAX_CHART_VALUE


def line_chart(
    series: list[tuple[str, list[tuple[float, float]]]],
    x_label=lambda x: f"{x:g}",
    y_label=lambda y: f"{y:.3f}",
    width: int = CHART_W,
    height: int = CHART_H,
    x_values: list[float] | None = None,
    x_tick_label=None,
    x_title: str = "",
) -> Chart | None:
    """Geometry for an SVG line chart of (x, y) series; None when there is nothing to draw.

    ``x_label`` and ``y_label`` name a point's values in its tooltip; ``x_tick_label`` (default:
    ``x_label``) writes the ticks under the axis; ``x_values`` are the x ticks (default: start,
    middle and end, repeated labels dropped). The y axis gets round ticks.
    """
    x_tick_label = x_tick_label or x_label
    points = [p for _, pts in series for p in pts if _drawable(p[1])]
    if not points:
        return None
    ys = nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    y_texts = tick_text(ys)
    y0, y1 = ys[0], ys[-1]
    # Room on the left for the widest y label (e.g. 0.9015 on a team's close scores).
    left = max(MARGIN_LEFT, math.ceil(max(text_width(t) for t in y_texts)) + 8)
    right, top, bottom = MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)  # noqa: E731
    out = []
    for i, (name, pts) in enumerate(series):
        pts = [p for p in pts if _drawable(p[1])]
        if not pts:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(pts))
        marks = tuple((round(sx(x), 1), round(sy(y), 1), f"{name}: {y_label(y)} at {x_label(x)}") for x, y in pts)
        out.append(Series(name=name, color=COLORS[i % len(COLORS)], path=d, points=marks))
    yticks = tuple((round(sy(y), 1), text) for y, text in zip(ys, y_texts))
    ticks = x_values if x_values is not None else [x0 + k * (x1 - x0) / 2 for k in range(3)]
    xticks, seen = [], set()
    for x in ticks:
        text = x_tick_label(x)
        if text in seen:  # e.g. three uploads within one minute: one "15:40" is enough
            continue
        seen.add(text)
        xticks.append((round(sx(x), 1), text, _anchor(sx(x), text, width)))
    return Chart(width=width, height=height, left=left, bottom=bottom, series=tuple(out), yticks=yticks,
                 xticks=tuple(xticks), x_title=x_title, tick_font=TICK_FONT)


def max_epoch_ticks(last_epoch: float, width: int = CHART_W) -> int:
    """How many epoch labels fit under the axis, each with TICK_GAP to spare (at most MAX_XTICKS).

    Labels are a round step apart, so n of them span at least n - 1 steps of a run shorter than
    n + 1 steps: each label has plot width / (n + 1) or more.
    """
    plot = width - MARGIN_LEFT - MARGIN_RIGHT
    per_label = text_width(f"{last_epoch:.0f}") + TICK_GAP
    return max(1, min(MAX_XTICKS, int(plot // per_label) - 1))


def epoch_ticks(epochs: list[float], max_ticks: int = MAX_XTICKS) -> list[int]:
    """Whole epochs to label: the multiples of a round step (1, 2, 5, 10, 20, 50, ...) within the
    run, the smallest step that gives at most ``max_ticks`` labels."""
    if not epochs:
        return []
    lo, hi = math.ceil(min(epochs)), math.floor(max(epochs))
    if hi < lo:  # a run shorter than one whole epoch: the tooltips still name each point
        return []
    k = 0
    while True:
        for base in (1, 2, 5):
            step = base * 10**k
            first = -(-lo // step) * step  # the first multiple of step at or after lo
            if first > hi or (hi - first) // step + 1 <= max_ticks:
                return list(range(first, hi + 1, step)) or [lo]
        k += 1


def time_label(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%m-%d %H:%M")


def time_tick_label(timestamps: list[float]):
    """Short tick labels for a time axis: the hour within one day, the date across days."""
    one_day = bool(timestamps) and max(timestamps) - min(timestamps) < 86_400
    fmt = "%H:%M" if one_day else "%m-%d"
    return lambda ts: dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime(fmt)
