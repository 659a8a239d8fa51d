"""Revocable team sessions (issue 9): ``team.session_version``, bumped on logout and token rotation.

Every browser session records the version it was opened under; a session whose version is no
longer the team's has ended (``leaderboard/sessions.py``). Existing teams start at 0, so sessions
opened before the upgrade keep working until the team next logs out or gets a new token.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("team") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("team") as batch:
        batch.drop_column("session_version")
