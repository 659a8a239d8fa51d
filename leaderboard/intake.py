"""Submissions in: store the file, enforce the daily limit atomically, score CSVs, queue checkpoints.

``record_predictions`` and ``record_refusal`` are the two ways a submission gets its outcome,
for CSVs scored in the request and for checkpoints scored by a worker alike. They change the
submission and bump the board version in the current transaction; the caller commits.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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


COPY_CHUNK = 1024 * 1024


def _size(n: int) -> str:
    return f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


@dataclass(frozen=True)
class StoredFile:
    kind: str  # "csv" | "checkpoint"
    sha256: str
    relative: str  # <team-slug>/<sha256>.<ext>, under the storage root
    size: int


def store_file(team: Team, stream: BinaryIO, competition) -> StoredFile:
    """Copy an upload to ``<team-slug>/<sha256>.<ext>``, hashing and size-checking as it streams.

    The kind is decided from the first bytes; a file over its kind's limit is refused before it
    is all read, and nothing of it is kept. A checkpoint never sits in memory whole.
    """
    head = stream.read(64)
    kind = file_kind(head)
    limit = competition.limits.max_csv_bytes if kind == "csv" else competition.limits.max_checkpoint_bytes
    root = podium_state().storage_root
    incoming = root / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(dir=incoming, prefix="upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            chunk = head
            while chunk:
                size += len(chunk)
                if size > limit:
                    raise SubmissionError(
                        f"The file is larger than {_size(limit)}, the limit for a {kind} submission."
                    )
                digest.update(chunk)
                out.write(chunk)
                chunk = stream.read(COPY_CHUNK)
        if size == 0:
            raise SubmissionError("The file is empty; choose your predictions CSV or model checkpoint.")
        sha = digest.hexdigest()
        relative = f"{team.slug}/{sha}.{'csv' if kind == 'csv' else 'safetensors'}"
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)  # same content, same name: replacing is harmless
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return StoredFile(kind=kind, sha256=sha, relative=relative, size=size)


def read_history_upload(stream: BinaryIO | None) -> bytes | None:
    """The bytes of an attached history, read no further than its limit (the request may be as large
    as a checkpoint: reading the part whole would hold hundreds of MiB in memory to refuse them)."""
    if stream is None:
        return None
    from harness.diagnosis import MAX_HISTORY_BYTES

    data = stream.read(MAX_HISTORY_BYTES + 1)
    if len(data) > MAX_HISTORY_BYTES:
        raise SubmissionError(
            f"The history file is larger than {_size(MAX_HISTORY_BYTES)}; a history.csv is one short row per epoch."
        )
    return data


def check_history(data: bytes | None) -> str | None:
    """The training history as text, validated by ``harness.diagnosis.read_history``."""
    if not data:
        return None
    from harness.diagnosis import read_history

    return read_history(data).to_csv()


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes | BinaryIO  # the file's bytes, or a stream positioned at its start
    note: str = ""
    history: bytes | None = None

    def stream(self) -> BinaryIO:
        return io.BytesIO(self.data) if isinstance(self.data, (bytes, bytearray)) else self.data


def _begin_write(team_id: int) -> None:
    """Start a write transaction that serializes this team's check-and-insert.

    SQLite: ``BEGIN IMMEDIATE`` (taken by the engine's begin hook); elsewhere a row lock on the team.
    """
    db.session.commit()  # end the request's read transaction, if any
    if db.session.get_bind().dialect.name == "sqlite":
        db.session.connection(execution_options={"podium_immediate": True})
    else:
        db.session.execute(sa.select(Team.id).where(Team.id == team_id).with_for_update())


def _check_limit(team_id: int, when: dt.datetime, daily_limit: int) -> None:
    if used_today(team_id, when) >= daily_limit:
        raise LimitReached(
            f"Your team has used its {daily_limit} submissions for today (UTC). The count resets at 00:00 UTC."
        )


def accept(team: Team, upload: Upload) -> Submission:
    """Take one submission from ``team``: refused CSVs are kept (and count), as on Kaggle.

    Raises ``LimitReached`` when the team has no submission left today (checked before the file is
    stored, and again, authoritatively, under the write lock), and
    ``SubmissionError`` for a file that cannot be a submission at all (an oversized file, a bad
    history attachment); returns the submission otherwise, scored, refused or queued.
    """
    competition = current_competition()
    history = check_history(upload.history)
    team_id = team.id
    _check_limit(team_id, now(), competition.daily_limit)  # cheap early answer; no file kept for nothing
    from leaderboard.gc import check_quota, discard_unreferenced  # issue 9: storage quota, no orphans

    check_quota(team)
    stored = store_file(team, upload.stream(), competition)
    check_quota(team, stored)
    predictions, messages = None, None
    if stored.kind == "csv":  # parse before taking the write lock: the lock is held only to count and insert
        data = (podium_state().storage_root / stored.relative).read_bytes()
        try:
            predictions = parse_csv_submission(data, current_solution(), competition.classes)
        except SubmissionError as exc:
            messages = exc.messages
    when = now()
    _begin_write(team_id)
    try:
        _check_limit(team_id, when, competition.daily_limit)
        submission = Submission(
            team_id=team_id,
            kind=stored.kind,
            original_name=os.path.basename(upload.filename or "")[:255],
            sha256=stored.sha256,
            stored_path=stored.relative,
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
        if stored.kind == "csv":
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
        discard_unreferenced(stored.relative)  # e.g. the daily-limit race lost under the lock
        raise
    return submission


def storage_path(submission: Submission) -> Path:
    """The stored file of a submission; the path is ours, never the uploader's name."""
    return podium_state().storage_root / submission.stored_path


def daily_limit_left(team_id: int) -> int:
    return max(0, current_competition().daily_limit - used_today(team_id, now()))
