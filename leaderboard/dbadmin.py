"""The database schema, owned by Alembic (through Flask-Migrate): ``podium db upgrade|current``.

The migrations live in ``leaderboard/migrations``. ``create_app`` calls ``init_schema``:

* a new, empty database is brought to the newest revision (the migrations make it, never
  ``create_all``);
* a database at the newest revision is used as it is;
* anything else (an older revision, or an instance made by podium 0.1, which has the tables but no
  ``alembic_version``) is refused with a ``SchemaOutOfDate`` naming ``podium db upgrade``.

Every check-and-migrate runs in one transaction under a lock (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: a transaction-level advisory lock), so several server processes starting together on a
new database take turns and the first one creates it. SQLite and PostgreSQL both make DDL
transactional, so a migration that fails leaves the database as it was.

``podium db upgrade`` also adopts a 0.1 instance in place: its tables are checked against the
0.1 schema (below), then it is stamped at revision 0001 (which equals that schema) and upgraded.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import click
import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from flask_migrate import Migrate

from harness.errors import PodiumError
from leaderboard.extensions import db

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
V01_REVISION = "0001"  # the revision that equals podium 0.1's schema
MIGRATION_LOCK = 0x706F6469756D  # PostgreSQL advisory lock key ("podium")

migrate = Migrate(directory=str(MIGRATIONS))

# podium 0.1 made its tables with create_all and kept no revision: these are its tables and columns.
V01_COLUMNS = {
    "team": {"id", "name", "slug", "token_hash", "created_at"},
    "setting": {"key", "value"},
    "submission": {
        "id", "team_id", "kind", "original_name", "sha256", "stored_path", "note", "history_csv", "status",
        "messages", "created_at", "late", "public_score", "private_score", "public_ci_low", "public_ci_high",
        "result_json", "selected", "counts_toward_limit",
    },
    "scoring_job": {
        "id", "submission_id", "sha256", "scorer_version", "status", "worker_name", "lease_expires_at",
        "attempts", "last_error", "created_at", "updated_at",
    },
}
V01_INDEXES = {
    "submission": {"ix_submission_rank", "ix_submission_team_id", "ix_submission_team_created"},
    "scoring_job": {"ix_scoring_job_status", "ix_scoring_job_submission_id"},
}


class SchemaError(PodiumError):
    """The database's schema is not one this podium can use or upgrade."""


class SchemaOutOfDate(SchemaError):
    """The database is older than this podium: ``podium db upgrade`` brings it up to date."""


@dataclass(frozen=True)
class SchemaState:
    current: str | None  # the alembic revision; None: none recorded
    head: str  # the newest revision this podium has
    tables: frozenset[str]  # podium's tables present in the database

    @property
    def empty(self) -> bool:
        return self.current is None and not self.tables

    @property
    def is_v01(self) -> bool:
        return self.current is None and bool(self.tables)

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.empty:
            return "empty (no tables yet)"
        if self.is_v01:
            return "podium 0.1 (tables without a recorded revision)"
        return f"revision {self.current}" + (" (newest)" if self.up_to_date else f" (newest is {self.head})")


def head_revision() -> str:
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"podium's migrations have {len(heads)} heads ({', '.join(heads)}); expected one.")
    return heads[0]


def _state(conn: sa.Connection) -> SchemaState:
    names = set(sa.inspect(conn).get_table_names())
    current = MigrationContext.configure(conn).get_current_revision() if "alembic_version" in names else None
    return SchemaState(current=current, head=head_revision(), tables=frozenset(names & set(V01_COLUMNS)))


@contextlib.contextmanager
def _locked(engine: sa.Engine):
    """A connection in a transaction that holds the migration lock until it commits."""
    options = {"podium_immediate": True} if engine.dialect.name == "sqlite" else {}
    with engine.connect().execution_options(**options) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        yield conn


def _alembic_config(conn: sa.Connection):
    config = current_app.extensions["migrate"].migrate.get_config(str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def check_v01_tables(conn: sa.Connection) -> None:
    """Refuse to adopt tables that are not podium 0.1's (a half-made or foreign database)."""
    inspector = sa.inspect(conn)
    problems = []
    names = set(inspector.get_table_names())
    for table, expected in V01_COLUMNS.items():
        if table not in names:
            problems.append(f"table {table!r} is missing")
            continue
        found = {c["name"] for c in inspector.get_columns(table)}
        if found != expected:
            missing, extra = sorted(expected - found), sorted(found - expected)
            problems.append(f"table {table!r} differs (missing columns: {missing or 'none'}, "
                            f"unexpected: {extra or 'none'})")
        indexes = {i["name"] for i in inspector.get_indexes(table)}
        if not V01_INDEXES.get(table, set()) <= indexes:
            problems.append(f"table {table!r} lacks indexes {sorted(V01_INDEXES[table] - indexes)}")
    if problems:
        raise SchemaError(["This database has podium tables but no schema revision, and they are not "
                           "podium 0.1's, so it cannot be adopted:", *problems])


def upgrade_command_hint(app: Flask) -> str:
    """The ``podium db upgrade`` command line for this app's competition, instance and database."""
    parts = ["podium db upgrade", f"--competition {app.config['COMPETITION_DIR']}", f"--instance {app.instance_path}"]
    url = sa.make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url != sa.make_url(f"sqlite:///{Path(app.instance_path) / 'podium.sqlite3'}"):
        parts.append(f"--db {url.render_as_string(hide_password=True)}")
    return " ".join(parts)


def init_schema(app: Flask) -> None:
    """Called by ``create_app`` in an app context: make a new database, accept a current one, refuse
    an out-of-date one (``SchemaOutOfDate``). ``PODIUM_SCHEMA="skip"`` leaves the database alone
    (the ``podium db`` and backup commands, which work on any revision)."""
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    if app.config.get("PODIUM_SCHEMA", "check") == "skip":
        return
    with _locked(db.engine) as conn:
        state = _state(conn)
        if state.up_to_date:
            return
        if state.empty:
            command.upgrade(_alembic_config(conn), "head")
            return
    if state.current is not None and state.current not in _known_revisions():
        raise SchemaError(f"The database is at schema revision {state.current}, which this podium does not know "
                          f"(it was upgraded by a newer podium). Install that version of podium.")
    raise SchemaOutOfDate(
        [f"The database schema is {state.describe()}; this podium needs revision {state.head}.",
         "Stop the servers and workers on it, take a backup (podium backup), then run:",
         f"  {upgrade_command_hint(app)}"]
    )


def _known_revisions() -> set[str]:
    return {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}


def upgrade(app: Flask) -> tuple[SchemaState, SchemaState]:
    """Bring the app's database to the newest revision (adopting a 0.1 instance); the states before
    and after."""
    with app.app_context(), _locked(db.engine) as conn:
        before = _state(conn)
        if before.current is not None and before.current not in _known_revisions():
            raise SchemaError(f"The database is at schema revision {before.current}, which this podium does not "
                              f"know (it was upgraded by a newer podium).")
        if before.is_v01:
            check_v01_tables(conn)
            command.stamp(_alembic_config(conn), V01_REVISION)
        if not _state(conn).up_to_date:
            command.upgrade(_alembic_config(conn), "head")
        after = _state(conn)
    return before, after


def state(app: Flask) -> SchemaState:
    with app.app_context(), db.engine.connect() as conn:
        return _state(conn)


# --- podium db -------------------------------------------------------------------------------------

def _app(competition: str, database: str | None, instance: str | None) -> Flask:
    from leaderboard import create_app
    from leaderboard.cli import _config

    return create_app({**_config(competition, database, instance), "PODIUM_SCHEMA": "skip"})


def _competition_option(f):
    from leaderboard.cli import _competition_option as options

    return options(f)


@click.group("db")
def db_group() -> None:
    """The leaderboard database's schema (Alembic migrations): upgrade, current, revision."""


@db_group.command("upgrade")
@_competition_option
def upgrade_command(competition: str, db: str | None, instance: str | None) -> int:
    """Bring the database to this podium's schema (an instance made by podium 0.1 is adopted in place).

    Stop the servers and workers first and take a backup (podium backup)."""
    before, after = upgrade(_app(competition, db, instance))
    if before.current == after.current and not before.is_v01:
        click.echo(f"database already at the newest schema: {after.describe()}")
    else:
        click.echo(f"database upgraded: {before.describe()} -> {after.describe()}")
    return 0


@db_group.command("current")
@_competition_option
def current_command(competition: str, db: str | None, instance: str | None) -> int:
    """Show the database's schema revision and whether it is up to date (exit 1 when it is not)."""
    now = state(_app(competition, db, instance))
    click.echo(f"schema: {now.describe()}")
    if not now.up_to_date:
        click.echo("run `podium db upgrade` (same options) to bring it up to date", err=True)
        return 1
    return 0


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="What the new revision changes.")
@_competition_option
def revision_command(message: str, competition: str, db: str | None, instance: str | None) -> int:
    """For podium's developers: write a new migration from the models' changes (Alembic autogenerate).

    The database given must be at the newest revision; review the file before committing it."""
    from alembic.autogenerate import compare_metadata

    from leaderboard.extensions import db as database

    app = _app(competition, db, instance)
    with app.app_context(), _locked(database.engine) as conn:
        now = _state(conn)
        if not now.up_to_date:
            raise SchemaOutOfDate(f"The database is {now.describe()}; upgrade it first (podium db upgrade).")
        if not compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                database.metadata):
            raise SchemaError("The models and the migrations agree: there is no change to write a revision for.")
        number = len(_known_revisions()) + 1
        script = command.revision(_alembic_config(conn), message=message, autogenerate=True,
                                  rev_id=f"{number:04d}")
    click.echo(f"wrote {script.path}")
    return 0
