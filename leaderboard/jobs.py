"""The checkpoint scoring-job queue, kept in the database.

A checkpoint submission becomes one ``ScoringJob``. ``podium worker`` processes claim jobs over
HTTP (``leaderboard.jobs_api``), run the model on the public test images and send back
predictions; the server scores them. The rules (docs/architecture.md, "The job lease protocol"):

- one job per (submission, file sha256, scorer version): the unique key in ``ScoringJob``;
- a claim is a conditional ``UPDATE ... WHERE id = ? AND status = 'queued'`` whose row count says
  whether this worker won the job, so two workers never hold one job; on PostgreSQL the job is
  first picked with ``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent claims take different
  jobs instead of waiting on each other's row locks;
- a claim is a lease: it expires unless the worker heartbeats; an expired lease is swept back to
  ``queued`` (on every claim and by ``sweep_expired``), or to ``failed`` after ``max_attempts``;
- a result is accepted once, from the holder of the current lease; the job's ``done`` and the
  submission's score are written in one transaction;
- failures that are ours (a worker that crashed, timed out or broke, ``max_attempts`` times) are
  recorded with ``ours=True`` and never count against the team's daily limit; a checkpoint the
  worker refused (``CheckpointError``, the team's fault) is recorded with its messages.

A lease is identified by a key, an HMAC of (job id, attempt number, worker name) under the app's
secret key. The claim response carries it; heartbeats, the checkpoint download and the result must
present it. A new claim of the same job (after an expiry) bumps the attempt number, so the old
holder's key stops working: a worker that was presumed dead cannot post over its successor.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import Callable

import numpy as np
import sqlalchemy as sa
from flask import current_app

from leaderboard.extensions import db
from leaderboard.models import ScoringJob, Submission
from leaderboard.protocol import JobStatus, SubmissionStatus
from leaderboard.recording import record_predictions, record_refusal
from leaderboard.state import current_config
from leaderboard.state import now as app_now
from leaderboard.transactions import end_read, write_transaction

# Bump when checkpoint inference changes in a way that can change predictions: the unique key
# (submission, sha256, scorer version) then allows one new score per submission (a rescore).
SCORER_VERSION = "1"
OURS_MESSAGE = (
    "We could not score this checkpoint: our scoring workers failed on it {attempts} time(s). "
    "This is our fault, not yours, and it does not count against your daily limit. "
    "The organizer can rescore it."
)


@dataclass(frozen=True)
class Claim:
    """What a worker gets when it wins a job."""

    job_id: int
    submission_id: int
    sha256: str
    attempt: int
    lease_key: str
    lease_seconds: int
    lease_expires_at: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """What became of a posted result. ``accepted`` is False when the lease was not held."""

    accepted: bool
    status: str  # the job's status afterwards, or why it was refused
    messages: tuple[str, ...] = ()


def lease_seconds() -> int:
    return int(current_config().job_lease_seconds)


def max_attempts() -> int:
    return int(current_config().job_max_attempts)


def lease_key(job_id: int, attempt: int, worker_name: str, queued_at: dt.datetime) -> str:
    """The unforgeable name of one lease: HMAC(secret, job id, queued at, attempt, worker name).

    ``queued_at`` (the job's ``created_at``, renewed by an organizer's rescore) keeps the keys of
    a rescored job's claims distinct from the keys of its earlier round, whose attempts restart.
    """
    secret = current_app.config["SECRET_KEY"]
    secret = secret.encode() if isinstance(secret, str) else bytes(secret)
    message = f"podium-lease:{job_id}:{queued_at.isoformat()}:{attempt}:{worker_name}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def job_lease_key(job: ScoringJob) -> str:
    """The key of the job's current lease (meaningful while it is running)."""
    return lease_key(job.id, job.attempts, job.worker_name or "", job.created_at)


def enqueue(submission: Submission, scorer_version: str = SCORER_VERSION) -> ScoringJob:
    """The job that scores ``submission`` with this scorer version, created when missing.

    The caller commits (so the submission row and its job land together). The unique key makes a
    second enqueue of the same (submission, sha256, scorer version) return the existing job.
    """
    if submission.id is None:
        db.session.flush()
    existing = db.session.scalar(
        sa.select(ScoringJob).where(
            ScoringJob.submission_id == submission.id,
            ScoringJob.sha256 == submission.sha256,
            ScoringJob.scorer_version == scorer_version,
        )
    )
    if existing is not None:
        return existing
    now = app_now()
    job = ScoringJob(
        submission_id=submission.id,
        sha256=submission.sha256,
        scorer_version=scorer_version,
        status=JobStatus.QUEUED,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    try:
        with db.session.begin_nested():
            db.session.add(job)
    except sa.exc.IntegrityError:  # a concurrent enqueue won the unique key
        return db.session.scalars(
            sa.select(ScoringJob).where(
                ScoringJob.submission_id == submission.id,
                ScoringJob.sha256 == submission.sha256,
                ScoringJob.scorer_version == scorer_version,
            )
        ).one()
    submission.status = SubmissionStatus.QUEUED
    return job


def _conditional_update(job_id: int, conditions: list, **values) -> bool:
    """``UPDATE scoring_job SET ... WHERE id = ? AND <conditions>``; True when it changed the row."""
    result = db.session.execute(
        sa.update(ScoringJob)
        .where(ScoringJob.id == job_id, *conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _give_up(job: ScoringJob) -> None:
    """Our failure, final: the job fails and the submission is refused without costing the team."""
    submission = db.session.get(Submission, job.submission_id)
    if submission is not None:
        record_refusal(submission, [OURS_MESSAGE.format(attempts=job.attempts)], ours=True)


def sweep_expired(now: dt.datetime | None = None) -> int:
    """Put every running job whose lease has expired back in the queue (or fail it after
    ``max_attempts``). Commits. Returns how many jobs it moved."""
    now = now or app_now()
    find_expired = sa.select(ScoringJob.id, ScoringJob.attempts).where(
        ScoringJob.status == JobStatus.RUNNING, ScoringJob.lease_expires_at < now
    )
    if not db.session.execute(find_expired.limit(1)).first():
        end_read()  # nothing to do: no write transaction taken
        return 0
    moved = 0
    with write_transaction():
        expired = db.session.execute(find_expired).all()
        for job_id, attempts in expired:
            still_expired = [
                ScoringJob.status == JobStatus.RUNNING,
                ScoringJob.attempts == attempts,
                ScoringJob.lease_expires_at < now,
            ]
            error = f"lease expired at attempt {attempts} (worker gone or too slow)"
            final = attempts >= max_attempts()
            if not _conditional_update(
                job_id,
                still_expired,
                status=JobStatus.FAILED if final else JobStatus.QUEUED,
                worker_name=None,
                lease_expires_at=None,
                last_error=error,
                updated_at=now,
            ):
                continue  # the worker's result or heartbeat got there first
            job = db.session.get(ScoringJob, job_id, populate_existing=True)
            if final:
                _give_up(job)
            else:
                _back_in_queue(job)
            moved += 1
    return moved


def _back_in_queue(job: ScoringJob) -> None:
    """The job's submission waits again (it was running on a worker that let go of it)."""
    submission = db.session.get(Submission, job.submission_id)
    if submission is not None and submission.status == SubmissionStatus.RUNNING:
        submission.status = SubmissionStatus.QUEUED


def claim(worker_name: str, candidates: int = 8) -> Claim | None:
    """Give the oldest queued job to ``worker_name`` under a fresh lease, or None when the queue is
    empty. Sweeps expired leases first. Commits."""
    sweep_expired()
    seconds = lease_seconds()
    with write_transaction():
        now = app_now()
        oldest = (sa.select(ScoringJob.id, ScoringJob.attempts)
                  .where(ScoringJob.status == JobStatus.QUEUED)
                  .order_by(ScoringJob.created_at, ScoringJob.id))
        if db.session.get_bind().dialect.name == "sqlite":
            # BEGIN IMMEDIATE already serialises writers; the conditional UPDATE below decides.
            queued = db.session.execute(oldest.limit(candidates)).all()
        else:
            # PostgreSQL: lock the oldest queued job that no other transaction holds, skipping those
            # being claimed elsewhere instead of waiting on them (the UPDATE below then always wins).
            queued = db.session.execute(oldest.limit(1).with_for_update(skip_locked=True)).all()
        for job_id, attempts in queued:
            won = _conditional_update(
                job_id,
                [ScoringJob.status == JobStatus.QUEUED, ScoringJob.attempts == attempts],
                status=JobStatus.RUNNING,
                worker_name=worker_name,
                attempts=attempts + 1,
                lease_expires_at=now + dt.timedelta(seconds=seconds),
                updated_at=now,
            )
            if not won:
                continue  # another worker took it between our SELECT and our UPDATE
            job = db.session.get(ScoringJob, job_id, populate_existing=True)
            submission = db.session.get(Submission, job.submission_id)
            if submission is not None:
                submission.status = SubmissionStatus.RUNNING
            return Claim(
                job_id=job.id,
                submission_id=job.submission_id,
                sha256=job.sha256,
                attempt=job.attempts,
                lease_key=job_lease_key(job),
                lease_seconds=seconds,
                lease_expires_at=now + dt.timedelta(seconds=seconds),
            )
    return None


def holds_lease(job: ScoringJob, key: str, now: dt.datetime | None = None) -> bool:
    """True when ``key`` names the job's current, unexpired lease."""
    now = now or app_now()
    if job.status != JobStatus.RUNNING or job.worker_name is None or not key:
        return False
    expires = job.lease_expires_at
    if expires is None or expires < now:
        return False
    # As bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, a 500).
    return hmac.compare_digest(job_lease_key(job).encode(), key.encode("utf-8", "replace"))


def _lease_conditions(job: ScoringJob, now: dt.datetime) -> list:
    """The WHERE clause that re-checks, inside the UPDATE, that this lease is still the live one."""
    return [
        ScoringJob.status == JobStatus.RUNNING,
        ScoringJob.attempts == job.attempts,
        ScoringJob.worker_name == job.worker_name,
        ScoringJob.lease_expires_at >= now,
    ]


def heartbeat(job_id: int, key: str) -> dt.datetime | None:
    """Extend the lease held under ``key``; the new expiry, or None when the lease was lost. Commits."""
    with write_transaction():
        now = app_now()
        job = db.session.get(ScoringJob, job_id, populate_existing=True)
        if job is None or not holds_lease(job, key, now):
            return None
        expires = now + dt.timedelta(seconds=lease_seconds())
        ok = _conditional_update(job_id, _lease_conditions(job, now), lease_expires_at=expires, updated_at=now)
    return expires if ok else None


def _finish(
    job_id: int, key: str, status: str | Callable[[ScoringJob], str], last_error: str | None = None, release: bool = False,
    extra: Callable[[ScoringJob], dict] | None = None,
) -> ScoringJob | None:
    """Move the job out of ``running`` if ``key`` holds its lease; the job, or None. Runs inside the
    caller's ``write_transaction``.

    ``status`` may be a function of the held job; ``release`` forgets the worker (a job that goes
    back to the queue), otherwise its name stays on the job for the admin page; ``extra`` gives
    more columns to set, from the held job.
    """
    now = app_now()
    job = db.session.get(ScoringJob, job_id, populate_existing=True)
    if job is None or not holds_lease(job, key, now):
        return None
    values = {"status": status(job) if callable(status) else status, "lease_expires_at": None,
              "last_error": last_error, "updated_at": now}
    if release:
        values["worker_name"] = None
    if extra is not None:
        values.update(extra(job))
    if not _conditional_update(job_id, _lease_conditions(job, now), **values):
        return None
    return db.session.get(ScoringJob, job_id, populate_existing=True)


NOT_HELD = "lease not held: the result was already accepted or the lease expired"


def complete(job_id: int, key: str, predictions: np.ndarray) -> Outcome:
    """Accept the predictions of the lease holder once: job done and submission scored, committed
    together. Predictions the scorer refuses (class indices out of range) refuse the submission."""
    with write_transaction():
        job = _finish(job_id, key, JobStatus.DONE)
        if job is None:
            return Outcome(False, NOT_HELD)
        submission = db.session.get(Submission, job.submission_id)
        record_predictions(submission, np.asarray(predictions, dtype=np.int64))  # refuses bad indices
        messages = tuple(submission.messages or ()) if submission.status == SubmissionStatus.REFUSED else ()
    return Outcome(True, JobStatus.DONE, messages)


def refuse(job_id: int, key: str, messages: list[str]) -> Outcome:
    """The worker refused the checkpoint (the team's fault): record the messages, once. Commits."""
    with write_transaction():
        job = _finish(job_id, key, JobStatus.DONE, last_error="refused: " + " | ".join(messages)[:2000])
        if job is None:
            return Outcome(False, NOT_HELD)
        record_refusal(db.session.get(Submission, job.submission_id), list(messages), ours=False)
    return Outcome(True, JobStatus.DONE, tuple(messages))


def fail(job_id: int, key: str, error: str) -> Outcome:
    """The worker broke on the job (our fault): queue it again, or fail it for good after
    ``max_attempts`` without costing the team anything. Commits."""
    with write_transaction():
        job = _finish(
            job_id, key, lambda held: JobStatus.FAILED if held.attempts >= max_attempts() else JobStatus.QUEUED,
            last_error=error[:2000], release=True,
        )
        if job is None:
            return Outcome(False, "lease not held")
        if job.status == JobStatus.FAILED:
            _give_up(job)
        else:
            submission = db.session.get(Submission, job.submission_id)
            if submission is not None:
                submission.status = SubmissionStatus.QUEUED
        status = job.status
    return Outcome(True, status)


def release(job_id: int, key: str, reason: str | None = None) -> Outcome:
    """The lease holder gives the job back unfinished (its worker is stopping, or cannot run models
    at all: ``reason`` says why): the job returns to the queue at once, in its old place, and the
    attempt is not counted (``attempts`` goes back down, so such workers never use up the job's
    ``max_attempts``). Commits.

    ``created_at`` moves on by a microsecond, which keeps the job's place in the queue but changes
    every later lease key: the next claim reuses this attempt number, and the key of the lease
    given back must not become valid again.
    """
    def back_in_queue(held: ScoringJob) -> dict:
        return {"attempts": max(0, held.attempts - 1),
                "created_at": held.created_at + dt.timedelta(microseconds=1),
                "last_error": (f"given back by worker {held.worker_name}: {reason}"[:2000] if reason else
                               f"given back by worker {held.worker_name} when it stopped (attempt not counted)")}

    with write_transaction():
        job = _finish(job_id, key, JobStatus.QUEUED, release=True, extra=back_in_queue)
        if job is None:
            return Outcome(False, "lease not held")
        _back_in_queue(job)
        status = job.status
    return Outcome(True, status)


def requeue(submission: Submission, scorer_version: str = SCORER_VERSION) -> ScoringJob:
    """An organizer's rescore: the submission's job for this scorer version back at the end of the
    queue, with a fresh attempt budget (a new ``created_at``, so no lease key of its earlier round
    is valid again). A job still queued or running is left alone. The caller commits."""
    job = enqueue(submission, scorer_version)
    if job.status in (JobStatus.FAILED, JobStatus.DONE):
        now = app_now()
        job.status = JobStatus.QUEUED
        job.attempts = 0
        job.worker_name = None
        job.lease_expires_at = None
        job.last_error = None
        job.created_at = max(now, job.created_at + dt.timedelta(microseconds=1))
        job.updated_at = now
        submission.status = SubmissionStatus.QUEUED
    return job


def queue_counts() -> dict[str, int]:
    """How many jobs are in each status, for the admin page."""
    rows = db.session.execute(sa.select(ScoringJob.status, sa.func.count()).group_by(ScoringJob.status)).all()
    return {JobStatus(status): count for status, count in rows}
