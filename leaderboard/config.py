"""Every setting of the leaderboard app in one place: its key, its default and its environment variable.

``create_app(config)`` resolves each key as: the ``config`` dict it was given, else the environment
variable, else the default; the result is a ``Config`` kept on the app (``current_config()``) and
mirrored into ``app.config`` under the same upper-case keys (Flask and its extensions read those).
The README's "Configuration" table lists the same keys.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

DEFAULT_MAX_CONTENT_LENGTH = 640 * 1024 * 1024
UPLOAD_OVERHEAD = 2 * 1024 * 1024  # the history attachment (at most 1 MiB), the note, multipart framing


def _key(default: Any, env: str | None, doc: str, parse: Callable[[str], Any] = str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "parse": parse})


def _flag(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Config:
    """The keys, as Flask config keys in upper case (``job_lease_seconds`` is ``JOB_LEASE_SECONDS``)."""

    competition_dir: str | None = _key(None, "PODIUM_COMPETITION_DIR", "The competition directory to serve (required).")
    sqlalchemy_database_uri: str | None = _key(
        None, "PODIUM_DATABASE_URL", "SQLAlchemy database URL; default SQLite `podium.sqlite3` in the instance folder.")
    storage_root: str | None = _key(
        None, "PODIUM_STORAGE_ROOT", "Where uploaded files are kept; default `submissions/` in the instance folder.")
    secret_key: str | None = _key(
        None, "PODIUM_SECRET_KEY", "Signs sessions, CSRF tokens and job leases; default generated into the instance folder.")
    admin_token: str | None = _key(None, "PODIUM_ADMIN_TOKEN", "The organizer's token; none: no organizer login.")
    worker_token: str | None = _key(None, "PODIUM_WORKER_TOKEN", "The scoring workers' token; none: no worker is accepted.")
    max_content_length: int | None = _key(
        None, "PODIUM_MAX_CONTENT_LENGTH",
        "Largest request body in bytes; default the competition's largest submission limit plus 2 MiB.", int)
    job_lease_seconds: int = _key(120, "PODIUM_JOB_LEASE_SECONDS",
                                  "How long a worker's claim on a job lasts without a heartbeat.", int)
    job_max_attempts: int = _key(3, "PODIUM_JOB_MAX_ATTEMPTS",
                                 "Claims of one checkpoint before it fails for good (our failure: not counted).", int)
    session_cookie_secure: bool = _key(False, "PODIUM_SECURE_COOKIES",
                                       "Mark the session cookie Secure (serve behind HTTPS).", _flag)
    team_storage_quota: int = _key(5000 * 2**20, "PODIUM_TEAM_STORAGE_QUOTA",
                                   "Bytes of stored submissions per team; past it an upload is a 413 (0: no quota).", int)
    team_session_lifetime: float = _key(7 * 24 * 3600.0, "PODIUM_TEAM_SESSION_SECONDS",
                                        "Seconds a team's browser session lasts from its login (not renewed on use).", float)
    admin_session_lifetime: float = _key(12 * 3600.0, "PODIUM_ADMIN_SESSION_SECONDS",
                                         "Seconds an organizer's browser session lasts from its login.", float)
    trusted_proxies: int = _key(0, "PODIUM_TRUSTED_PROXIES",
                                "Reverse proxies in front whose X-Forwarded-For/-Proto hops are trusted.", int)
    ratelimit_failed_per_address: str = _key("20 per minute; 200 per day", "PODIUM_RATELIMIT_PER_ADDRESS",
                                             "Failed logins and token uses allowed per client address, all accounts together.")
    ratelimit_failed_per_account: str = _key("10 per minute; 100 per day", "PODIUM_RATELIMIT_PER_ACCOUNT",
                                             "Failed logins and token uses allowed per account (a team, the organizer) "
                                             "from one address.")
    ratelimit_failed_per_account_total: str = _key(
        "100 per minute; 1000 per day", "PODIUM_RATELIMIT_PER_ACCOUNT_TOTAL",
        "Failed logins and token uses allowed per account from all addresses together (a distributed guess); "
        "keep it above what one address may make.")
    ratelimit_storage_uri: str = _key("memory://", "PODIUM_RATELIMIT_STORAGE_URI",
                                      "Flask-Limiter's counter storage; per process unless shared (e.g. redis://).")
    body_limit_other: int = _key(256 * 1024, "PODIUM_BODY_LIMIT_OTHER",
                                 "Largest request body in bytes on paths that take no upload (forms, JSON); "
                                 "refused (413) from its headers or as it arrives, never spooled.", int)
    body_limit_service: int = _key(32 * 2**20, "PODIUM_BODY_LIMIT_SERVICE",
                                   "Largest body the scoring workers (their results, under /api/jobs/) and the "
                                   "organizer's token (POST /api/kaggle/board) may send; the token is checked first.", int)
    connection_limit: int = _key(500, "PODIUM_CONNECTION_LIMIT",
                                 "Most open connections at once (waitress; per process under gunicorn). "
                                 "`podium serve --connection-limit`.", int)
    channel_timeout: int = _key(60, "PODIUM_CHANNEL_TIMEOUT",
                                "Seconds waitress keeps an idle or stalled connection. `podium serve --channel-timeout`.",
                                int)
    orphan_grace_seconds: float = _key(3600.0, "PODIUM_ORPHAN_GRACE_SECONDS",
                                       "Age a stored file must reach before the orphan sweep (at start, `podium gc`) "
                                       "may remove it: spares uploads in flight.", float)
    kaggle_upload_seconds: int = _key(3600, "PODIUM_KAGGLE_UPLOAD_SECONDS",
                                      "How long the upload URL of `kaggle competitions submit` stays valid (single use).", int)
    kaggle_max_open_uploads: int = _key(5, "PODIUM_KAGGLE_MAX_OPEN_UPLOADS",
                                        "Upload URLs of `kaggle competitions submit` a team may hold open at once.", int)
    now: Callable | None = _key(None, None, "Tests only: a callable returning the current UTC time.")

    @classmethod
    def resolve(cls, given: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> "Config":
        """Each key from ``given`` (upper-case keys), else its environment variable, else its default."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in dataclasses.fields(cls):
            key, env = f.name.upper(), f.metadata["env"]
            if key in given:
                values[f.name] = given[key]
            elif env and environ.get(env):
                values[f.name] = f.metadata["parse"](environ[env])
        return cls(**values)

    def flask_config(self, instance_dir: Path) -> dict[str, Any]:
        """The upper-case keys for ``app.config``, with the instance-folder defaults filled in."""
        out = {f.name.upper(): getattr(self, f.name) for f in dataclasses.fields(self)}
        out["SQLALCHEMY_DATABASE_URI"] = self.sqlalchemy_database_uri or f"sqlite:///{instance_dir / 'podium.sqlite3'}"
        out["STORAGE_ROOT"] = self.storage_root or str(instance_dir / "submissions")
        out["MAX_CONTENT_LENGTH"] = self.max_content_length or DEFAULT_MAX_CONTENT_LENGTH
        return {k: v for k, v in out.items() if v is not None or k in ("ADMIN_TOKEN", "WORKER_TOKEN", "NOW")}


def default(key: str) -> Any:
    """The default of one key (``"CONNECTION_LIMIT"`` or ``"connection_limit"``): for command-line help and options."""
    return Config.__dataclass_fields__[key.lower()].default


def documentation() -> list[tuple[str, str, str, str]]:
    """(key, environment variable, default, meaning) per key: the README's table."""
    return [(f.name.upper(), f.metadata["env"] or "—", repr(f.default), f.metadata["doc"]) for f in dataclasses.fields(Config)]
