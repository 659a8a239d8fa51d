"""The first release's schema (podium 0.1): teams, submissions, scoring jobs, settings.

An instance made by 0.1 (tables made by ``create_all``, no ``alembic_version``) already has
exactly this; ``leaderboard.dbadmin`` checks that and stamps it at this revision instead of
running it.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "team",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("slug", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=256), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("slug"),
    )
    setting = op.create_table(
        "setting",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "submission",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("original_name", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("stored_path", sa.String(length=512), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("history_csv", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("public_score", sa.Double(), nullable=True),
        sa.Column("private_score", sa.Double(), nullable=True),
        sa.Column("public_ci_low", sa.Double(), nullable=True),
        sa.Column("public_ci_high", sa.Double(), nullable=True),
        sa.Column("result_json", sa.JSON(), nullable=True),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("counts_toward_limit", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"]),
    )
    op.create_index("ix_submission_rank", "submission", ["status", "late", "team_id", "public_score"])
    op.create_index("ix_submission_team_id", "submission", ["team_id"])
    op.create_index("ix_submission_team_created", "submission", ["team_id", "created_at"])
    op.create_table(
        "scoring_job",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("scorer_version", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("worker_name", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("submission_id", "sha256", "scorer_version"),
        sa.ForeignKeyConstraint(["submission_id"], ["submission.id"]),
    )
    op.create_index("ix_scoring_job_status", "scoring_job", ["status"])
    op.create_index("ix_scoring_job_submission_id", "scoring_job", ["submission_id"])
    # The organizer's switches start off; the board version starts at 0 (the board caches' key).
    op.bulk_insert(setting, [{"key": "board_version", "value": "0"}, {"key": "revealed", "value": "0"}])


def downgrade():
    op.drop_table("scoring_job")
    op.drop_table("submission")
    op.drop_table("setting")
    op.drop_table("team")
