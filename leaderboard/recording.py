"""How a submission gets its outcome: scored, refused (the team's problem) or failed (ours).

The same two functions serve CSVs scored in the request, CSVs rescored by the organizer and
checkpoints scored by a worker. They change the submission and bump the board version in the
current transaction; the service operation that calls them commits (leaderboard/transactions.py).
"""
from __future__ import annotations

import numpy as np

from harness.errors import SubmissionError
from harness.scoring import score_predictions
from leaderboard.models import Submission
from leaderboard.protocol import SubmissionStatus
from leaderboard.ranking import bump_board_version
from leaderboard.state import current_competition, current_solution


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
    submission.status = SubmissionStatus.SCORED
    submission.messages = []
    submission.counts_toward_limit = True
    bump_board_version()


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
    """The outcome of a parsed CSV (an ``intake.ParsedCsv``): its score, or why it was refused."""
    if parsed.messages is not None:
        record_refusal(submission, parsed.messages, ours=parsed.ours)
    else:
        record_predictions(submission, parsed.predictions)
