"""Alembic's environment for the leaderboard (Flask-Migrate's, run inside the app's context).

``leaderboard.dbadmin`` passes the connection it already holds (with the migration lock taken and
a transaction open) as ``config.attributes["connection"]``; the migrations run on it, in that
transaction, so several processes starting on a new database take turns.
"""
from __future__ import annotations

from alembic import context
from flask import current_app

config = context.config
target_db = current_app.extensions["migrate"].db


def run_migrations_offline() -> None:
    context.configure(url=str(target_db.engine.url), target_metadata=target_db.metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_db.metadata, render_as_batch=True,
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    with target_db.engine.connect() as connection:
        _run(connection)
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
