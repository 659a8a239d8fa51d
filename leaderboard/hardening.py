"""One hook from ``create_app`` into the hardening modules (issue 9): security headers and rate
limits (``security``), revocable sessions (``sessions``), limits on request bodies (``limits``),
file modes (``filemodes``)."""
from __future__ import annotations

from flask import Flask


def init_hardening(app: Flask) -> None:
    from leaderboard.security import init_security
    from leaderboard.sessions import configure_sessions

    from leaderboard.limits import init_limits

    configure_sessions(app)
    init_security(app)
    init_limits(app)
