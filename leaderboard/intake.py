"""Submissions in: store the file, enforce the daily limit atomically, score CSVs, queue checkpoints.

``record_predictions`` and ``record_refusal`` are the two ways a submission gets its outcome,
for CSVs scored in the request and for checkpoints scored by a worker alike. They change the
submission and bump the board version in the current transaction; the caller commits.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from harness.errors import SubmissionError
from harness.scoring import file_kind, score_predictions
from harness.submission import parse_csv_submission
from leaderboard.extensions import db
from leaderboard.models import Setting, Submission, Team
from leaderboard.state import current_competition, current_solution, now, podium_state

BOARD_VERSION = "board_version"
MAX_NOTE_CHARS = 500


class LimitReached(SubmissionError):
    """The team used its submissions for this UTC day."""


def bump_board_version() -> None:
    """Invalidate every cached board, in this process and others, when the transaction commits."""
    db.session.execute(
        sa.update(Setting)
        .where(Setting.key == BOARD_VERSION)
        .values(value=sa.cast(sa.cast(Setting.value, sa.Integer) + 1, sa.String))
    )


def board_version() -> str:
    return db.session.scalar(sa.select(Setting.value).where(Setting.key == BOARD_VERSION)) or "0"


def record_predictions(submission: Submission, predictions: np.ndarray) -> None:
    """Score predictions (class indices in test.npz order) onto ``submission``; the caller commits.

    Predictions the harness refuses (wrong length, invalid class) become a refusal that is the
    team's (it counts toward the limit).
    """
    try:
        report = score_predictions(np.asarray(predictions), current_solution(), current_competition())
    except SubmissionError as exc:
        record_refusal(submission, exc.messages, ours=False)
        return
    submission.public_score = float(report.primary("public"))
    submission.private_score = float(report.primary("private"))
    submission.public_ci_low = float(report.public.ci_low)
    submission.public_ci_high = float(report.public.ci_high)
    submission.result_json = report.to_dict()
    submission.status = "scored"
    submission.messages = []
    submission.counts_toward_limit = True
    bump_board_version()


def record_refusal(submission: Submission, messages: list[str], ours: bool) -> None:
    """Mark ``submission`` refused (the team's problem, counts) or failed (ours, does not count)."""
    submission.status = "failed" if ours else "refused"
    submission.messages = [str(m) for m in messages] or ["The submission could not be scored."]
    submission.counts_toward_limit = not ours
    submission.public_score = submission.private_score = None
    submission.public_ci_low = submission.public_ci_high = None
    submission.result_json = None
    bump_board_version()


def utc_day(when: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = when.astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + dt.timedelta(days=1)


def used_today(team_id: int, when: dt.datetime) -> int:
    start, end = utc_day(when)
    return db.session.scalar(
        sa.select(sa.func.count(Submission.id)).where(
            Submission.team_id == team_id,
            Submission.counts_toward_limit.is_(True),
            Submission.created_at >= start,
            Submission.created_at < end,
        )
    ) or 0


def store_file(team: Team, data: bytes, kind: str) -> tuple[str, str]:
    """Write ``data`` content-addressed as ``<team-slug>/<sha256>.<ext>``; (sha256, relative path)."""
    sha = hashlib.sha256(data).hexdigest()
    ext = "csv" if kind == "csv" else "safetensors"
    relative = f"{team.slug}/{sha}.{ext}"
    target = podium_state().storage_root / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    return sha, relative


def check_history(data: bytes | None) -> str | None:
    """The training history as text, validated by ``harness.diagnosis.read_history``."""
    if not data:
        return None
    from harness.diagnosis import read_history

    return read_history(data).to_csv()


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes
    note: str = ""
    history: bytes | None = None


def _begin_write(team_id: int) -> None:
    """Start a write transaction that serializes this team's check-and-insert.

    SQLite: ``BEGIN IMMEDIATE`` (taken by the engine's begin hook); elsewhere a row lock on the team.
    """
    db.session.commit()  # end the request's read transaction, if any
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.connection(execution_options={"podium_immediate": True})
    else:
        db.session.execute(sa.select(Team.id).where(Team.id == team_id).with_for_update())


def accept(team: Team, upload: Upload) -> Submission:
    """Take one submission from ``team``: refused CSVs are kept (and count), as on Kaggle.

    Raises ``LimitReached`` (nothing stored) when the team has no submission left today, and
    ``SubmissionError`` for a file that cannot be a submission at all (an oversized file, a bad
    history attachment); returns the submission otherwise, scored, refused or queued.
    """
    competition = current_competition()
    kind = file_kind(upload.data[:64])
    limit = competition.limits.max_csv_bytes if kind == "csv" else competition.limits.max_checkpoint_bytes
    if len(upload.data) > limit:
        raise SubmissionError(
            f"The file is {len(upload.data) / 2**20:.1f} MiB; the limit for a {kind} submission is "
            f"{limit / 2**20:.0f} MiB."
        )
    if not upload.data:
        raise SubmissionError("The file is empty; choose your predictions CSV or model checkpoint.")
    history = check_history(upload.history)
    team_id = team.id
    sha, relative = store_file(team, upload.data, kind)
    predictions, messages = None, None
    if kind == "csv":  # parse before taking the write lock: the lock is held only to count and insert
        try:
            predictions = parse_csv_submission(upload.data, current_solution(), competition.classes)
        except SubmissionError as exc:
            messages = exc.messages
    when = now()
    _begin_write(team_id)
    try:
        used = used_today(team_id, when)
        if used >= competition.daily_limit:
            raise LimitReached(
                f"Your team has used its {competition.daily_limit} submissions for today (UTC). "
                f"The count resets at 00:00 UTC."
            )
        submission = Submission(
            team_id=team_id,
            kind=kind,
            original_name=os.path.basename(upload.filename or "")[:255],
            sha256=sha,
            stored_path=relative,
            note=(upload.note or "").strip()[:MAX_NOTE_CHARS],
            history_csv=history,
            status="queued",
            messages=[],
            created_at=when,
            late=competition.is_late(when),
            counts_toward_limit=True,
        )
        db.session.add(submission)
        db.session.flush()
        if kind == "csv":
            if messages is not None:
                record_refusal(submission, messages, ours=False)
            else:
                record_predictions(submission, predictions)
        else:
            from leaderboard.jobs import enqueue

            enqueue(submission)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return submission


def storage_path(submission: Submission) -> Path:
    """The stored file of a submission; the path is ours, never the uploader's name."""
    return podium_state().storage_root / submission.stored_path


def is_ranked(submission: Submission) -> bool:
    return submission.status == "scored" and not submission.late


def daily_limit_left(team_id: int) -> int:
    return max(0, current_competition().daily_limit - used_today(team_id, now()))
