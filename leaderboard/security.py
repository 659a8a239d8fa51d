"""Response headers (a strict Content-Security-Policy, no framing, nosniff, Referrer-Policy) and the
rate limits on logins and tokens (Flask-Limiter).

The pages run no script at all: the charts are SVG drawn on the server. The CSP allows scripts
from this site's ``/static`` only (none today), never inline ones. The one ``<style>`` element (the
board's highlight of the viewer's row) carries the request's nonce.

Rate limits count *failed* authentications (responses 401), so a team that polls its submission
with a valid token never meets them:

- per address, over the whole site: ``RATELIMIT_FAILED_PER_ADDRESS`` (default ``20 per minute;
  200 per day``);
- per account: the team login (the team name given), the organizer login, and a bearer token's
  team id (one count over the upload and the read API, where a wrong token is answered 404):
  ``RATELIMIT_FAILED_PER_ACCOUNT`` (default ``10 per minute; 100 per day``).

Counters live in memory (``RATELIMIT_STORAGE_URI``, default ``memory://``), per server process: one
waitress process (``podium serve``) shares them; several gunicorn workers each keep their own, so
point ``RATELIMIT_STORAGE_URI`` at a shared store (``redis://...``) there. Behind a reverse proxy the
address is the proxy's unless ``TRUSTED_PROXIES`` (``podium serve --proxies N``) wraps the app in
``werkzeug.middleware.proxy_fix.ProxyFix``.
"""
from __future__ import annotations

import secrets

from flask import Flask, current_app, g, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

FAILED_PER_ADDRESS = "20 per minute; 200 per day"
FAILED_PER_ACCOUNT = "10 per minute; 100 per day"


MIN_ADMIN_TOKEN_CHARS = 32


def check_admin_token_strength(token: str) -> None:
    """An organizer token given to ``podium serve`` must be long enough not to be guessed."""
    from harness.errors import PodiumError

    if len(token.strip()) < MIN_ADMIN_TOKEN_CHARS:
        raise PodiumError(f"--admin-token must be at least {MIN_ADMIN_TOKEN_CHARS} characters (it was "
                          f"{len(token.strip())}); leave it out to have one generated into the instance folder.")


def csp_nonce() -> str:
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def content_security_policy(nonce: str) -> str:
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        f"style-src 'self' 'nonce-{nonce}'",
        "style-src-attr 'unsafe-inline'",  # server-computed colours (heat map, chart keys); never user text
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ])


def _security_headers(response):
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def _login_account() -> str:
    return "team-login:" + request.form.get("name", "").strip().casefold()[:100]


def _token_account() -> str:
    header = request.headers.get("Authorization", "")
    team_id = header.partition(" ")[2].strip().partition(".")[0][:20]
    return "token:" + team_id


def _failed(response) -> bool:
    """A failed authentication: a 401, or a wrong team token where the answer is a 404 (the read API
    answers 404 rather than telling whether a submission exists)."""
    return response.status_code == 401 or bool(g.get("podium_auth_failed"))


def _per_account(limiter: Limiter, key_func):
    return limiter.limit(
        lambda: current_app.config["RATELIMIT_FAILED_PER_ACCOUNT"], key_func=key_func, methods=["POST"],
        override_defaults=False, deduct_when=_failed,
        error_message="Too many failed attempts for this account; wait before trying again.",
    )


def init_security(app: Flask) -> None:
    """Headers on every response and the rate limits; call after the blueprints are registered."""
    app.config.setdefault("RATELIMIT_FAILED_PER_ADDRESS", FAILED_PER_ADDRESS)  # the defaults come from
    app.config.setdefault("RATELIMIT_FAILED_PER_ACCOUNT", FAILED_PER_ACCOUNT)  # leaderboard/config.py when
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")  # the app is made by create_app
    app.after_request(_security_headers)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    limiter = Limiter(  # one per app: its counters and its decorated views are this app's
        key_func=get_remote_address,
        application_limits=[lambda: current_app.config["RATELIMIT_FAILED_PER_ADDRESS"]],
        application_limits_deduct_when=_failed,
        headers_enabled=True,
    )
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, _too_many)
    views = app.view_functions
    views["teams.login"] = _per_account(limiter, _login_account)(views["teams.login"])
    views["admin.login"] = _per_account(limiter, lambda: "organizer-login")(views["admin.login"])
    token_limit = limiter.shared_limit(  # one count per team over every endpoint that takes its token
        lambda: current_app.config["RATELIMIT_FAILED_PER_ACCOUNT"], scope="team-token", key_func=_token_account,
        override_defaults=False, deduct_when=_failed,
        exempt_when=lambda: not request.headers.get("Authorization"),
        error_message="Too many requests with a wrong token for this team; wait before trying again.",
    )
    for endpoint in ("api.create_submission", "api.submission", "api.team_submissions"):
        views[endpoint] = token_limit(views[endpoint])


def _too_many(exc: RateLimitExceeded):
    from leaderboard.errors import error_response

    message = exc.description if isinstance(exc.description, str) and "wait" in exc.description else (
        "Too many failed attempts from your address; wait before trying again.")
    response = error_response(429, [message])
    response = current_app.make_response(response)
    retry = getattr(exc, "retry_after", None)
    if "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(int(retry) if retry else 60)
    return response
