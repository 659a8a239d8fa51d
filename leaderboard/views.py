"""Formatting helpers and server-side chart geometry for the templates (no client framework)."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from flask_wtf.csrf import generate_csrf

COLORS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea")


def fmt_score(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_time(value: dt.datetime | None) -> str:
    return "—" if value is None else value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def heat(value: int, top: int) -> str:
    """A CSS background for a confusion-matrix cell: darker blue for more images."""
    alpha = 0.0 if top <= 0 else math.sqrt(value / top)
    return f"background-color: rgba(37, 99, 235, {alpha:.3f}); color: {'#fff' if alpha > 0.55 else '#111'}"


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


def _nice_range(lo: float, hi: float) -> tuple[float, float]:
    if hi - lo < 1e-9:
        pad = abs(hi) * 0.05 or 0.05
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def line_chart(
    series: list[tuple[str, list[tuple[float, float]]]],
    x_label=lambda x: f"{x:g}",
    y_label=lambda y: f"{y:.3f}",
    width: int = 480,
    height: int = 220,
    x_values: list[float] | None = None,
) -> Chart | None:
    """Geometry for an SVG line chart of (x, y) series; None when there is nothing to draw."""
    points = [p for _, pts in series for p in pts if p[1] is not None and math.isfinite(p[1])]
    if not points:
        return None
    left, right, top, bottom = 52, 10, 10, 26
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    y0, y1 = _nice_range(min(p[1] for p in points), max(p[1] for p in points))
    sx = lambda x: left + (x - x0) / (x1 - x0) * (width - left - right)  # noqa: E731
    sy = lambda y: height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom)  # noqa: E731
    out = []
    for i, (name, pts) in enumerate(series):
        pts = [p for p in pts if p[1] is not None and math.isfinite(p[1])]
        if not pts:
            continue
        d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(pts))
        marks = tuple((round(sx(x), 1), round(sy(y), 1), f"{name}: {y_label(y)} at {x_label(x)}") for x, y in pts)
        out.append(Series(name=name, color=COLORS[i % len(COLORS)], path=d, points=marks))
    yticks = tuple((round(sy(y0 + k * (y1 - y0) / 4), 1), y_label(y0 + k * (y1 - y0) / 4)) for k in range(5))
    ticks = x_values if x_values is not None else [x0 + k * (x1 - x0) / 2 for k in range(3)]
    xticks = tuple(
        (round(sx(x), 1), x_label(x), "start" if i == 0 and len(ticks) > 1 else ("end" if i == len(ticks) - 1 and len(ticks) > 1 else "middle"))
        for i, x in enumerate(ticks)
    )
    return Chart(width=width, height=height, left=left, bottom=bottom, series=tuple(out), yticks=yticks, xticks=xticks)


def epoch_ticks(epochs: list[float]) -> list[float]:
    """Whole epochs to label: all of them when few, else five spread over the run."""
    if len(epochs) <= 10:
        return list(epochs)
    return sorted({round(epochs[0] + k * (epochs[-1] - epochs[0]) / 4) for k in range(5)})


def time_label(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%m-%d %H:%M")


def template_globals() -> dict:
    from leaderboard.auth import is_admin, session_team
    from leaderboard.state import current_competition

    return {
        "fmt_score": fmt_score,
        "fmt_time": fmt_time,
        "heat": heat,
        "csrf_token": generate_csrf,
        "session_team": session_team,
        "is_admin": is_admin,
        "current_competition": current_competition,
    }
