"""Who commits: every public operation of the service layer (``intake.accept``, ``jobs.claim`` ...,
``services.*``) runs its writes inside ``write_transaction()`` and so commits or rolls back itself;
views and CLI commands never commit. Building blocks that only change rows in the current
transaction (``recording.record_*``, ``ranking.bump_board_version``, ``jobs.enqueue``) say so.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import sqlalchemy as sa

from leaderboard.extensions import db
from leaderboard.models import Team


def end_read() -> None:
    """End the request's read-only transaction (the session and team lookups of the view), so the
    write below starts fresh. Refuses to run over unflushed ORM changes: they would be written by a
    transaction that never meant to write them."""
    session = db.session
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("a write transaction was started over unsaved changes; commit them in their own operation")
    session.rollback()


@contextlib.contextmanager
def write_transaction(lock_team_id: int | None = None) -> Iterator[None]:
    """One short write transaction, committed when the block ends, rolled back if it raises.

    SQLite: ``BEGIN IMMEDIATE`` (taken by the engine's begin hook, see ``create_app``): a deferred
    transaction that read first could not upgrade to a write once another process committed.
    Elsewhere, ``lock_team_id`` takes a row lock on that team, which serializes the team's
    check-and-insert (the daily limit); the job queue's conditional UPDATEs arbitrate on their own.
    """
    end_read()
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.connection(execution_options={"podium_immediate": True})
    elif lock_team_id is not None:
        db.session.execute(sa.select(Team.id).where(Team.id == lock_team_id).with_for_update())
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
