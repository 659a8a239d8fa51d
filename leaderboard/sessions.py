"""Revocable browser sessions.

Flask's session is a signed cookie: it cannot be taken back by itself. So every session carries
the version it was opened under, checked on every request against the database:

- a team's ``Team.session_version``, bumped when any member logs out and when the organizer gives
  the team a new token: every browser logged in as that team is logged out;
- the organizer's version (the ``organizer_session_version`` row of ``Setting``), bumped on
  organizer logout, plus a keyed fingerprint of the organizer token: a restart with another
  ``--admin-token`` ends every organizer session;
- the time the session was opened, on the app's clock (``leaderboard.state.now``): a team session
  lasts ``TEAM_SESSION_LIFETIME``, an organizer session ``ADMIN_SESSION_LIFETIME`` (defaults in
  ``leaderboard.config``: 7 days and 12 hours), counted from the login (the cookie is not renewed
  on each request).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import sqlalchemy as sa
from flask import Flask, current_app, session

from leaderboard.extensions import db
from leaderboard.models import Setting, Team
from leaderboard.state import now

ORGANIZER_VERSION = "organizer_session_version"


def configure_sessions(app: Flask) -> None:
    """The lifetimes (``create_app`` fills both keys from ``Config``) as timedeltas; no renewal on use."""
    for key in ("TEAM_SESSION_LIFETIME", "ADMIN_SESSION_LIFETIME"):
        value = app.config[key]
        app.config[key] = value if isinstance(value, dt.timedelta) else dt.timedelta(seconds=float(value))
    app.config["PERMANENT_SESSION_LIFETIME"] = max(app.config["TEAM_SESSION_LIFETIME"],
                                                   app.config["ADMIN_SESSION_LIFETIME"])
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False


def _fresh(lifetime: dt.timedelta) -> bool:
    since = session.get("since")
    return isinstance(since, (int, float)) and 0 <= _clock() - since < lifetime.total_seconds()


def _clock() -> float:
    """Seconds since the epoch on the app's clock (tests move it with the ``NOW`` key)."""
    return now().timestamp()


def start_team_session(team: Team) -> None:
    session.clear()
    session["team_id"] = team.id
    session["team_sv"] = team.session_version or 0
    session["since"] = int(_clock())
    session.permanent = True


def team_session_valid(team: Team | None) -> bool:
    return (team is not None and session.get("team_sv") == (team.session_version or 0)
            and _fresh(current_app.config["TEAM_SESSION_LIFETIME"]))


def revoke_team_sessions(team_id: int) -> None:
    """Every session of this team ends; the caller commits."""
    db.session.execute(sa.update(Team).where(Team.id == team_id).values(
        session_version=sa.func.coalesce(Team.session_version, 0) + 1))


def _organizer_version() -> str:
    return db.session.scalar(sa.select(Setting.value).where(Setting.key == ORGANIZER_VERSION)) or "0"


def _admin_fingerprint() -> str:
    token = current_app.config.get("ADMIN_TOKEN") or ""
    key = str(current_app.config.get("SECRET_KEY") or "").encode()
    return hmac.new(key, b"organizer:" + token.encode(), hashlib.sha256).hexdigest()[:32]


def start_admin_session() -> None:
    session.clear()
    session["admin"] = True
    session["admin_sv"] = _organizer_version()
    session["admin_key"] = _admin_fingerprint()
    session["since"] = int(_clock())
    session.permanent = True


def admin_session_valid() -> bool:
    return (session.get("admin") is True and bool(current_app.config.get("ADMIN_TOKEN"))
            and hmac.compare_digest(str(session.get("admin_key", "")), _admin_fingerprint())
            and session.get("admin_sv") == _organizer_version()
            and _fresh(current_app.config["ADMIN_SESSION_LIFETIME"]))


def revoke_admin_sessions() -> None:
    """Every organizer session ends; the caller commits."""
    updated = db.session.execute(sa.update(Setting).where(Setting.key == ORGANIZER_VERSION).values(
        value=sa.cast(sa.cast(Setting.value, sa.Integer) + 1, sa.String))).rowcount
    if not updated:
        db.session.add(Setting(key=ORGANIZER_VERSION, value="1"))
