"""The database: teams, submissions, scoring jobs, and the organizer's settings.

Timestamps are timezone-aware UTC in Python; they are stored as naive UTC so that SQLite
(which has no time zones) and PostgreSQL compare them the same way.
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from leaderboard.extensions import db
from leaderboard.protocol import JobStatus, SubmissionStatus


def wall_clock_utc() -> dt.datetime:
    """Column defaults: the real time (services pass the app's clock, ``state.now``, explicitly)."""
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(sa.types.TypeDecorator):
    """An aware UTC datetime in Python, a naive UTC timestamp in the database."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use an aware UTC datetime")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc)


class Team(db.Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    slug: Mapped[str] = mapped_column(sa.String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(sa.String(256))
    # Bumped on logout and token rotation: every browser session opened before ends (leaderboard/sessions.py).
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=wall_clock_utc)

    submissions: Mapped[list["Submission"]] = relationship(back_populates="team", lazy="raise_on_sql")

    def __repr__(self) -> str:
        return f"<Team {self.id} {self.slug}>"


class Submission(db.Model):
    __table_args__ = (
        sa.Index("ix_submission_team_created", "team_id", "created_at"),
        sa.Index("ix_submission_rank", "status", "late", "team_id", "public_score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(sa.ForeignKey("team.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # "csv" | "checkpoint"
    original_name: Mapped[str] = mapped_column(sa.String(255), default="")
    sha256: Mapped[str] = mapped_column(sa.String(64))
    stored_path: Mapped[str] = mapped_column(sa.String(512))  # relative to the storage root
    note: Mapped[str] = mapped_column(sa.Text, default="")
    history_csv: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    status: Mapped[str] = mapped_column(sa.String(16), default=SubmissionStatus.QUEUED)  # a SubmissionStatus
    messages: Mapped[list] = mapped_column(sa.JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=wall_clock_utc)
    late: Mapped[bool] = mapped_column(default=False)
    public_score: Mapped[float | None] = mapped_column(nullable=True)
    private_score: Mapped[float | None] = mapped_column(nullable=True)
    public_ci_low: Mapped[float | None] = mapped_column(nullable=True)
    public_ci_high: Mapped[float | None] = mapped_column(nullable=True)
    result_json: Mapped[dict | None] = mapped_column(sa.JSON, nullable=True)
    selected: Mapped[bool] = mapped_column(default=False)
    counts_toward_limit: Mapped[bool] = mapped_column(default=True)

    team: Mapped[Team] = relationship(back_populates="submissions")

    def __repr__(self) -> str:
        return f"<Submission {self.id} team={self.team_id} {self.status}>"


class ScoringJob(db.Model):
    __table_args__ = (sa.UniqueConstraint("submission_id", "sha256", "scorer_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(sa.ForeignKey("submission.id"), index=True)
    sha256: Mapped[str] = mapped_column(sa.String(64))
    scorer_version: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), default=JobStatus.QUEUED, index=True)  # a JobStatus
    worker_name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=wall_clock_utc)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=wall_clock_utc, onupdate=wall_clock_utc)

    submission: Mapped[Submission] = relationship()


class Setting(db.Model):
    """Organizer switches that must survive restarts and be shared by every server process."""

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
