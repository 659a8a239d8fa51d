"""How a submission gets its outcome: scored, refused (the team's problem) or failed (ours).

The same functions serve CSVs scored in the request, CSVs rescored by the organizer and
checkpoints scored by a worker. Scoring (``evaluate``, ``csv_outcome``) needs no database, so an
upload scores before it takes the write lock; ``record`` (and ``record_predictions``,
``record_refusal``, ``record_csv``) change the submission and bump the board version in the
current transaction; the service operation that calls them commits (leaderboard/transactions.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.errors import SubmissionError
from harness.scoring import ScoreReport, score_predictions
from leaderboard.models import Submission
from leaderboard.protocol import SubmissionStatus
from leaderboard.ranking import bump_board_version
from leaderboard.state import current_competition, current_solution, podium_state

PREDICTIONS_SUFFIX = ".predictions.npy"


def predictions_path(stored_path: str):
    """Where a checkpoint's predictions (sent by its worker) are kept: beside its stored file."""
    return podium_state().storage_root / (stored_path + PREDICTIONS_SUFFIX)


def load_saved_predictions(stored_path: str) -> np.ndarray | None:
    """A checkpoint's kept predictions (the honest board's row-level input), or None."""
    try:
        return np.load(predictions_path(stored_path), allow_pickle=False)
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class Outcome:
    """A scored report, or why there is none: computed without the database, recorded by ``record``."""

    report: ScoreReport | None = None
    predictions: np.ndarray | None = None
    messages: list[str] | None = None  # refused (the team's) or failed (``ours``)
    ours: bool = False


def evaluate(predictions: np.ndarray) -> Outcome:
    """Score predictions (class indices in test.npz order). Predictions the harness refuses (wrong
    length, invalid class) are a refusal that is the team's (it counts toward the limit)."""
    predictions = np.asarray(predictions)
    try:
        return Outcome(report=score_predictions(predictions, current_solution(), current_competition()),
                       predictions=predictions)
    except SubmissionError as exc:
        return Outcome(messages=list(exc.messages))


def csv_outcome(parsed) -> Outcome:
    """The outcome of a parsed CSV (an ``intake.ParsedCsv``): its score, or why it was refused."""
    if parsed.messages is not None:
        return Outcome(messages=list(parsed.messages), ours=parsed.ours)
    return evaluate(parsed.predictions)


def record(submission: Submission, outcome: Outcome) -> None:
    """Put ``outcome`` on ``submission`` and bump the board version; the caller commits."""
    if outcome.report is None:
        record_refusal(submission, outcome.messages or [], ours=outcome.ours)
        return
    if submission.kind != "csv":  # a CSV's predictions are its stored file; keep a checkpoint's
        try:
            target = predictions_path(submission.stored_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(target, np.asarray(outcome.predictions, dtype=np.int16), allow_pickle=False)
        except OSError:
            pass  # the score stands; the honest board then leaves this submission out
    report = outcome.report
    submission.public_score = float(report.primary("public"))
    submission.private_score = float(report.primary("private"))
    submission.public_ci_low = float(report.public.ci_low)
    submission.public_ci_high = float(report.public.ci_high)
    submission.result_json = report.to_dict()
    submission.status = SubmissionStatus.SCORED
    submission.messages = []
    submission.counts_toward_limit = True
    bump_board_version()


def record_predictions(submission: Submission, predictions: np.ndarray) -> None:
    """Score predictions onto ``submission`` (``evaluate``, then ``record``); the caller commits."""
    record(submission, evaluate(predictions))


def record_refusal(submission: Submission, messages: list[str], ours: bool) -> None:
    """Mark ``submission`` refused (the team's problem, counts) or failed (ours, does not count)."""
    submission.status = SubmissionStatus.FAILED if ours else SubmissionStatus.REFUSED
    submission.messages = [str(m) for m in messages] or ["The submission could not be scored."]
    submission.counts_toward_limit = not ours
    submission.public_score = submission.private_score = None
    submission.public_ci_low = submission.public_ci_high = None
    submission.result_json = None
    bump_board_version()


def record_csv(submission: Submission, parsed) -> None:
    """The outcome of a parsed CSV, recorded (``csv_outcome``, then ``record``); the caller commits."""
    record(submission, csv_outcome(parsed))
