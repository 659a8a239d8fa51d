"""Response headers (a strict Content-Security-Policy, no framing, nosniff, Referrer-Policy) and the
rate limits on logins and tokens (Flask-Limiter).

The pages run no script at all: the charts are SVG drawn on the server. The CSP allows scripts
from this site's ``/static`` only (none today), never inline ones. The one ``<style>`` element (the
board's highlight of the viewer's row) carries the request's nonce.

Rate limits apply to *authentication attempts* only: a POST to the team or organizer login, the
Kaggle client's token check (``IntrospectToken``, the token in the body), and any request that
carries an ``Authorization`` header. The public board, the pages and a browser with a session are
never limited. Only *failed* attempts count (a 401, or a wrong team token where the answer is a
404 or 403); a valid token or login never does. Three counters, each checked before the
credential is (so a refused attempt costs no password hash) and each answered 429 with
``Retry-After`` once spent, even for the right credential (otherwise the 429 would tell a guesser
which guess was right):

- per address, all accounts together: ``RATELIMIT_FAILED_PER_ADDRESS``;
- per account *from one address*: ``RATELIMIT_FAILED_PER_ACCOUNT``. An account is a team (its
  login name and its tokens ``<team id>.<secret>`` are one account) or the organizer login. A
  hostile address locks only itself out of that account: the team and the organizer still log in
  from their own addresses;
- per account from all addresses together: ``RATELIMIT_FAILED_PER_ACCOUNT_TOTAL``, a high
  ceiling that bounds a guess spread over many addresses. One address cannot reach it while it
  stays above what the first two allow one address (the defaults: 10 a minute and 100 a day from
  one address against 100 a minute and 1000 a day in all); about ten addresses together can (an
  address is an IPv4 address or an IPv6 /64: ``client_address``), and then
  the account is refused for everyone until the window ends: the price of bounding brute force.

Counters live in memory (``RATELIMIT_STORAGE_URI``, default ``memory://``), per server process: one
waitress process (``podium serve``) shares them; several gunicorn workers each keep their own, so
point ``RATELIMIT_STORAGE_URI`` at a shared store (``redis://...``, which needs ``pip install
redis``) there; if that store becomes unreachable, each process counts in its own memory meanwhile. Behind a reverse proxy the address is the proxy's unless ``TRUSTED_PROXIES``
(``podium serve --proxies N``) wraps the app in ``werkzeug.middleware.proxy_fix.ProxyFix``.

Every other 429 (a team's daily submission limit) gets ``Retry-After`` too: the seconds to the
next 00:00 UTC by the app's clock, when the count resets.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import math
import secrets
import time

from flask import Flask, current_app, g, jsonify, request
from flask_limiter import ApplicationLimit, Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from leaderboard.auth import basic_credentials, token_team_id

MIN_ADMIN_TOKEN_CHARS = 32

# Endpoints where a POST is an authentication attempt without an Authorization header.
AUTH_ENDPOINTS = frozenset({"teams.login", "admin.login", "kaggle_api.introspect_token"})

ADDRESS_MESSAGE = "Too many failed attempts from your address; wait before trying again."
ACCOUNT_MESSAGE = "Too many failed attempts for this account from your address; wait before trying again."
TOTAL_MESSAGE = ("Too many failed attempts for this account from many addresses; it is locked for everyone "
                 "for a while. Wait before trying again, and tell the organizer.")


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


def security_headers(headers) -> None:
    """Set the security headers on a response's headers (a werkzeug ``Headers``)."""
    headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")


def _after_request(response):
    security_headers(response.headers)
    if response.status_code == 429 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(_seconds_to_utc_midnight())
    return response


def _seconds_to_utc_midnight() -> int:
    from leaderboard.state import now

    moment = now().astimezone(dt.timezone.utc)
    midnight = dt.datetime.combine(moment.date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    return max(1, math.ceil((midnight - moment).total_seconds()))


# ---- who is trying ------------------------------------------------------------------------------

def authentication_attempt() -> bool:
    """Does this request present a credential (and so count toward the limits when it fails)?"""
    if request.headers.get("Authorization"):
        return True
    return request.method == "POST" and request.endpoint in AUTH_ENDPOINTS


def _presented_token() -> str:
    """The team token a request presents, if any: Bearer, Basic (the Kaggle key), or IntrospectToken's body."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        credentials = basic_credentials(value)
        return credentials[1] if credentials else ""
    if request.endpoint == "kaggle_api.introspect_token":
        body = request.get_json(silent=True)
        token = body.get("token") if isinstance(body, dict) else None
        return token if isinstance(token, str) else ""
    return ""


def account() -> str:
    """The account an attempt is on: ``team:<id>`` (a team's login name or its token), ``organizer``
    (the organizer login), or ``""`` (a worker or organizer bearer token: counted per address only)."""
    if "podium_account" not in g:
        g.podium_account = _account()
    return g.podium_account


def _account() -> str:
    if request.method == "POST" and request.endpoint == "admin.login":
        return "organizer"
    if request.method == "POST" and request.endpoint == "teams.login":
        import sqlalchemy as sa

        from leaderboard.extensions import db
        from leaderboard.models import Team

        name = request.form.get("name", "").strip()
        team_id = db.session.scalar(sa.select(Team.id).where(Team.name == name)) if name else None
        return f"team:{team_id}" if team_id is not None else "team-name:" + name.casefold()[:100]
    team_id = token_team_id(_presented_token())
    return f"team:{team_id}" if team_id is not None else ""


def client_address() -> str:
    """The address the per-address limits count: the client's IPv4 address, or its IPv6 /64 (one
    host or home network holds a whole /64, and would otherwise be 2**64 addresses)."""
    address = get_remote_address() or ""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


def _account_from_address() -> str:
    return f"{account()}@{client_address()}"


def _failed(response) -> bool:
    """A failed authentication: a 401, or a wrong team token where the answer is another status (the
    read API answers 404 rather than telling whether a submission exists; the Kaggle API 403)."""
    return response.status_code == 401 or bool(g.get("podium_auth_failed"))


def _not_attempt() -> bool:
    return not authentication_attempt()


def _no_account() -> bool:
    return not authentication_attempt() or not account()


def _limit(config_key: str, key_function, scope: str, message: str, exempt_when) -> ApplicationLimit:
    return ApplicationLimit(lambda: current_app.config[config_key], key_function=key_function, scope=scope,
                            exempt_when=exempt_when, deduct_when=_failed, error_message=message)


# ---- the app --------------------------------------------------------------------------------------

def init_security(app: Flask) -> None:
    """Headers on every response and the rate limits; call after the blueprints are registered."""
    from harness.errors import PodiumError

    app.after_request(_after_request)
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    limiter = Limiter(  # one per app: its counters are this app's
        key_func=client_address,
        application_limits=[
            _limit("RATELIMIT_FAILED_PER_ADDRESS", client_address, "auth-address", ADDRESS_MESSAGE, _not_attempt),
            _limit("RATELIMIT_FAILED_PER_ACCOUNT", _account_from_address, "auth-account-address", ACCOUNT_MESSAGE,
                   _no_account),
            _limit("RATELIMIT_FAILED_PER_ACCOUNT_TOTAL", account, "auth-account", TOTAL_MESSAGE, _no_account),
        ],
        storage_uri=app.config["RATELIMIT_STORAGE_URI"],
        headers_enabled=False,  # Retry-After on a 429 is ours (_too_many); no X-RateLimit-* on every answer
        fail_on_first_breach=True,
        in_memory_fallback_enabled=True,  # a shared store that goes away: count per process (logged), not 500s
    )
    try:
        limiter.init_app(app)
    except Exception as exc:  # noqa: BLE001  (limits raises its own ConfigurationError, or ImportError)
        uri = str(app.config["RATELIMIT_STORAGE_URI"])
        hint = " A redis:// store needs the redis package: pip install redis." if uri.startswith(("redis", "rediss")) else ""
        raise PodiumError(f"The rate-limit store RATELIMIT_STORAGE_URI={uri!r} cannot be used: {exc}.{hint}") from None
    app.extensions["podium_limiter"] = limiter
    limiter.request_filter(_not_attempt)  # a page view is no attempt: skip the limiter's work at once
    app.register_error_handler(RateLimitExceeded, _too_many)


KAGGLE_API_PREFIX = "/api/v1/"  # leaderboard/kaggle_api.py


def _too_many(exc: RateLimitExceeded):
    from leaderboard.errors import error_response

    ours = (ADDRESS_MESSAGE, ACCOUNT_MESSAGE, TOTAL_MESSAGE)
    message = exc.description if exc.description in ours else ADDRESS_MESSAGE
    if request.path.startswith(KAGGLE_API_PREFIX):  # the official kaggle client reads Kaggle's error shape
        response = current_app.make_response((jsonify({"code": 429, "message": message}), 429))
    else:
        response = current_app.make_response(error_response(429, [message]))
    breached = current_app.extensions["podium_limiter"].current_limit
    retry = breached.window[0] - time.time() if breached is not None else 60  # when the breached window ends
    response.headers["Retry-After"] = str(max(1, math.ceil(retry)))
    return response
