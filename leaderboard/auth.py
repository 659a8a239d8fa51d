"""Who is asking: team tokens (hashed), the organizer's token, the workers' token, browser sessions."""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets
import threading
import unicodedata
from collections import OrderedDict
from typing import Callable

import sqlalchemy as sa
from flask import current_app, g, redirect, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from leaderboard.errors import json_errors
from leaderboard.extensions import db
from leaderboard.models import Team

# Team tokens carry 256 random bits, so a slow password hash buys nothing against guessing;
# a modest PBKDF2 keeps every API request cheap while the database still holds no usable token.
TOKEN_HASH_METHOD = "pbkdf2:sha256:5000"


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return generate_password_hash(token, method=TOKEN_HASH_METHOD)


def slugify(name: str) -> str:
    """A url-safe slug from any team name (non-Latin names fall back to ``team``)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60]
    return text or "team"


def unique_slug(name: str) -> str:
    base = slugify(name)
    slug, n = base, 1
    while db.session.scalar(sa.select(Team.id).where(Team.slug == slug)) is not None:
        n += 1
        slug = f"{base}-{n}"
    return slug


VERIFIED_TOKENS = 4096  # stored token hashes whose token this process has seen (per process, in memory)
_verified: OrderedDict[str, bytes] = OrderedDict()  # stored hash -> SHA-256 of the token that matched it
_verified_lock = threading.Lock()


def token_matches(token_hash: str, token: str) -> bool:
    """``check_password_hash``, remembered: once a token has matched a stored hash, the next check
    of that hash compares SHA-256 digests (microseconds) instead of running PBKDF2 again (about 3 ms
    per request, twice per upload: the body gate and the view). A wrong token against a remembered
    hash is refused just as fast. A rotated token has a new stored hash, which nothing remembers."""
    try:
        digest = hashlib.sha256(token.encode("utf-8")).digest()
    except UnicodeEncodeError:  # a lone surrogate (JSON's "\udc80") is no token of ours
        return False
    with _verified_lock:
        known = _verified.get(token_hash)
        if known is not None:
            _verified.move_to_end(token_hash)  # least recently used goes first
    if known is not None:
        return hmac.compare_digest(known, digest)
    if not check_password_hash(token_hash, token):
        return False
    with _verified_lock:
        _verified[token_hash] = digest
        _verified.move_to_end(token_hash)
        while len(_verified) > VERIFIED_TOKENS:
            _verified.popitem(last=False)
    return True


def token_team_id(token: str) -> int | None:
    """The team id a token names (``<team id>.<secret>``), or None for a token of no team. ASCII
    digits only, and a number an INTEGER column can hold: "\u00b2" passes str.isdigit() but int()
    refuses it, a 20-digit id overflows SQLite; either was a 500 instead of a 401. The rate limits
    (security.py) count a token against the same team."""
    team_id, dot, _ = token.partition(".")
    return int(team_id) if dot and re.fullmatch(r"[0-9]{1,18}", team_id) else None


def basic_credentials(value: str) -> tuple[str, str] | None:
    """(username, password) of an HTTP Basic ``Authorization`` value, or None when it cannot be read."""
    try:
        username, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (username, password) if sep else None


def team_for_token(token: str) -> Team | None:
    """The team a token belongs to, or None. Tokens look like ``<team id>.<secret>``."""
    team_id = token_team_id(token)
    if team_id is None:
        g.podium_auth_failed = True  # a wrong token counts toward the rate limits (security.py)
        return None
    team = db.session.get(Team, team_id)
    if team is None or not token_matches(team.token_hash, token):
        g.podium_auth_failed = True
        return None
    return team


def team_for_login(name: str, token: str) -> Team | None:
    team = db.session.scalar(sa.select(Team).where(Team.name == name.strip()))
    if team is None or not token_matches(team.token_hash, token.strip()):
        return None
    return team


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _same(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def _json_error(status: int, message: str):
    response = json_errors(status, [message])
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def require_worker(view: Callable) -> Callable:
    """For the worker protocol: ``Authorization: Bearer <WORKER_TOKEN>`` or 401 JSON."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not _same(bearer_token(), current_app.config.get("WORKER_TOKEN")):
            return _json_error(401, "A valid worker token is required (Authorization: Bearer <WORKER_TOKEN>).")
        return view(*args, **kwargs)

    return wrapped


def require_team_token(view: Callable) -> Callable:
    """For the team API: ``Authorization: Bearer <team token>``; sets ``g.team``."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        token = bearer_token()
        team = team_for_token(token) if token else None
        if team is None:
            return _json_error(401, "A valid team token is required (Authorization: Bearer <team token>).")
        g.team = team
        return view(*args, **kwargs)

    return wrapped


def login_team(team: Team) -> None:
    from leaderboard.sessions import start_team_session

    start_team_session(team)


def logout() -> None:
    """Forget this browser's login; the view ends the team's sessions first (services.end_team_sessions)."""
    session.clear()


def session_team() -> Team | None:
    """The team logged in through the browser, or None (cached on ``g`` for the request)."""
    if "session_team" not in g:
        from leaderboard.sessions import team_session_valid

        team_id = session.get("team_id")
        team = db.session.get(Team, team_id) if isinstance(team_id, int) else None
        g.session_team = team if team_session_valid(team) else None
    return g.session_team


def is_admin() -> bool:
    from leaderboard.sessions import admin_session_valid

    return admin_session_valid() or _same(bearer_token(), current_app.config.get("ADMIN_TOKEN"))


def check_admin_token(token: str) -> bool:
    return _same(token.strip(), current_app.config.get("ADMIN_TOKEN"))


def login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if session_team() is None:
            return redirect(url_for("teams.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped


def admin_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if not is_admin():
            if request.path.startswith("/api/"):
                return _json_error(401, "The organizer token is required.")
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapped
