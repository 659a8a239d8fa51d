"""What every template may call: score and time formatting, the heat-map colour, CSRF, who is logged in."""
from __future__ import annotations

import datetime as dt
import math

from flask_wtf.csrf import generate_csrf

from harness.metrics import METRICS
from leaderboard.protocol import JobStatus, SubmissionStatus


def fmt_score(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def fmt_time(value: dt.datetime | None) -> str:
    return "—" if value is None else value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def heat(value: int, top: int) -> str:
    """A CSS background for a confusion-matrix cell: darker blue for more images."""
    alpha = 0.0 if top <= 0 else math.sqrt(value / top)
    return f"background-color: rgba(37, 99, 235, {alpha:.3f}); color: {'#fff' if alpha > 0.55 else '#111'}"


def template_globals() -> dict:
    from leaderboard.auth import is_admin, session_team
    from leaderboard.explanations import ExplanationStatus
    from leaderboard.state import current_competition

    return {
        "fmt_score": fmt_score,
        "fmt_time": fmt_time,
        "heat": heat,
        "csrf_token": generate_csrf,
        "session_team": session_team,
        "is_admin": is_admin,
        "current_competition": current_competition,
        "metrics": tuple(METRICS.values()),
        "SubmissionStatus": SubmissionStatus,
        "JobStatus": JobStatus,
        "ExplanationStatus": ExplanationStatus,
    }
