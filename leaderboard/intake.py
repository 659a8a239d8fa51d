"""Submissions in: store the file, enforce the daily limit atomically, score CSVs, queue checkpoints.

``accept`` is the service operation (it owns its transaction); ``submit`` wraps it with the one
mapping of its outcome to an HTTP status that the upload page and the API share. The outcome of a
CSV is recorded by ``leaderboard.recording``, the same way as a rescore's and a worker's.
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
from harness.scoring import file_kind
from harness.submission import parse_csv_submission
from harness.units import size_text
from leaderboard.extensions import db
from leaderboard.jobs import enqueue
from leaderboard.models import Submission, Team
from leaderboard.protocol import SubmissionStatus
from leaderboard.recording import csv_outcome, record
from leaderboard.state import current_competition, current_solution, now, podium_state
from leaderboard.transactions import write_transaction

MAX_NOTE_CHARS = 500


class LimitReached(SubmissionError):
    """The team used its submissions for this UTC day."""


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
                        f"The file is larger than {size_text(limit)}, the limit for a {kind} submission."
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
            f"The history file is larger than {size_text(MAX_HISTORY_BYTES)}; a history.csv is one short row per epoch."
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


@dataclass(frozen=True)
class ParsedCsv:
    """A stored CSV read against the answers: its predictions, or the messages that refuse it."""

    predictions: np.ndarray | None = None
    messages: list[str] | None = None
    ours: bool = False  # the refusal is our fault (the stored file is gone): it does not count


def parse_stored_csv(relative: str) -> ParsedCsv:
    """Parse a stored CSV (``<team-slug>/<sha256>.csv``): the path of an upload and of a rescore."""
    try:
        data = (podium_state().storage_root / relative).read_bytes()
    except OSError:
        return ParsedCsv(messages=["The stored file is missing on the server."], ours=True)
    try:
        return ParsedCsv(predictions=parse_csv_submission(data, current_solution(), current_competition().classes))
    except SubmissionError as exc:
        return ParsedCsv(messages=exc.messages)


def _check_limit(team_id: int, when: dt.datetime, daily_limit: int) -> None:
    if used_today(team_id, when) >= daily_limit:
        raise LimitReached(
            f"Your team has used its {daily_limit} submissions for today (UTC). The count resets at 00:00 UTC."
        )


def accept(team: Team, upload: Upload) -> Submission:
    """Take one submission from ``team``: refused CSVs are kept (and count), as on Kaggle. Commits.

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
    # Parse and score before taking the write lock: the lock is held only to count and insert.
    outcome = csv_outcome(parse_stored_csv(stored.relative)) if stored.kind == "csv" else None
    when = now()
    try:
        with write_transaction(lock_team_id=team_id):
            _check_limit(team_id, when, competition.daily_limit)
            submission = Submission(
                team_id=team_id,
                kind=stored.kind,
                original_name=os.path.basename(upload.filename or "")[:255],
                sha256=stored.sha256,
                stored_path=stored.relative,
                note=(upload.note or "").strip()[:MAX_NOTE_CHARS],
                history_csv=history,
                status=SubmissionStatus.QUEUED,
                messages=[],
                created_at=when,
                late=competition.is_late(when),
                counts_toward_limit=True,
            )
            db.session.add(submission)
            if outcome is not None:
                record(submission, outcome)  # one INSERT, with its score
            else:
                db.session.flush()  # the job needs the submission's id
                enqueue(submission)
    except BaseException:
        discard_unreferenced(stored.relative)  # e.g. the daily-limit race lost under the lock
        raise
    return submission


@dataclass(frozen=True)
class UploadOutcome:
    """What became of an upload, as the web answers it: 201 scored, 202 queued, 422 refused, 429 limit."""

    status: int
    messages: list[str]
    submission: Submission | None = None


def submit(team: Team, filename: str, stream: BinaryIO, note: str = "", history: BinaryIO | None = None) -> UploadOutcome:
    """``accept`` an upload (and its history attachment) and map the outcome to its HTTP status:
    the one mapping that the upload page and ``POST /api/submissions`` share."""
    try:
        submission = accept(team, Upload(filename=filename, data=stream, note=note, history=read_history_upload(history)))
    except LimitReached as exc:
        return UploadOutcome(429, exc.messages)
    except SubmissionError as exc:
        return UploadOutcome(422, exc.messages)
    if submission.status == SubmissionStatus.REFUSED:
        return UploadOutcome(422, list(submission.messages), submission)
    return UploadOutcome(201 if submission.status == SubmissionStatus.SCORED else 202, [], submission)


def storage_path(submission: Submission) -> Path:
    """The stored file of a submission; the path is ours, never the uploader's name."""
    return podium_state().storage_root / submission.stored_path


def daily_limit_left(team_id: int) -> int:
    return max(0, current_competition().daily_limit - used_today(team_id, now()))
