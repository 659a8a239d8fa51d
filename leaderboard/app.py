"""``create_app``: the leaderboard's Flask app (flaskr's factory pattern): config, database (migrated by
``dbadmin``), blueprints, hardening."""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from flask import Flask
from sqlalchemy import event
from werkzeug.routing import IntegerConverter

from harness.competition import load_competition, load_solution
from leaderboard.config import UPLOAD_OVERHEAD, Config
from leaderboard.extensions import csrf, db
from leaderboard.state import PodiumState

def _instance_secret(instance: Path, name: str, nbytes: int = 32) -> str:
    """A secret kept in the instance folder, created (mode 0600) on first use.

    Several server processes may start together: the file appears atomically (a hard link of a
    complete temporary file), so they all end up with the first process's value.
    """
    path = instance / name
    if path.is_file():
        value = path.read_text(encoding="utf-8").strip()
        if value:
            return value
    instance.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(nbytes)
    fd, tmp = tempfile.mkstemp(dir=instance, prefix=f".{name}-")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    try:
        os.link(tmp, path)
    except FileExistsError:
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing
        os.replace(tmp, path)  # an empty file left behind: ours replaces it
        return value
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return value


class DatabaseId(IntegerConverter):
    """``<int:...>`` in our routes: at most a signed 32-bit integer, the largest id PostgreSQL's
    ``integer`` id columns hold (SQLite's hold 64 bits), so ``/submissions/99999999999999999999``
    or ``/submissions/2147483648`` is a 404 rather than an overflow (500)."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None, max: int | None = 2**31 - 1,
                 signed: bool = False) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def _sqlite_hooks(engine) -> None:
    """WAL, a 5 s busy timeout, and our own BEGIN (IMMEDIATE when a write must not race)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=10000")  # first: switching to WAL may wait for a lock
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        immediate = conn.get_execution_options().get("podium_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_app(config: dict | None = None) -> Flask:
    """Build the app. ``config`` must give ``COMPETITION_DIR`` (or ``PODIUM_COMPETITION_DIR``); every
    setting is in ``leaderboard.config.Config`` (docs/architecture.md, README "Configuration").

    Two keys belong to the commands that build an app, not to the organizer: ``INSTANCE_PATH`` (the
    instance folder, which ``podium serve --instance`` names) and ``PODIUM_SCHEMA="skip"`` (``podium
    db`` and ``podium backup|restore``, which work on a database at any revision)."""
    config = dict(config or {})
    instance = config.pop("INSTANCE_PATH", None)
    app = Flask(__name__, instance_path=str(Path(instance).resolve()) if instance else None,
                instance_relative_config=True)
    app.url_map.converters["int"] = DatabaseId
    instance_dir = Path(app.instance_path)
    instance_dir.mkdir(parents=True, exist_ok=True)
    settings = Config.resolve(config)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", WTF_CSRF_TIME_LIMIT=None)
    app.config.update(settings.flask_config(instance_dir))
    app.config.update(config)
    if not app.config.get("COMPETITION_DIR"):
        raise ValueError("create_app needs COMPETITION_DIR, the competition directory to serve")
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(instance_dir, "secret_key")

    competition = load_competition(app.config["COMPETITION_DIR"])
    if settings.max_content_length is None:  # the largest submission the competition allows, plus the form
        limits = competition.limits
        app.config["MAX_CONTENT_LENGTH"] = max(limits.max_csv_bytes, limits.max_checkpoint_bytes) + UPLOAD_OVERHEAD
    app.extensions["podium"] = PodiumState(
        competition=competition,
        solution=load_solution(competition),
        storage_root=Path(app.config["STORAGE_ROOT"]).resolve(),
        config=settings,
    )

    db.init_app(app)
    csrf.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _sqlite_hooks(db.engine)
        from leaderboard import models  # noqa: F401  (registers the tables)
        from leaderboard.dbadmin import init_schema

        init_schema(app)  # Alembic owns the schema: a new database is migrated, an out-of-date one refused

    _register_blueprints(app)
    return app


def _register_blueprints(app: Flask) -> None:
    from leaderboard import (admin, api, audit_views, board, errors, explain_views, formatting, jobs_api,
                             kaggle_api, pages, teams)
    from leaderboard.hardening import init_hardening

    app.register_blueprint(board.bp)
    app.register_blueprint(pages.bp)  # Overview, Data, Evaluation, Rules
    app.register_blueprint(explain_views.bp)  # Grad-CAM of a team's own checkpoint
    app.register_blueprint(teams.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # bearer-token JSON: no cookie ever authenticates it
    app.register_blueprint(admin.bp)
    app.register_blueprint(audit_views.bp)  # the organizer's audit page (/admin/audit)
    errors.register(app)
    app.jinja_env.globals.update(formatting.template_globals())
    app.register_blueprint(jobs_api.jobs_api)  # the worker protocol
    kaggle_api.register(app)  # Kaggle's API for the official client, and the Kaggle tab
    init_hardening(app)  # headers, rate limits, session checks, body limits
